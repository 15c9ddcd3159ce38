"""The settings a ``train`` call runs with: a new run's recipe, or a resumed run's own config with
the changes ``run_config`` allows, fitted to the prepared data (its sample rate, and what it makes
the model condition on). ``resolve_config`` returns the final config: nothing changes it later."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import NamedTuple

from ..audio.features import MelSettings, check_same_analysis
from ..config import (
    Config,
    ConfigError,
    apply_overrides,
    differences,
    validate,
)
from ..data.prepared import PreparedData
from ..locks import check_free
from ..model import checkpoint as ckpt
from ..owned import check_run_folder
from ..recipe import load_recipe
from ..run_config import (
    CONFIG_FILE,
    Change,
    changes,
    merge_changes,
    read_run_file,
    read_toml,
    refuse_fixed,
    says,
    with_edits,
)
from ..runs import checkpoint_paths
from . import init_from as start

logger = logging.getLogger(__name__)


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
    """What ``resolve_config`` found: the final config (fitted to the prepared data), whether the
    run resumes, what that changes in its settings, the checkpoint it read (None for a new run)
    whether RUN/config.toml already says the config, and the prepared data it opened: ``train``
    takes them from here rather than reading any of these files a second time."""

    config: Config
    resuming: bool
    changes: list[Change]
    checkpoint: ckpt.Checkpoint | None
    config_file_current: bool
    data: PreparedData | None = None
    init: start.Source | None = None  # the model a new run starts from (--init-from)
    recipe: str | None = None  # where a new run's settings came from, as info names it (None: resumed)

    def found(self) -> dict:
        """What ``loop.train`` takes from here besides the config, as its keyword arguments."""
        return {
            "changes": self.changes,
            "checkpoint": self.checkpoint,
            "config_file_current": self.config_file_current,
            "data": self.data,
            "init": self.init,
            "recipe": self.recipe,
        }


def _recipe(recipe: str | Config | None) -> Config:
    """A fresh copy of the recipe's config: a name or path (``default`` if None), or a ``Config``
    given in Python (checked like a recipe: types, then ``validate``)."""
    if isinstance(recipe, Config):
        config = Config.from_dict(recipe.to_dict(), source="config")
        validate(config)
        return config
    return load_recipe(recipe or "default")


def resolve_config(
    run: Path,
    data_dir: Path,
    recipe: str | Config | None,
    overrides: list[str],
    steps: int | None,
    init_from: str | Path | None = None,
) -> Resolved:
    """The config a ``train`` call will use, whether it resumes an existing run, and what it
    changes in that run's settings (``run_config``: edits to RUN/config.toml, ``--set``,
    ``--steps``; a change to a setting fixed once trained is refused).

    A new run starts from the recipe (``default`` if none), or from the config.toml of an attempt
    that saved no checkpoint when no recipe is given; an existing run from its checkpoint's
    config with the user's edits to its config.toml. Last, the config is fitted to the prepared
    data in ``data_dir`` (``fit_to_data``); ``init_from``: a new run's model (``init_from``).
    Raises ``ConfigError`` (and ``DataError`` for data that is missing or unreadable) with one line.
    """
    check_free(run, "trains")  # another train there: said first (loop.train takes the lock)
    check_run_folder(run)  # a user's log.csv or config.toml there: refused before anything is read or written
    latest = checkpoint_paths(run)["latest"]
    saved_file = Path(run) / CONFIG_FILE
    resuming = latest.is_file()
    stages: list[list[Change]] = []
    checkpoint, raw, init = None, None, None  # raw: RUN/config.toml as read (once)
    if init_from is not None:  # a new run from a model's weights and settings
        init = start.read_source(Path(init_from), run, resuming)
        config = start.base_config(init, None if recipe is None else _recipe(recipe), _what(recipe))
    elif resuming:
        checkpoint = ckpt.read(latest)
        if recipe is not None:
            _check_recipe(run, recipe, checkpoint.config)
        raw = read_run_file(run)
        config = with_edits(raw, run, checkpoint.config)
        stages.append(changes(checkpoint.config, config, str(saved_file)))
    elif recipe is None and saved_file.is_file():  # an attempt that saved no checkpoint: its settings, as edited
        raw = read_toml(saved_file)
        config = Config.from_dict(raw, source=str(saved_file))
        validate(config)
        logger.info(f"using the settings in {saved_file} (this run has no checkpoint yet)")
    else:
        config = _recipe(recipe)
        if saved_file.is_file():
            logger.info(f"replacing {saved_file} (of an attempt that saved no checkpoint) with {_what(recipe)}")
    for source, items in (("--set", overrides), ("--steps", [] if steps is None else [f"train.steps={steps}"])):
        before = Config.from_dict(config.to_dict())
        apply_overrides(config, items)
        stages.append(changes(before, config, source))
    found = merge_changes(stages)
    if checkpoint is not None:
        _check_resumed(run, checkpoint, found, config)
    data = PreparedData(data_dir)
    if init is not None:
        start.check(init, config, data, Path(data_dir))
    config = fit_to_data(config, data, Path(data_dir), run, resuming)
    if raw is None and saved_file.is_file():  # a new run's recipe: the old file is kept if it says the same
        raw = read_run_file(run)
    origin = None if resuming else _origin(recipe, init_from, saved_file if saved_file.is_file() else None)
    return Resolved(config, resuming, found if resuming else [], checkpoint, says(raw, run, config), data, init, origin)


def _origin(recipe: str | Config | None, init_from: str | Path | None, attempt: Path | None) -> str:
    """Where a new run's settings came from, in words: the recipe's name (or path) as given, a
    config given in Python, the settings of an ``--init-from`` model's run, or an earlier attempt's
    config.toml."""
    if isinstance(recipe, Config):
        return "a config given in Python"
    if recipe is not None:
        return recipe
    if init_from is not None:
        return f"the run of --init-from {init_from}"
    return f"{attempt} (an earlier attempt's)" if attempt is not None else "default"


def _check_resumed(run: Path, checkpoint: ckpt.Checkpoint, found: list[Change], config: Config) -> None:
    """Refuse a resumed run's change to a fixed setting, and a --steps behind its step."""
    refuse_fixed(found, run)
    if config.train.steps < int(checkpoint.payload.get("step", 0)):  # it would train nothing, silently
        raise ConfigError(
            f"{run}: already trained to step {checkpoint.payload.get('step')}; --steps {config.train.steps} "
            "is behind it: give a larger --steps to train on, or --run NEW_DIR to start again"
        )


