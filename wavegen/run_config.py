"""A run's ``config.toml``: the settings it trains with, and which of them may change later.

``train`` writes ``RUN/config.toml`` when it starts; every checkpoint carries the same config.
A user may edit the file (or pass ``--set``/``--steps``) to change how an existing run goes on.
Settings fall in two kinds:

- fixed once trained: ``model.*`` (the network's shape and conditioning), ``data.*`` (how the
  data it learned was prepared: rate, mel analysis) and ``train.seed`` (the checkpoint carries
  the random streams it started);
- free to change between sessions of a run: every other ``train.*`` setting (the schedule,
  batch, precision, bookkeeping). ``train`` applies such a change and names it.

A change to a fixed setting is refused with one line naming it and the way to get it; an edit
is never overwritten without a word. ``synth``, ``vocode`` and ``eval`` read the model's config
from its checkpoint and refuse a run whose ``config.toml`` says otherwise about a fixed setting
(an edited ``data.sample_rate`` would otherwise be ignored); edits to ``train.*`` wait for the
next ``train``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, NamedTuple

from .config import Config, differences, validate
from .errors import ConfigError

CONFIG_FILE = "config.toml"
# The first line of every config.toml that ``train`` writes: how wavegen knows the file for its own.
CONFIG_MARKER = "# wavegen run settings: written by `wavegen train`; edit them to change how this run goes on"


class Change(NamedTuple):
    """One setting that differs from the checkpoint's config, and who asked for it."""

    key: str
    old: Any
    new: Any
    source: str  # "RUN/config.toml", "--set" or "--steps"

    def __str__(self) -> str:
        return f"{self.key} {_show(self.old)} → {_show(self.new)} ({self.source})"


def merge_changes(stages: list[list[Change]]) -> list[Change]:
    """Changes made one stage after another (config.toml, then --set, then --steps) as one list:
    a key keeps its first old value and takes its last new value and source; a key set back to
    where it was drops out."""
    merged: dict[str, Change] = {}
    for stage in stages:
        for change in stage:
            first = merged.get(change.key, change)
            merged[change.key] = change._replace(old=first.old)
    return [change for change in merged.values() if change.old != change.new]


def fixed_reason(key: str) -> str | None:
    """Why ``key`` cannot change in a run that has been trained (None: it may)."""
    if key.startswith("model."):
        return "the network's shape and conditioning are fixed once it is trained"
    if key.startswith("data."):
        return "the run learned data prepared this way"
    if key == "train.seed":
        return "the run's random streams continue from its checkpoint"
    return None


def _remedy(key: str, value: Any) -> str:
    if key.startswith("data."):
        return f"prepare the data with --set {key}={_show(value)} and start a new run with --run NEW_DIR"
    return "start a new run with --run NEW_DIR"


def run_of(checkpoint: Path) -> Path | None:
    """The run folder a checkpoint lies in (``RUN/checkpoints/x.pt``), if it has a config.toml."""
    run = Path(checkpoint).parent.parent
    return run if Path(checkpoint).parent.name == "checkpoints" and (run / CONFIG_FILE).is_file() else None


