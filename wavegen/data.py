"""Prepared data: recordings → flat uint8 µ-law code files + a JSON manifest, and training windows.

Layout of a prepared folder (all written atomically, the manifest last):

    train.u8        codes of every file's training part, back to back (np.memmap-able)
    val.u8          codes of every file's held-out tail, back to back
    train.mel       with ``data.mels``: log-mel frames (frames, bands) float32 of every
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

import contextlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from .audio import AudioReadError, cancel_note, display_name, find_audio_files, os_error_reason, read_recording
from .conditioning import mel_window
from .config import DataConfig
from .errors import DataError
from .files import atomic_open, atomic_write_text
from .mulaw import SILENCE_CODE, encode_uint8
from .outputs import no_empty_folders_on_failure

MANIFEST = "manifest.json"
FORMAT = "wavegen-prepared"
IGNORE = -100  # target value that the loss skips (past the end of a file)
# A file whose loudest sample is below this is skipped as silent, trimming or not: it would only
# teach the model more silence (the training windows already start in it), and it is nearly
# always a mistake (a muted channel, a failed recording). µ-law spends barely 10 of its 256
# codes on all of it.
SILENT_DBFS = -60.0


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
    min_samples: int = 0,
) -> dict:
    """Encode every audio file under ``dataset`` into ``out``; return the manifest.

    Every file under ``dataset`` is prepared or named, once, with its reason; the manifest
    lists the named ones under "skipped":

    - skipped (a problem; ``has_problems`` is true): a file that looks like audio (by name or
      content) but cannot be used: unreadable, not audio after all, NaN samples, silent (and
      why: channels that cancel when mixed, a constant offset), shorter than ``min_samples``
      after resampling and trimming (the CLI passes the model's receptive field), a channel it
      does not have (``data.channel``); folders that cannot be listed and links not followed.
    - ignored (entries with ``"ignored": true``; no problem): files that are not audio by name
      nor content (a README, cover art), hidden files and folders (``.DS_Store``, ``.git/``),
      and ``out`` or other prepared data inside ``dataset``. They are named grouped by reason,
      a line per reason.

    Trimming is reported per file and in total. Re-running replaces the previous prepared data
    only once the new one is complete; a call that prepares nothing leaves no ``out`` folder.
    """
    dataset, out = Path(dataset), Path(out)
    if not dataset.is_dir():
        raise DataError(f"{dataset}: dataset folder not found")
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: output path exists and is not a folder")
    with no_empty_folders_on_failure(out):
        return _prepare(dataset, out, config, log, progress, min_samples)


def has_problems(manifest: dict) -> bool:
    """Whether ``prepare`` skipped anything that looked like audio (``ignored`` entries, files
    that are not audio and hidden ones, are not problems): the CLI's exit status 3."""
    return any(not entry.get("ignored") for entry in manifest["skipped"])


def _prepare(dataset: Path, out: Path, config: DataConfig, log: Callable[[str], None], progress: bool,
             min_samples: int) -> dict:
    from .features import MelSettings, check_bands, frame_count, log_mel

    mel = MelSettings.from_data(config) if config.mels else None
    if mel:
        check_bands(mel)
    manifest: dict = {
        "format": FORMAT, "version": 1, "sample_rate": config.sample_rate, "channel": config.channel,
        "dataset": display_name(dataset.resolve()), "val_fraction": config.val_fraction,
        "labels": [], "mel": mel.as_dict() if mel else None,
        "files": [], "skipped": [],
    }
    offsets = {"train": 0, "val": 0, "train_frames": 0, "val_frames": 0}
    trimmed_total = 0

    def entry_for(path: Path, reason: str, ignored: bool = False) -> dict:
        folder = path.is_dir()  # a folder that could not be listed, or a link not followed
        entry = {"source": display_name(path.relative_to(dataset)) + ("/" if folder else ""), "reason": reason}
        if ignored:
            entry["ignored"] = True
        manifest["skipped"].append(entry)
        return entry

    def skip(path: Path, reason: str) -> None:
        entry_for(path, reason)
        log(f"skipped {display_name(path)}{'/' if path.is_dir() else ''}: {reason}")

    ignored: dict[str, list[str]] = {}  # reason -> names, logged one line per reason

    def ignore(path: Path, reason: str) -> None:
        entry_for(path, reason, ignored=True)
        ignored.setdefault(reason, []).append(display_name(path) + ("/" if path.is_dir() else ""))

    files = find_audio_files(dataset, skip, ignore, prune=_not_searched(out))
    for reason, names in ignored.items():
        log(f"ignored {_some(names)}: {reason}")
    if not files:
        named = len(manifest["skipped"])
        raise DataError(f"{dataset}: no audio files found" + (
            f" among its {_plural(named, 'entry', 'entries')} (named above)" if named else " (the folder is empty)"))
    from .progress import bar

    splits = ("train", "val")
    with contextlib.ExitStack() as stack:
        codes_out = {split: stack.enter_context(atomic_open(out / f"{split}.u8")) for split in splits}
        mels_out = {split: stack.enter_context(atomic_open(out / f"{split}.mel")) for split in splits} if mel else {}
        for path in bar(files, enabled=progress, desc="prepare", unit="file", leave=False):
            source = display_name(path.relative_to(dataset))
            label = None
            if config.labels == "folders":
                parts = path.relative_to(dataset).parts
                if len(parts) < 2:
                    skip(path, "not inside a label folder (with --labels folders, files go in DATASET/<label>/)")
                    continue
                label = display_name(parts[0])
            try:
                recording = read_recording(path, config.sample_rate, config.channel)
            except AudioReadError as exc:
                skip(path, str(exc))
                continue
            except OSError as exc:  # e.g. the file went away while it was being read
                skip(path, os_error_reason(exc, path))
                continue
            reason = _silence(recording)
            if reason:
                skip(path, reason)
                continue
            if cancel_note(recording):
                log(f"note: {display_name(path)}: {cancel_note(recording)}; prepared as mixed: "
                    f"--channel {_loudest(recording)} would keep one channel")
            audio, trimmed = recording.audio, 0
            if config.trim_silence:
                audio, trimmed = _trim(audio, config.trim_db)
                trimmed_total += trimmed
                if len(audio) == 0:
                    skip(path, f"nothing left after trimming silence (no part above -{config.trim_db:g} dB "
                               "from its peak); --no-trim-silence keeps the file whole")
                    continue
            if len(audio) < min_samples:
                skip(path, _too_short(len(audio), trimmed, min_samples, config))
                continue
            codes = encode_uint8(audio)
            n_val = int(len(codes) * config.val_fraction)
            cut = len(codes) - n_val
            parts_audio = {"train": audio[:cut], "val": audio[cut:]}
            entry = {
                "source": source,
                "duration_s": round(len(codes) / config.sample_rate, 4),
                "trimmed_s": round(trimmed / config.sample_rate, 4),
            }
            if label is not None:
                entry["label"] = label
            for split in splits:
                part = codes[:cut] if split == "train" else codes[cut:]
                codes_out[split].write(part.tobytes())
                entry[split] = [offsets[split], len(part)]
                offsets[split] += len(part)
                if mel:
                    features = log_mel(parts_audio[split], mel)  # (frames, bands)
                    assert len(features) == frame_count(len(part), mel.hop)
                    mels_out[split].write(features.tobytes())
                    entry[f"{split}_frames"] = [offsets[f"{split}_frames"], len(features)]
                    offsets[f"{split}_frames"] += len(features)
            manifest["files"].append(entry)
        if not manifest["files"]:
            # each was named above with its reason: naming one again would count it twice
            raise DataError(f"{dataset}: none of the {len(files)} audio files could be used (reasons above)")
    manifest["train_samples"], manifest["val_samples"] = offsets["train"], offsets["val"]
    if mel:
        manifest["train_frames"], manifest["val_frames"] = offsets["train_frames"], offsets["val_frames"]
    if config.labels == "folders":
        counts = Counter(entry["label"] for entry in manifest["files"])
        manifest["labels"] = sorted(counts)
        log("labels: " + ", ".join(f"{name} ({counts[name]} file{'s' if counts[name] != 1 else ''})"
                                   for name in manifest["labels"]))
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1, ensure_ascii=False))

    seconds = (offsets["train"] + offsets["val"]) / config.sample_rate
    summary = (
        f"prepared {_plural(len(manifest['files']), 'file')} ({seconds / 60:.1f} min at {config.sample_rate} Hz: "
        f"{offsets['train']} train + {offsets['val']} validation samples) into {display_name(out)}"
    )
    if mel:
        summary += f", with {mel.bands}-band log-mel features every {mel.hop} samples"
    if config.trim_silence:
        summary += f"; trimmed {trimmed_total / config.sample_rate:.1f} s of silence"
    problems = [entry for entry in manifest["skipped"] if not entry.get("ignored")]
    if problems:
        summary += f"; skipped {_count_skipped(problems)} (named above)"
    if len(problems) < len(manifest["skipped"]):
        others = [entry for entry in manifest["skipped"] if entry.get("ignored")]
        summary += f"; ignored {_count_skipped(others)} (no audio to prepare; named above)"
    log(summary)
    return manifest


