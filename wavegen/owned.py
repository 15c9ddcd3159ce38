"""Which files and folders wavegen wrote, known by their content (never by their name alone).

wavegen replaces or removes only what it wrote itself: a user's ``manifest.json``, ``log.csv``
or ``config.toml`` that happens to sit where wavegen would write is refused with one line
naming it. The same knowledge keeps ``prepare`` from taking wavegen's own outputs (a run's
samples, synth's WAVs, a report's copies) for recordings. What marks each:

    prepared data   manifest.json whose "format" is "wavegen-prepared"
    a run folder    log.csv under wavegen's header, config.toml under ``CONFIG_MARKER`` (or,
                    written before the marker, holding only wavegen's [data]/[model]/[train]
                    tables), checkpoints/latest.pt
    an export       model.safetensors whose header says "format": "wavegen-model"
    a report page   index.html made by ``wavegen report`` (it says so in its first lines)
    a sample        NAME.wav named by the record NAME.json beside it (``artifacts``: "kind",
                    "wav"); a vocode input copy, by its output's record ("input": {"wav"})
"""

from __future__ import annotations

import json
import struct
import tomllib
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .run_config import CONFIG_MARKER
from .runs import LOG_FIELDS

PREPARED_FORMAT = "wavegen-prepared"
MODEL_FORMAT = "wavegen-model"
REPORT_MARK = "made by <code>wavegen report</code>"
SAMPLE_KINDS = ("synth", "vocode", "train")
CONFIG_TABLES = {"data", "model", "train"}


def read_json(path: Path) -> Any:
    """A JSON file's value; None when it is missing, unreadable or not JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_prepared_manifest(path: Path) -> bool:
    """Whether ``path`` is the manifest.json of wavegen's prepared data."""
    value = read_json(path)
    return isinstance(value, dict) and value.get("format") == PREPARED_FORMAT


def is_run_log(path: Path) -> bool:
    """Whether ``path`` is a log.csv that ``train`` wrote: its header is wavegen's columns,
    "step" first (an older log has fewer of them)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            header = handle.readline().strip().split(",")
    except OSError:
        return False
    return header[0] == "step" and set(header) <= set(LOG_FIELDS)


def is_run_config(path: Path) -> bool:
    """Whether ``path`` is a config.toml that ``train`` wrote: under ``CONFIG_MARKER``, or
    (written before the marker, or edited) TOML of wavegen's settings tables alone."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if text.startswith(CONFIG_MARKER):
        return True
    try:
        tables = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return False
    return bool(tables) and set(tables) <= CONFIG_TABLES and all(isinstance(v, dict) for v in tables.values())


def is_exported_model(folder: Path) -> bool:
    """Whether ``folder`` holds a model ``wavegen export`` wrote (its safetensors header says so)."""
    try:
        with open(Path(folder) / "model.safetensors", "rb") as handle:
            (size,) = struct.unpack("<Q", handle.read(8))
            if size > 1 << 24:
                return False
            header = json.loads(handle.read(size))
    except (OSError, ValueError, struct.error):
        return False
    return isinstance(header, dict) and (header.get("__metadata__") or {}).get("format") == MODEL_FORMAT


def is_report_page(path: Path) -> bool:
    """Whether ``path`` is an index.html that ``wavegen report`` wrote."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return REPORT_MARK in handle.read(4096)
    except OSError:
        return False


def is_run_folder(folder: Path) -> bool:
    """Whether ``folder`` is a run that ``train`` wrote."""
    folder = Path(folder)
    return (
        (folder / "checkpoints" / "latest.pt").is_file()
        or is_run_log(folder / "log.csv")
        or _starts_with(folder / "config.toml", CONFIG_MARKER)
    )


def _starts_with(path: Path, text: str) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read(len(text)) == text
    except OSError:
        return False


def output_folder(folder: Path) -> str | None:
    """What wavegen output ``folder`` is ("prepared data", "a run", "an exported model", "a
    report page"), or None when it is none of them."""
    folder = Path(folder)
    try:
        if is_prepared_manifest(folder / "manifest.json"):
            return "prepared data"
        if is_run_folder(folder):
            return "a run"
        if is_exported_model(folder):
            return "an exported model"
        if is_report_page(folder / "index.html"):
            return "a report page"
    except OSError:  # a folder that cannot be read: the search names it as such
        pass
    return None


def sample_record(json_path: Path) -> dict | None:
    """The metadata of a sample wavegen generated (``artifacts``), read from ``json_path``;
    None when it is not one."""
    record = read_json(json_path)
    if isinstance(record, dict) and record.get("kind") in SAMPLE_KINDS and isinstance(record.get("wav"), str):
        return record
    return None


def generated_audio(path: Path) -> str | None:
    """Which wavegen command generated the audio file ``path`` ("synth", "vocode", "train"; a
    vocode input copy is "vocode"), known by the record beside it; None when none did."""
    path = Path(path)
    record = sample_record(path.with_suffix(".json"))
    if record is not None and record["wav"] == path.name:
        return str(record["kind"])
    if path.stem.endswith(".input"):  # NAME.input.wav: named by NAME.json's "input"
        output = sample_record(path.with_name(path.stem[: -len(".input")] + ".json"))
        copy = output.get("input") if output else None
        if isinstance(copy, dict) and copy.get("wav") == path.name:
            return str(output["kind"]) if output else None
    return None


def refuse_foreign(path: Path, what: str, option: str) -> None:
    """The one-line refusal of a file wavegen would replace but did not write."""
    raise ConfigError(
        f"{path}: not {what} that wavegen wrote, so it is left as it is; give another {option}, or move the file away"
    )


def check_run_folder(run: Path) -> None:
    """Refuse, before anything is touched, a run folder whose log.csv or config.toml wavegen
    did not write (``train`` rewrites both): one ``ConfigError`` line naming the file. Beside a
    checkpoint (which ``train`` reads as wavegen's, or refuses) config.toml is the run's own,
    however the user edited it: its errors are said as such."""
    run = Path(run)
    if (run / "log.csv").exists() and not is_run_log(run / "log.csv"):
        refuse_foreign(run / "log.csv", "a training log", "--run")
    resumes = (run / "checkpoints" / "latest.pt").is_file()
    if (run / "config.toml").exists() and not resumes and not is_run_config(run / "config.toml"):
        refuse_foreign(run / "config.toml", "a run's settings file", "--run")
