"""Prepared data: recordings → flat uint8 µ-law code files + a JSON manifest, and training windows.

Layout of a prepared folder (all written atomically, the manifest last):

    train.u8        codes of every file's training part, back to back (np.memmap-able)
    val.u8          codes of every file's held-out tail, back to back
    manifest.json   sample rate, per-file source/duration/trim and [offset, length] spans,
                    and every skipped file with its reason

A training window is ``context + segment`` codes from one file. Targets are the last ``segment``
codes; the context before them may run off the start of the file, where it is filled with
silence, the same state the sampler starts from:

    file:            |x0 x1 x2 x3 x4 x5 x6 ...
    window: s s s s x0 x1 x2 | x3 x4 x5 x6      (s = silence code)
            └── context ───┘ └─ targets ─┘
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .audio import AudioReadError, find_audio_files, load_audio
from .config import DataConfig
from .errors import DataError
from .files import atomic_open, atomic_write_text
from .mulaw import SILENCE_CODE, encode_uint8

MANIFEST = "manifest.json"
FORMAT = "wavegen-prepared"
IGNORE = -100  # target value that the loss skips (past the end of a file)


def _trim(audio: np.ndarray, top_db: float) -> tuple[np.ndarray, int]:
    """Drop leading and trailing silence; return the audio and how many samples went."""
    import librosa

    if not np.any(audio):
        return audio[:0], len(audio)
    trimmed, (start, end) = librosa.effects.trim(audio, top_db=top_db)
    return trimmed, len(audio) - (end - start)


def prepare(
    dataset: Path,
    out: Path,
    config: DataConfig,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> dict:
    """Encode every audio file under ``dataset`` into ``out``; return the manifest.

    Unreadable files are skipped and named with their reason; trimming is reported per file and
    in total. Re-running replaces the previous prepared data only once the new one is complete.
    """
    dataset, out = Path(dataset), Path(out)
    if not dataset.is_dir():
        raise DataError(f"{dataset}: dataset folder not found")
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: output path exists and is not a folder")
    files = find_audio_files(dataset)
    if not files:
        raise DataError(f"{dataset}: no audio files found (looked for wav, flac, ogg, mp3, aiff)")
    from tqdm import tqdm

    manifest: dict = {
        "format": FORMAT, "version": 1, "sample_rate": config.sample_rate,
        "dataset": str(dataset.resolve()), "val_fraction": config.val_fraction,
        "files": [], "skipped": [],
    }
    offsets = {"train": 0, "val": 0}
    trimmed_total = 0
    with atomic_open(out / "train.u8") as train_out, atomic_open(out / "val.u8") as val_out:
        for path in tqdm(files, desc="prepare", unit="file", disable=not progress, leave=False):
            source = str(path.relative_to(dataset))
            try:
                audio = load_audio(path, config.sample_rate)
            except (AudioReadError, OSError) as exc:
                manifest["skipped"].append({"source": source, "reason": str(exc)})
                log(f"skipped {path}: {exc}")
                continue
            trimmed = 0
            if config.trim_silence:
                audio, trimmed = _trim(audio, config.trim_db)
                trimmed_total += trimmed
                if len(audio) == 0:
                    reason = f"silent throughout (nothing above -{config.trim_db:g} dB after trimming)"
                    manifest["skipped"].append({"source": source, "reason": reason})
                    log(f"skipped {path}: {reason}")
                    continue
            codes = encode_uint8(audio)
            n_val = int(len(codes) * config.val_fraction)
            parts = {"train": codes[: len(codes) - n_val], "val": codes[len(codes) - n_val :]}
            entry = {
                "source": source,
                "duration_s": round(len(codes) / config.sample_rate, 4),
                "trimmed_s": round(trimmed / config.sample_rate, 4),
            }
            for split, handle in (("train", train_out), ("val", val_out)):
                handle.write(parts[split].tobytes())
                entry[split] = [offsets[split], len(parts[split])]
                offsets[split] += len(parts[split])
            manifest["files"].append(entry)
        if not manifest["files"]:
            raise DataError(
                f"{dataset}: none of the {len(files)} audio files could be used "
                f"(first: {manifest['skipped'][0]['source']}: {manifest['skipped'][0]['reason']})"
            )
    manifest["train_samples"], manifest["val_samples"] = offsets["train"], offsets["val"]
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1, ensure_ascii=False))

    seconds = (offsets["train"] + offsets["val"]) / config.sample_rate
    summary = (
        f"prepared {len(manifest['files'])} files ({seconds / 60:.1f} min at {config.sample_rate} Hz: "
        f"{offsets['train']} train + {offsets['val']} validation samples) into {out}"
    )
    if config.trim_silence:
        summary += f"; trimmed {trimmed_total / config.sample_rate:.1f} s of silence"
    if manifest["skipped"]:
        summary += f"; skipped {len(manifest['skipped'])} files (named above)"
    log(summary)
    return manifest


@dataclass
class Split:
    """One split's codes and the [offset, length] span of each file in it."""

    codes: np.ndarray
    spans: list[tuple[int, int]]
    name: str = "split"  # for messages: the file the codes come from

    @property
    def samples(self) -> int:
        return int(sum(length for _, length in self.spans))