def _what(recipe: str | Config | None) -> str:
    return "the given config" if isinstance(recipe, Config) else f"recipe '{recipe}'"


def _check_recipe(run: Path, recipe: str | Config, saved: Config) -> None:
    """``--recipe`` given for an existing run: its model shape must be the run's; its other
    settings do not apply (the run's own do), which is said rather than done silently."""
    wanted, what = _recipe(recipe), _what(recipe)
    shape = {k: getattr(saved.model, k) for k in SHAPE_KEYS}
    if {k: getattr(wanted.model, k) for k in SHAPE_KEYS} != shape:
        raise ConfigError(
            f"{run}: this run's model shape differs from {what}; "
            "resume without --recipe, or start a new run with --run NEW_DIR"
        )
    other = [key for key, _, _ in differences(saved, wanted) if key.startswith("train.")]
    if other:
        logger.warning(
            f"{what} differs from run {run} in {', '.join(other)}: the run's own settings apply "
            "(change them with --set or in its config.toml)"
        )


def fit_to_data(
    config: Config,
    data: PreparedData,
    data_dir: Path,
    run: Path,
    resuming: bool,
    check: bool = True,
) -> Config:
    """``config`` fitted to the prepared ``data`` (read from ``data_dir``), as a new validated
    ``Config``: the data's sample rate, and the model conditioned on what the data carries (label
    names, log-mel features with their analysis settings). A new run also records how its data
    was prepared; a resumed run's data must have its rate and conditioning (else ``ConfigError``).
    ``config`` itself is not changed; a config fitted already comes back equal. ``check=False``:
    not validated (to compare it with one that was)."""
    m, d = config.model, config.data
    rate = _sample_rate(d.sample_rate, data, data_dir, run, resuming)
    mel = data.mel or {}
    labels, bands, hop = list(data.labels), int(mel.get("bands", 0)), int(mel.get("hop", 0))
    wanted = {"labels": labels, "mel_channels": bands, "mel_hop": hop}
    have = {"labels": list(m.labels), "mel_channels": m.mel_channels, "mel_hop": m.mel_hop}
    if resuming and wanted != have:
        raise ConfigError(
            f"{data_dir}: the data has {_said(wanted)} but the run was trained with {_said(have)}; "
            "prepare the data the same way or start a new run with --run NEW_DIR"
        )
    if resuming and mel:  # the same bands and hop are not enough: every analysis setting must match
        check_same_analysis(mel, MelSettings.from_data(d, bands=m.mel_channels), data_dir, "this run")
    prepared: dict = {"sample_rate": rate}
    if not resuming:  # the run records how its data was prepared, not what the recipe would have done
        prepared["val_fraction"] = float(data.manifest.get("val_fraction", d.val_fraction))
        prepared["label_source"] = "folders" if data.labels else "none"
        prepared["channel"] = str(data.manifest.get("channel", d.channel))
    if mel:  # the run keeps the analysis settings, so vocode computes the same features
        prepared |= {"mel_bands": int(mel["bands"]), "mel_hop": int(mel["hop"]), "mel_n_fft": int(mel["n_fft"])}
        prepared |= {"mel_fmin": float(mel["fmin"]), "mel_fmax": float(mel["fmax"])}
    fitted = Config(
        model=dataclasses.replace(m, labels=labels, mel_channels=bands, mel_hop=hop),
        data=dataclasses.replace(d, **prepared),
        train=dataclasses.replace(config.train),
    )
    if check:
        validate(fitted)
    if not resuming and (labels or bands):
        parts = [f"{len(labels)} labels ({', '.join(labels)})"] if labels else []
        parts += [f"{bands}-band log-mels every {hop} samples"] if bands else []
        logger.info("conditioning on " + " and ".join(parts))
    return fitted


def _sample_rate(rate: int, data: PreparedData, data_dir: Path, run: Path, resuming: bool) -> int:
    """The rate a run trains at: the prepared data's. A resumed run's must be its own."""
    if data.sample_rate == rate:
        return rate
    if resuming:
        raise ConfigError(
            f"{data_dir}: prepared at {data.sample_rate} Hz but run {run} is at "
            f"{rate} Hz; prepare again with --sample-rate {rate}"
        )
    logger.info(f"using the prepared data's rate, {data.sample_rate} Hz (recipe said {rate})")
    return data.sample_rate


def _said(conditioning: dict) -> str:
    """Labels and mels as a message names them."""
    labels = conditioning["labels"]
    mels = conditioning["mel_channels"]
    return (f"labels [{', '.join(labels)}]" if labels else "no labels") + (
        f", {mels} mel bands every {conditioning['mel_hop']} samples" if mels else ", no mels"
    )