def _dbfs(level: float) -> str:
    return f"{20 * np.log10(level):.0f} dBFS" if level > 0 else "-inf dBFS"


def _loudest(recording) -> int:
    return int(np.argmax(recording.channel_peaks))


def _silence(recording) -> str | None:
    """Why a recording holds no sound to learn from, in its true cause (or None when it has).

    Below ``SILENT_DBFS`` everywhere: every channel silent, channels that cancel when mixed to
    mono, or a kept channel that is silent while another is not. A constant offset (DC) that
    varies by less than that is no sound either, however far from 0 it sits.
    """
    threshold = 10 ** (SILENT_DBFS / 20)
    audio, peaks = recording.audio, recording.channel_peaks
    peak = float(np.abs(audio).max())
    loudest = _loudest(recording)
    if peak < threshold:
        if peaks[loudest] >= threshold and recording.picked is not None:
            return (f"channel {recording.picked} is silent (peak {_dbfs(peaks[recording.picked])}); the sound is in "
                    f"channel {loudest} (peak {_dbfs(peaks[loudest])}): use --channel {loudest}, or --channel mix")
        if peaks[loudest] >= threshold:
            return (f"silent when mixed to mono: its {recording.channels} channels cancel (channel {loudest} peaks at "
                    f"{_dbfs(peaks[loudest])}, the mix at {_dbfs(peak)}); keep one channel with --channel {loudest} "
                    f"(or --set data.channel={loudest})")
        level = f"peak {_dbfs(peak)}" if peak else "every sample is 0"
        return f"silent throughout ({level}; nothing above {SILENT_DBFS:g} dBFS)"
    swing = float(audio.max() - audio.min()) / 2
    if swing < threshold:
        offset = float(np.mean(audio))
        return (f"no sound: a constant offset (DC) of {offset:+.3g} ({_dbfs(abs(offset))}) throughout, varying by "
                f"less than {SILENT_DBFS:g} dBFS")
    return None


