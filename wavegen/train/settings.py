"""The settings a ``train`` call runs with: a new run's recipe, or a resumed run's own config with
the changes ``run_config`` allows, and what the prepared data makes the model condition on."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, NamedTuple

from ..audio.features import MelSettings, check_same_analysis
from ..config import (
    Config,
    ConfigError,
    apply_overrides,
    differences,
    load_toml,
    validate,
)
from ..data.prepared import PreparedData
from ..model import checkpoint as ckpt
from ..recipe import load_recipe
from ..run_config import (
    CONFIG_FILE,
    Change,
    changes,
    merge_changes,
    read_edits,
    refuse_fixed,
)
from ..runs import checkpoint_paths


def _quiet(message: str) -> None:
    """A log that says nothing."""


SHAPE_KEYS = (
    "cycles",
    "layers_per_cycle",
    "kernel_size",
    "input_kernel_size",
    "residual_channels",
    "gate_channels",
    "skip_channels",
    "cond_channels",
)


class Resolved(NamedTuple):
    """What ``resolve_config`` found: the config, whether the run resumes, what that changes in
    its settings, and the checkpoint it read (None for a new run): ``train`` resumes from it
    rather than reading the file a second time."""

    config: Config
    resuming: bool
    changes: list[Change]
    checkpoint: dict | None


def _recipe(recipe: str | Config | None) -> Config:
    """A fresh copy of the recipe's config: a name or path (``default`` if None), or a ``Config``
    given in Python (checked like a recipe: types, then ``validate``)."""
    if isinstance(recipe, Config):
        config = Config.from_dict(recipe.to_dict(), source="config")
        validate(config)
        return config
    return load_recipe(recipe or "default")


def resolve_config(
    run: Path, recipe: str | Config | None, overrides: list[str], steps: int | None, log: Callable[[str], None] = _quiet
) -> Resolved:
    """The config a ``train`` call will use, whether it resumes an existing run, and what it
    changes in that run's settings (``run_config``: edits to RUN/config.toml, ``--set``,
    ``--steps``; a change to a setting fixed once trained is refused).

    A new run starts from the recipe (``default`` if none), or from the config.toml of an attempt
    that saved no checkpoint when no recipe is given; an existing run from its checkpoint's
    config with the user's edits to its config.toml.
    """
    latest = checkpoint_paths(run)["latest"]
    saved_file = Path(run) / CONFIG_FILE
    resuming = latest.is_file()
    stages: list[list[Change]] = []
    if resuming:
        payload = ckpt.load(latest)
        saved = ckpt.config_of(payload, latest)
        if recipe is not None:
            _check_recipe(run, recipe, saved, log)
        config = read_edits(run, saved)
        stages.append(changes(saved, config, str(saved_file)))
    elif recipe is None and saved_file.is_file():  # an attempt that saved no checkpoint: its settings, as edited
        config = load_toml(saved_file)
        validate(config)
        log(f"using the settings in {saved_file} (this run has no checkpoint yet)")
    else:
        config = _recipe(recipe)
        if saved_file.is_file():
            what = "the given config" if isinstance(recipe, Config) else f"recipe '{recipe}'"
            log(f"replacing {saved_file} (of an attempt that saved no checkpoint) with {what}")
    for source, items in (("--set", overrides), ("--steps", [] if steps is None else [f"train.steps={steps}"])):
        before = Config.from_dict(config.to_dict())
        apply_overrides(config, items)
        stages.append(changes(before, config, source))
    found = merge_changes(stages)
    if resuming:
        refuse_fixed(found, run)
        if config.train.steps < int(payload.get("step", 0)):  # it would train nothing, silently
            raise ConfigError(
                f"{run}: already trained to step {payload.get('step')}; --steps {config.train.steps} "
                "is behind it: give a larger --steps to train on, or --run NEW_DIR to start again"
            )
    return Resolved(config, resuming, found if resuming else [], payload if resuming else None)


def _check_recipe(run: Path, recipe: str | Config, saved: Config, log: Callable[[str], None]) -> None:
    """``--recipe`` given for an existing run: its model shape must be the run's; its other
    settings do not apply (the run's own do), which is said rather than done silently."""
    wanted = _recipe(recipe)
    what = "the given config" if isinstance(recipe, Config) else f"recipe '{recipe}'"
    shape = {k: getattr(saved.model, k) for k in SHAPE_KEYS}
    if {k: getattr(wanted.model, k) for k in SHAPE_KEYS} != shape:
        raise ConfigError(
            f"{run}: this run's model shape differs from {what}; "
            "resume without --recipe, or start a new run with --run NEW_DIR"
        )
    other = [key for key, _, _ in differences(saved, wanted) if key.startswith("train.")]
    if other:
        log(
            f"{what} differs from run {run} in {', '.join(other)}: the run's own settings apply "
            "(change them with --set or in its config.toml)"
        )


def condition_on(
    config: Config, data: PreparedData, data_dir: Path, resuming: bool, log: Callable[[str], None] = print
) -> None:
    """Make the model condition on what the prepared data carries (label names, log-mel
    features with their analysis settings); a resumed run's data must carry the same."""
    m, d = config.model, config.data
    mel = data.mel or {}
    wanted = {"labels": list(data.labels), "mel_channels": int(mel.get("bands", 0)), "mel_hop": int(mel.get("hop", 0))}
    have = {"labels": list(m.labels), "mel_channels": m.mel_channels, "mel_hop": m.mel_hop}
    if resuming and wanted != have:

        def said(c):
            return (f"labels [{', '.join(c['labels'])}]" if c["labels"] else "no labels") + (
                f", {c['mel_channels']} mel bands every {c['mel_hop']} samples" if c["mel_channels"] else ", no mels"
            )

        raise ConfigError(
            f"{data_dir}: the data has {said(wanted)} but the run was trained with {said(have)}; "
            "prepare the data the same way or start a new run with --run NEW_DIR"
        )
    if resuming and mel:  # the same bands and hop are not enough: every analysis setting must match
        check_same_analysis(mel, MelSettings.from_data(d, bands=m.mel_channels), data_dir, "this run")
    m.labels, m.mel_channels, m.mel_hop = wanted["labels"], wanted["mel_channels"], wanted["mel_hop"]
    if not resuming:  # the run records how its data was prepared, not what the recipe would have done
        d.val_fraction = float(data.manifest.get("val_fraction", d.val_fraction))
        d.labels = "folders" if data.labels else "none"
        d.channel = str(data.manifest.get("channel", d.channel))
    if mel:  # the run keeps the analysis settings, so vocode computes the same features
        d.mels, d.mel_hop, d.mel_n_fft = int(mel["bands"]), int(mel["hop"]), int(mel["n_fft"])
        d.mel_fmin, d.mel_fmax = float(mel["fmin"]), float(mel["fmax"])
    if not resuming and (m.labels or m.mel_channels):
        parts = [f"{len(m.labels)} labels ({', '.join(m.labels)})"] if m.labels else []
        parts += [f"{m.mel_channels}-band log-mels every {m.mel_hop} samples"] if m.mel_channels else []
        log("conditioning on " + " and ".join(parts))