class PreparedData:
    """A prepared folder opened for training: memory-mapped codes and the manifest."""

    def __init__(self, folder: Path) -> None:
        folder = Path(folder)
        manifest_path = folder / MANIFEST
        if not manifest_path.is_file():
            raise DataError(f"{folder}: no prepared data here (run `wavegen prepare DATASET --out {folder}`)")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            assert manifest.get("format") == FORMAT
        except (OSError, ValueError, AssertionError):
            raise DataError(f"{manifest_path}: not a wavegen manifest; run `wavegen prepare` again") from None
        self.folder, self.manifest = folder, manifest
        self.sample_rate = int(manifest["sample_rate"])
        self.splits = {name: self._open(name) for name in ("train", "val")}

    def _open(self, name: str) -> Split:
        path = self.folder / f"{name}.u8"
        expected = self.manifest[f"{name}_samples"]
        size = path.stat().st_size if path.is_file() else -1
        if size != expected:
            raise DataError(f"{path}: expected {expected} bytes, found {max(size, 0)}; run `wavegen prepare` again")
        codes = np.memmap(path, dtype=np.uint8, mode="r") if expected else np.zeros(0, np.uint8)
        spans = [tuple(f[name]) for f in self.manifest["files"] if f[name][1] > 0]
        return Split(codes, spans, str(path))

    @property
    def train(self) -> Split:
        return self.splits["train"]

    @property
    def val(self) -> Split:
        return self.splits["val"]


class WindowSampler:
    """Draws random training windows from one split with its own numpy RNG (state is saveable)."""

    def __init__(self, split: Split, context: int, segment: int, seed: int, start_fraction: float = 0.0) -> None:
        if not split.spans:
            raise DataError(f"{split.name}: no samples to draw windows from (prepare more or longer files)")
        self.split, self.context, self.segment = split, context, segment
        self.start_fraction = start_fraction
        lengths = np.array([length for _, length in split.spans], dtype=np.float64)
        self.weights = lengths / lengths.sum()  # every target sample equally likely
        self.rng = np.random.default_rng(seed)

    def window(self, file_index: int, target_start: int) -> tuple[np.ndarray, np.ndarray]:
        """Inputs (context + segment,) and targets (segment,) for one file and target start."""
        offset, length = self.split.spans[file_index]
        begin, end = target_start - self.context, target_start + self.segment
        window = np.full(end - begin, SILENCE_CODE, dtype=np.int64)
        lo, hi = max(begin, 0), min(end, length)
        window[lo - begin : hi - begin] = self.split.codes[offset + lo : offset + hi]
        targets = window[self.context :].copy()
        targets[max(hi - target_start, 0) :] = IGNORE  # past the file's end: not a target
        return window, targets

    def batch(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Inputs (B, context + segment) and targets (B, segment), int64."""
        files = self.rng.choice(len(self.split.spans), size=batch_size, p=self.weights)
        pairs = []
        from_start = self.rng.random(batch_size) < self.start_fraction
        for f, at_start in zip(files, from_start):
            length = self.split.spans[f][1]
            last = max(length - self.segment, 0)
            # Windows whose context reaches back past the file's start (into silence) teach the
            # model to begin a sound from silence, which is where generation starts. In long
            # files they are rare, so a share of windows is drawn from there on purpose.
            high = min(self.context, last) if at_start else last
            start = int(self.rng.integers(0, high + 1))
            pairs.append(self.window(int(f), start))
        inputs, targets = zip(*pairs)
        return np.stack(inputs), np.stack(targets)

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


def describe(data: PreparedData) -> str:
    rate = data.sample_rate
    return (
        f"{len(data.manifest['files'])} files, {data.train.samples / rate / 60:.1f} min train, "
        f"{data.val.samples / rate:.1f} s validation at {rate} Hz"
    )