def _too_short(length: int, trimmed: int, min_samples: int, config: DataConfig) -> str:
    """The reason for a file shorter than the model's receptive field; when trimming made it so,
    that is the cause to name."""
    reason = f"too short: {length} samples at {config.sample_rate} Hz"
    if trimmed and length + trimmed >= min_samples:
        return (f"{reason} after trimming silence ({length + trimmed} before; the rest is more than "
                f"{config.trim_db:g} dB below its peak), fewer than the {min_samples} of the model's receptive "
                "field; --no-trim-silence keeps the file whole")
    return (f"{reason}{' after trimming' if trimmed else ''}, fewer than the {min_samples} of the model's "
            "receptive field")


def _not_searched(out: Path) -> Callable[[Path], str | None]:
    """For ``find_audio_files``: this call's own output folder and other prepared data (a
    dataset folder may hold them) are never read as recordings."""
    target = os.path.realpath(out)

    def reason(folder: Path) -> str | None:
        if os.path.realpath(folder) == target:
            return "the --out folder of this prepare: not searched"
        manifest = folder / MANIFEST
        try:
            if manifest.is_file() and json.loads(manifest.read_text(encoding="utf-8")).get("format") == FORMAT:
                return "prepared data (wavegen): not searched"
        except (OSError, ValueError, AttributeError):
            pass
        return None

    return reason