def read_toml(path: Path) -> dict[str, Any]:
    """A config file's tables as TOML gives them, unchecked; an unreadable file is a
    ``ConfigError`` naming it."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config ({exc})") from None


def load_toml(path: Path) -> Config:
    """A config file as a ``Config``: every key and type checked (``validate`` is the caller's)."""
    return Config.from_dict(read_toml(path), source=str(path))


def read_run_file(run: Path) -> dict[str, Any] | None:
    """What ``RUN/config.toml`` holds, as TOML tables (None: there is no file). A file that
    cannot be read is a one-line error naming it."""
    path = Path(run) / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(
            f"{path}: cannot read the run's settings ({reason}); fix the file, or delete it to use the checkpoint's"
        ) from None


def with_edits(raw: dict[str, Any] | None, run: Path, saved: Config) -> Config:
    """``saved`` with the values ``raw`` (``RUN/config.toml`` as ``read_run_file`` read it) sets,
    checked like a recipe: only the keys the file holds count, so a file written before a
    setting existed keeps ``saved``'s value for it. Always a new ``Config``."""
    if raw is None:
        return Config.from_dict(saved.to_dict())
    path = Path(run) / CONFIG_FILE
    config = Config.from_dict(raw, source=str(path), base=saved)
    try:
        validate(config)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return config


def read_edits(run: Path, saved: Config) -> Config:
    """``saved`` with the values ``RUN/config.toml`` sets (``read_run_file``, then ``with_edits``)."""
    return with_edits(read_run_file(run), run, saved)


def says(raw: dict[str, Any] | None, run: Path, config: Config) -> bool:
    """Whether ``RUN/config.toml`` (``raw`` as read) already says ``config``: every key it holds
    has ``config``'s value (then ``train`` leaves the file as the user wrote it)."""
    return raw is not None and with_edits(raw, run, config) == config


def changes(saved: Config, config: Config, source: str) -> list[Change]:
    """The settings of ``config`` that differ from ``saved``, attributed to ``source``."""
    return [Change(key, old, new, source) for key, old, new in differences(saved, config)]


def refuse_fixed(found: list[Change], run: Path) -> None:
    """A one-line error for the first change to a setting that is fixed once trained."""
    for change in found:
        reason = fixed_reason(change.key)
        if reason is None:
            continue
        edited = change.source.endswith(CONFIG_FILE)
        where = (
            f"{change.source}: {change.key} is {_show(change.new)} there, but"
            if edited
            else f"{change.source} {change.key}={_show(change.new)}:"
        )
        undo = f"restore it in {change.source}, or " if edited else ""
        raise ConfigError(
            f"{where} run {run} was trained with {change.key} = {_show(change.old)}, and it cannot "
            f"change ({reason}); {undo}{_remedy(change.key, change.new)}"
        )


def check_unedited(checkpoint: Path, config: Config) -> None:
    """Refuse a checkpoint whose run folder's config.toml changes a fixed setting of ``config``
    (the one the checkpoint carries): the edit could not take effect, and ignoring it would be
    silent. Edits to ``train.*`` are for the next ``train`` and pass."""
    run = run_of(checkpoint)
    if run is not None:
        refuse_fixed(changes(config, read_edits(run, config), f"{run / CONFIG_FILE}"), run)


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def check_train_overrides(overrides: list[str]) -> None:
    """Refuse ``--set`` items that ``train`` cannot honour: conditioning comes from the prepared
    data and ``data.*`` settings are ``prepare``'s (either would be silently lost)."""
    for item in overrides:
        key = item.partition("=")[0].strip()
        if key in ("model.labels", "model.mel_channels", "model.mel_hop"):
            raise ConfigError(
                f"--set {item}: a model conditions on what its data carries; prepare the data "
                "with --labels folders or --mels N instead"
            )
        if key.startswith("data."):
            raise ConfigError(
                f"--set {item}: data settings are prepare's (a run takes them from its prepared data); "
                f"give it to `wavegen prepare DATASET --set {item.strip()}`"
            )


def check_train_call(steps: object, overrides: object, device: object) -> None:
    """``wavegen.fit``'s own arguments, of the types and values it takes, and its overrides as
    ``check_train_overrides`` takes them; ``ConfigError`` for the first that is not."""
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ConfigError(f"steps must be a whole number >= 1 or None, got {steps!r}")
    if isinstance(overrides, str) or not isinstance(overrides, (list, tuple)):
        raise ConfigError(f"overrides must be a list of 'section.key=value' strings, got {overrides!r}")
    if not all(isinstance(item, str) for item in overrides):
        raise ConfigError(f"overrides must be a list of 'section.key=value' strings, got {overrides!r}")
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device {device!r}: choose auto, cpu or cuda")
    check_train_overrides(list(overrides))
