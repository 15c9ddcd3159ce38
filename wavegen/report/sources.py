"""What a report reads: the run folder (its config, checkpoint facts and log.csv) and the samples
written from it, with their metadata."""

from __future__ import annotations

import csv
import os
import re
import stat
import time
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any

from ..audio.artifacts import plain_name as is_plain
from ..audio.artifacts import read_samples
from ..config import Config, validate
from ..errors import ConfigError
from ..model.checkpoint import describe_checkpoint
from ..model.network import check_size, receptive_field
from ..outputs import safe_name
from ..runs import checkpoint_paths, newest_run, run_folder


def plain_name(name: Any, suffix: str) -> str | None:
    """``name`` when it is a plain file name ending in ``suffix`` (never a path, never ../), else
    None: a name read from metadata anyone can edit (the rule is ``artifacts.plain_name``)."""
    return name if is_plain(name, suffix) else None


def own_file(path: Path, kind: str) -> bool:
    """Whether ``path`` is a regular file of its own (a link is never followed: a sample folder
    anyone can write to must not publish another file) whose content is ``kind``: "wav"
    (RIFF/RF64 … WAVE) or "png"."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:  # a link (ELOOP), gone, unreadable
        return False
    try:
        head = os.read(fd, 12) if stat.S_ISREG(os.fstat(fd).st_mode) else b""
    except OSError:
        head = b""
    finally:
        os.close(fd)
    if kind == "png":
        return head.startswith(b"\x89PNG\r\n\x1a\n")
    return head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE"


def find_run(run: Path | None) -> Path:
    """``run`` as given (it must be a run folder: ``runs.run_folder``), or the newest run under ``runs/``."""
    return newest_run() if run is None else run_folder(run)


def read_log(path: Path) -> list[dict[str, float | None]]:
    """log.csv as rows of numbers (None where a column is empty); no file: no rows."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    rows = []
    for row in csv.DictReader(text.splitlines()):
        parsed = {}
        for key, value in row.items():
            try:
                parsed[key] = float(value) if value not in (None, "") else None
            except (TypeError, ValueError):
                parsed[key] = None
        if parsed.get("step") is not None:
            rows.append(parsed)
    return rows


def run_facts(run: Path, rows: list[dict]) -> dict[str, Any]:
    """Name, step, parameters, receptive field and resolved config (a dict, or the raw text when
    config.toml cannot be parsed), from the latest checkpoint where there is one."""
    facts: dict[str, Any] = {
        "name": run.resolve().name,
        "step": None,
        "best_val_bits": None,
        "parameters": None,
        "receptive_field": None,
        "config": None,
        "config_text": None,
    }
    config_path = run / "config.toml"
    if config_path.is_file():
        text = config_path.read_text(encoding="utf-8", errors="replace")
        try:
            facts["config"] = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            facts["config_text"] = text
    checkpoint = next((p for p in checkpoint_paths(run).values() if p.is_file()), None)
    if checkpoint is not None:
        described = describe_checkpoint(checkpoint)
        facts.update(
            step=described["step"],
            best_val_bits=described["best_val_bits"],
            parameters=described["parameters"],
            receptive_field=(described["receptive_field_samples"], described["receptive_field_ms"]),
        )
        if facts["config"] is None and facts["config_text"] is None:
            facts["config"] = described["config"]
    elif facts["config"] is not None:
        config = Config.from_dict(facts["config"], source=str(config_path))
        try:
            validate(config)
            count = check_size(config.model)  # counted, not built: nothing to allocate for a page
        except ConfigError as exc:
            raise ConfigError(f"{config_path}: {exc}") from None
        rf = receptive_field(config.model)
        facts.update(
            parameters=count,
            receptive_field=(rf, round(1000 * rf / config.data.sample_rate, 2)),
        )
    if facts["step"] is None and rows:
        facts["step"] = int(rows[-1]["step"])
    return facts


def _timestamp(record: dict, fallback: Path) -> float:
    created = str(record.get("created", ""))
    for parse in (lambda s: datetime.strptime(s, "%Y-%m-%dT%H:%M:%S%z"), datetime.fromisoformat):
        try:
            return parse(created).timestamp()
        except ValueError:
            pass
    try:
        return fallback.stat().st_mtime
    except OSError:
        return 0.0


def input_of(record: dict[str, Any]) -> tuple[str | None, str | None]:
    """A vocode sample's input recording beside it: (WAV name, spectrogram name), each None
    when absent or not a plain file name. ``input`` is {"wav", "spectrogram", "source"} as
    vocode writes it (``artifacts``); a bare WAV name is accepted too."""
    given = record.get("input")
    wav, png = (given.get("wav"), given.get("spectrogram")) if isinstance(given, dict) else (given, None)
    return (wav if plain_name(wav, ".wav") else None), (png if plain_name(png, ".png") else None)


def find_samples(run_name: str, folders: list[Path]) -> list[dict[str, Any]]:
    """This run's samples in ``folders``, newest first (metadata records with "folder")."""
    found, seen = [], set()
    names = {run_name, safe_name(run_name)}  # synth names its files and metadata after the safe one
    pattern = re.compile(rf"(?:{'|'.join(re.escape(n) for n in names)})-step(\d+)(?:-(.+?))?-seed(-?\d+)\.wav")
    for folder in folders:
        key = folder.resolve()
        if key in seen or not folder.is_dir():
            continue
        seen.add(key)
        records = read_samples(folder)
        inputs = {input_of(r)[0] for r in records} - {None}
        described = {r["wav"] for r in records}
        for record in records:
            if record["wav"] in inputs:  # another sample's input recording, shown beside it
                continue
            run = record.get("run")
            if isinstance(run, str) and (run in names or Path(run).name in names):
                found.append(record)
        for wav in sorted(folder.glob("*.wav")):  # synth's WAVs from before metadata was written
            match = pattern.fullmatch(wav.name)
            if match and wav.name not in described and wav.name not in inputs and not wav.with_suffix(".json").exists():
                step, label, seed = match.groups()
                found.append(
                    {
                        "kind": "synth",
                        "run": run_name,
                        "step": int(step),
                        "seed": int(seed),
                        **({"label": label} if label else {}),
                        "wav": wav.name,
                        "folder": str(folder),
                        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(wav.stat().st_mtime)),
                        "inferred": True,
                    }
                )
    order = [
        (_timestamp(r, Path(r["folder"]) / r["wav"]), _mtime_ns(Path(r["folder"]) / r["wav"]), r["wav"]) for r in found
    ]
    return [r for _, r in sorted(zip(order, found), key=lambda pair: pair[0], reverse=True)]


def _mtime_ns(path: Path) -> int:
    meta = path.with_suffix(".json")
    try:
        return (meta if meta.exists() else path).stat().st_mtime_ns
    except OSError:
        return 0