def _some(names: list[str], shown: int = 5) -> str:
    """'a', 'a and b', 'a, b, c, d, e and 7 more'."""
    if len(names) <= shown:
        return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return ", ".join(names[:shown]) + f" and {len(names) - shown} more"


def _count_skipped(skipped: list[dict]) -> str:
    """'3 files', '1 file and 1 folder': folders' sources end in /."""
    folders = sum(entry["source"].endswith("/") for entry in skipped)
    counts = [(len(skipped) - folders, "file"), (folders, "folder")]
    return " and ".join(_plural(n, word) for n, word in counts if n)


def _plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n} {word if n == 1 else words or word + 's'}"


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
        if not manifest_path.is_file():
            raise DataError(f"{folder}: no prepared data here (run `wavegen prepare DATASET --out {folder}`)")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            assert manifest.get("format") == FORMAT
        except (OSError, ValueError, AssertionError):
            raise DataError(f"{manifest_path}: not a wavegen manifest; run `wavegen prepare` again") from None
        self.folder, self.manifest = folder, manifest
        self.sample_rate = int(manifest["sample_rate"])
        self.labels: list[str] = list(manifest.get("labels") or [])  # names, index = label id
        self.mel: dict | None = manifest.get("mel")  # features.MelSettings fields
        self.splits = {name: self._open(name) for name in ("train", "val")}

    def _map(self, path: Path, dtype: type, count: int, width: int = 1) -> np.ndarray:
        expected = count * width * np.dtype(dtype).itemsize
        size = path.stat().st_size if path.is_file() else -1
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
            split.mels = self._map(self.folder / f"{name}.mel", np.float32, self.manifest[f"{name}_frames"],
                                   self.mel["bands"])
            split.mel_spans = [tuple(f[f"{name}_frames"]) for f in files]
            split.hop = int(self.mel["hop"])
        return split

    @property
    def train(self) -> Split:
        return self.splits["train"]

    @property
    def val(self) -> Split:
        return self.splits["val"]


class Batch(NamedTuple):
    """Training windows: codes (B, W) int64, targets (B, segment) int64 and, with
    conditioning, label ids (B,), the mel frames each window depends on (B, bands, n) float32
    (``conditioning.mel_window``) and the window's first sample's place in its frame (B,)."""

    inputs: np.ndarray
    targets: np.ndarray
    labels: np.ndarray | None = None
    mels: np.ndarray | None = None
    offsets: np.ndarray | None = None


