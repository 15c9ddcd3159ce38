"""Prepared data: recordings → flat uint8 µ-law code files + a JSON manifest, and training windows.

Layout of a prepared folder (all written atomically, the manifest last):

    train.u8        codes of every file's training part, back to back (np.memmap-able)
    val.u8          codes of every file's held-out tail, back to back
    train.mel       with ``data.mel_bands``: log-mel frames (frames, bands) float32 of every
    val.mel         training part / held-out tail, back to back (features.py: frame f
                    covers samples [f·hop, (f+1)·hop) of its part)
    manifest.json   sample rate, channel setting, per-file source/duration/trim/label and
                    [offset, length] spans (samples, and frames for the mels), the label names,
                    the mel settings, and every skipped file (or folder, ending in /) with its
                    reason; entries with "ignored": true are not audio, hidden or prepared data
                    (not problems: they do not change the exit status)

Names are stored as ``audio.display_name`` writes them: bytes of a name that is not UTF-8
appear as ``\\xe9``-style escapes.

A training window is ``context + segment`` codes from one file. Targets are the last ``segment``
codes; the context before them may run off the start of the file, where it is filled with
silence, the same state the sampler starts from:

    file:            |x0 x1 x2 x3 x4 x5 x6 ...
    window: s s s s x0 x1 x2 | x3 x4 x5 x6      (s = silence code)
            └── context ───┘ └─ targets ─┘

Without context (``train.full_context = false``) a window is ``segment`` codes, each a target,
and the network pads before it. Windows drawn from a file's start then begin with
``start_silence`` silence codes that are not targets, so that the file's first samples are
predicted from the state generation starts from:

    window: s s s s x0 x1 x2 x3 x4 x5           targets: - - - - x0 x1 x2 x3 x4 x5
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..audio.io import duration
from ..errors import DataError
from .manifest import check_manifest

MANIFEST = "manifest.json"


FORMAT = "wavegen-prepared"


@dataclass
class Split:
    """One split's codes and the [offset, length] span of each file in it; with conditioning,
    each span's label index and its mel frames ((frames, bands) and [offset, count] spans)."""

    codes: np.ndarray
    spans: list[tuple[int, int]]
    name: str = "split"  # for messages: the file the codes come from
    labels: list[int] | None = None
    mels: np.ndarray | None = None
    mel_spans: list[tuple[int, int]] = field(default_factory=list)
    hop: int = 0

    @property
    def samples(self) -> int:
        return int(sum(length for _, length in self.spans))


class PreparedData:
    """A prepared folder opened for training: memory-mapped codes and the manifest."""

    def __init__(self, folder: Path) -> None:
        folder = Path(folder)
        manifest_path = folder / MANIFEST
        if folder.exists() and not folder.is_dir():
            raise DataError(f"{folder}: is a file, not a folder; give the folder `wavegen prepare` wrote")
        if not manifest_path.is_file():
            raise DataError(f"{folder}: no prepared data here (run `wavegen prepare DATASET --out {folder}`)")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            assert isinstance(manifest, dict) and manifest.get("format") == FORMAT
        except (OSError, ValueError, AssertionError):
            raise DataError(f"{manifest_path}: not a wavegen manifest; run `wavegen prepare` again") from None
        check_manifest(manifest, manifest_path)  # hand-edited fields are refused, not trusted
        self.folder, self.manifest = folder, manifest
        self.sample_rate = int(manifest["sample_rate"])
        self.labels: list[str] = list(manifest.get("labels") or [])  # names, index = label id
        self.mel: dict | None = manifest.get("mel")  # features.MelSettings fields
        self.splits = {name: self._open(name) for name in ("train", "val")}

    def _map(self, path: Path, dtype: type, count: int, width: int = 1) -> np.ndarray:
        expected = count * width * np.dtype(dtype).itemsize
        size = path.stat().st_size if path.is_file() else -1
        if size < 0:
            raise DataError(f"{path}: missing (its manifest names it); run `wavegen prepare` again")
        if size != expected:
            raise DataError(f"{path}: expected {expected} bytes, found {max(size, 0)}; run `wavegen prepare` again")
        if not count:
            return np.zeros((0, width) if width > 1 else 0, dtype)
        return np.memmap(path, dtype=dtype, mode="r", shape=(count, width) if width > 1 else (count,))

    def _open(self, name: str) -> Split:
        path = self.folder / f"{name}.u8"
        codes = self._map(path, np.uint8, self.manifest[f"{name}_samples"])
        files = [f for f in self.manifest["files"] if f[name][1] > 0]
        split = Split(codes, [tuple(f[name]) for f in files], str(path))
        if self.labels:
            split.labels = [self.labels.index(f["label"]) for f in files]
        if self.mel:
            split.mels = self._map(
                self.folder / f"{name}.mel", np.float32, self.manifest[f"{name}_frames"], self.mel["bands"]
            )
            split.mel_spans = [tuple(f[f"{name}_frames"]) for f in files]
            split.hop = int(self.mel["hop"])
        return split

    @property
    def train(self) -> Split:
        return self.splits["train"]

    @property
    def val(self) -> Split:
        return self.splits["val"]


def describe(data: PreparedData) -> str:
    rate = data.sample_rate
    text = (
        f"{len(data.manifest['files'])} files, {duration(data.train.samples / rate)} train, "
        f"{duration(data.val.samples / rate)} validation at {rate} Hz"
    )
    if data.labels:
        text += f", labels {', '.join(data.labels)}"
    if data.mel:
        text += f", {data.mel['bands']}-band log-mels every {data.mel['hop']} samples"
    return text
