"""A prepared folder's ``manifest.json`` checked before anything trusts it: every field ``prepare``
writes has its type and range, the spans tile the code files in order, and the mel settings are
ones ``prepare`` could have used. A hand-edited or damaged manifest is one line naming the file
and the field, never a traceback or a model trained on the wrong samples."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from ..audio.features import MelSettings, frame_count
from ..config_ranges import MAX_MEL_BANDS, MAX_SAMPLE_RATE
from ..errors import DataError

SPLITS = ("train", "val")


class _Bad(Exception):
    """A field that is not what ``prepare`` writes: (its name, what it should be)."""


def _whole(value: Any, low: int = 0, high: float = math.inf) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _need(ok: bool, field: str, expected: str) -> None:
    if not ok:
        raise _Bad(field, expected)


def check_manifest(manifest: Any, path: Path) -> None:
    """Refuse a manifest (``path``) that ``prepare`` could not have written: ``DataError`` naming
    the first bad field, with what it should be."""
    try:
        _check(manifest)
    except _Bad as bad:
        field, expected = bad.args
        raise DataError(f"{path}: '{field}' must be {expected}; run `wavegen prepare` again") from None


def _check(m: Any) -> None:
    _need(isinstance(m, dict), "manifest", "a JSON object")
    _need(m.get("version") == 1, "version", "1")
    rate = m.get("sample_rate")
    _need(_whole(rate, 1000, MAX_SAMPLE_RATE), "sample_rate", f"a rate in Hz in [1000, {MAX_SAMPLE_RATE}]")
    channel = m.get("channel", "mix")
    _need(isinstance(channel, str) and (channel == "mix" or channel.isdigit()), "channel", "'mix' or a number")
    fraction = m.get("val_fraction", 0.0)
    _need(_real(fraction) and 0 <= fraction < 1, "val_fraction", "a number in [0, 1)")
    labels = m.get("labels") or []
    _need(
        isinstance(labels, list) and all(isinstance(x, str) for x in labels) and len(set(labels)) == len(labels),
        "labels",
        "a list of distinct names",
    )
    mel = m.get("mel")
    if mel is not None:
        _check_mel(mel, rate)
    files = m.get("files")
    _need(isinstance(files, list) and all(isinstance(f, dict) for f in files), "files", "a list of file entries")
    for i, entry in enumerate(files):
        _need(isinstance(entry.get("source"), str), f"files[{i}].source", "a file name")
        if labels:
            _need(entry.get("label") in labels, f"files[{i}].label", "one of 'labels'")
    for split in SPLITS:
        _check_spans(files, split, f"{split}_samples", m.get(f"{split}_samples"))  # (a file's span: its "train")
        if mel is not None:
            _check_spans(files, f"{split}_frames", f"{split}_frames", m.get(f"{split}_frames"))
            for i, entry in enumerate(files):
                count = frame_count(entry[split][1], mel["hop"])
                _need(entry[f"{split}_frames"][1] == count, f"files[{i}].{split}_frames", f"{count} frames long")


def _check_mel(mel: Any, rate: int) -> None:
    names = [f.name for f in dataclasses.fields(MelSettings)]
    _need(isinstance(mel, dict) and sorted(mel) == sorted(names), "mel", f"a table of {', '.join(names)}")
    _need(mel["sample_rate"] == rate, "mel.sample_rate", f"the manifest's sample_rate ({rate})")
    _need(_whole(mel["bands"], 1, MAX_MEL_BANDS), "mel.bands", f"in [1, {MAX_MEL_BANDS}]")
    _need(_whole(mel["hop"], 1, 65536), "mel.hop", "in [1, 65536]")
    _need(_whole(mel["n_fft"], mel["hop"], 65536), "mel.n_fft", "in [mel.hop, 65536]")
    _need(_real(mel["fmin"]) and mel["fmin"] >= 0, "mel.fmin", "a frequency >= 0")
    _need(_real(mel["fmax"]) and mel["fmin"] < mel["fmax"] <= rate / 2, "mel.fmax", "in (mel.fmin, sample_rate / 2]")


def _check_spans(files: list[dict], key: str, total_key: str, total: Any) -> None:
    """Each file's [offset, length] under ``key`` follows the one before it, and together they
    cover ``total`` (what the code or mel file holds): the layout ``prepare`` writes."""
    _need(_whole(total), total_key, "a whole number >= 0")
    at = 0
    for i, entry in enumerate(files):
        span: Any = entry.get(key)
        ok = isinstance(span, list) and len(span) == 2 and _whole(span[1]) and span[0] == at
        _need(ok, f"files[{i}].{key}", f"[{at}, length]: the span after the one before it")
        at += span[1]
    _need(at == total, total_key, f"{at}, the sum of the files' {key} lengths")