class WindowSampler:
    """Draws random training windows from one split with its own numpy RNG (state is saveable)."""

    def __init__(self, split: Split, context: int, segment: int, seed: int, start_fraction: float = 0.0,
                 start_silence: int = 0) -> None:
        if not split.spans:
            raise DataError(f"{split.name}: no samples to draw windows from (prepare more or longer files)")
        self.split, self.context, self.segment = split, context, segment
        self.start_fraction = start_fraction
        # windows without context drawn from a file's start lead with this much silence (at
        # most half the window, so that most of it is still targets)
        self.start_silence = min(start_silence, segment // 2) if context == 0 else 0
        lengths = np.array([length for _, length in split.spans], dtype=np.float64)
        self.weights = lengths / lengths.sum()  # every target sample equally likely
        self.rng = np.random.default_rng(seed)

    def window(
        self, file_index: int, target_start: int, inputs: np.ndarray | None = None, targets: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Inputs (context + segment,) and targets (segment,) for one file and target start,
        written into ``inputs`` and ``targets`` when given (rows of a batch: no second copy)."""
        offset, length = self.split.spans[file_index]
        begin, end = target_start - self.context, target_start + self.segment
        window = np.empty(end - begin, dtype=np.int64) if inputs is None else inputs
        lo, hi = max(begin, 0), min(end, length)
        window[: lo - begin] = SILENCE_CODE
        window[lo - begin : hi - begin] = self.split.codes[offset + lo : offset + hi]
        window[hi - begin :] = SILENCE_CODE
        if targets is None:
            targets = np.empty(self.segment, dtype=np.int64)
        targets[:] = window[self.context :]
        targets[max(hi - target_start, 0) :] = IGNORE  # past the file's end: not a target
        targets[: max(-target_start, 0)] = IGNORE  # before the file's start (start_silence): not a target
        return window, targets

    def window_mels(self, file_index: int, start: int, length: int) -> tuple[np.ndarray, int]:
        """The mel frames (bands, n) that samples ``start .. start + length - 1`` of a file
        depend on (silence outside the file), and ``start``'s offset in its frame."""
        from .conditioning import SILENCE

        offset, count = self.split.mel_spans[file_index]
        first, n = mel_window(start, length, self.split.hop)
        out = np.full((n, self.split.mels.shape[1]), SILENCE, np.float32)
        lo, hi = max(first, 0), min(first + n, count)
        if hi > lo:
            out[lo - first : hi - first] = self.split.mels[offset + lo : offset + hi]
        return out.T, start % self.split.hop

    def batch(self, batch_size: int) -> Batch:
        """Random windows: inputs (B, context + segment), targets (B, segment), and their
        conditioning when the data has labels or mels."""
        files = self.rng.choice(len(self.split.spans), size=batch_size, p=self.weights)
        starts = []
        from_start = self.rng.random(batch_size) < self.start_fraction
        for f, at_start in zip(files, from_start):
            length = self.split.spans[f][1]
            last = max(length - self.segment, 0)
            # Windows whose context reaches back past the file's start (into silence) teach the
            # model to begin a sound from silence, which is where generation starts. In long
            # files they are rare, so a share of windows is drawn from there on purpose.
            high = min(self.context, last) if at_start else last
            start = int(self.rng.integers(0, high + 1))  # drawn either way: the same RNG stream in both modes
            starts.append(-self.start_silence if at_start and self.start_silence else start)
        return self.windows([int(f) for f in files], starts)

    def windows(self, files: list[int], target_starts: list[int]) -> Batch:
        """The windows whose targets begin at ``target_starts`` in ``files``, with their
        conditioning when the data has labels or mels."""
        inputs = np.empty((len(files), self.context + self.segment), np.int64)  # (B, context + segment)
        targets = np.empty((len(files), self.segment), np.int64)  # (B, segment)
        for row, (f, t) in enumerate(zip(files, target_starts)):
            self.window(f, t, inputs[row], targets[row])  # read from the memmap straight into the batch
        batch = Batch(inputs, targets)
        if self.split.labels is not None:
            batch = batch._replace(labels=np.array([self.split.labels[f] for f in files], np.int64))
        if self.split.mels is not None:
            length = self.context + self.segment
            mels, offsets = zip(*(self.window_mels(f, t - self.context, length)
                                  for f, t in zip(files, target_starts)))
            batch = batch._replace(mels=np.stack(mels), offsets=np.array(offsets, np.int64))
        return batch

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


def describe(data: PreparedData) -> str:
    rate = data.sample_rate
    text = (
        f"{len(data.manifest['files'])} files, {data.train.samples / rate / 60:.1f} min train, "
        f"{data.val.samples / rate:.1f} s validation at {rate} Hz"
    )
    if data.labels:
        text += f", labels {', '.join(data.labels)}"
    if data.mel:
        text += f", {data.mel['bands']}-band log-mels every {data.mel['hop']} samples"
    return text

