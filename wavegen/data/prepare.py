"""``prepare``: recordings → a prepared folder (its format: ``data.prepared``)."""

from __future__ import annotations

import contextlib
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np

from ..audio.features import MelSettings, check_bands, frame_count, log_mel
from ..audio.io import AudioReadError, cancel_note, display_name, duration, os_error_reason, over_note, read_recording
from ..audio.mulaw import encode_uint8
from ..audio.search import find_audio_files
from ..config import DataConfig
from ..errors import DataError
from ..files import all_or_none, atomic_open, atomic_write_text, wrong_kind
from ..locks import LOCK_NAME, folder_lock
from ..outputs import no_empty_folders_on_failure
from ..progress import bar
from .notes import mono_note, plural, some
from .outfolder import not_searched, previous_set, replace_set
from .prepared import FORMAT, MANIFEST
from .reasons import loudest_channel, silence, too_short

logger = logging.getLogger(__name__)


def _trim(audio: np.ndarray, top_db: float) -> tuple[np.ndarray, int]:
    """Drop leading and trailing silence; return the audio and how many samples went."""
    from librosa.effects import trim

    if not np.any(audio):
        return audio[:0], len(audio)
    trimmed, (start, end) = trim(audio, top_db=top_db)
    return trimmed, len(audio) - (end - start)


def prepare(
    dataset: Path,
    out: Path,
    config: DataConfig,
    progress: bool = True,
    min_samples: int = 0,
    min_reason: str = "the model's receptive field",
) -> dict:
    """Encode every audio file under ``dataset`` into ``out``; return the manifest.

    Every file under ``dataset`` is prepared or named, once, with its reason; the manifest
    lists the named ones under "skipped":

    - skipped (a problem; ``has_problems`` is true): a file that looks like audio (by name or content) but
      cannot be used: unreadable, not audio after all, NaN samples, silent (and why: channels that cancel when
      mixed, a constant offset), shorter than ``min_samples`` after resampling and trimming (``min_reason``: the
      recipe's receptive field), a channel it does not have (``data.channel``); folders that cannot be listed and
      links not followed.
    - ignored (entries with ``"ignored": true``; no problem): files that are not audio by name
      nor content (a README, cover art), hidden files and folders (``.DS_Store``, ``.git/``), and
      ``out`` or other prepared data inside ``dataset``. They are named grouped by reason, a line per reason.

    Trimming is reported per file and in total. Re-running replaces the previous prepared data only
    once the new one is complete; a call that prepares nothing leaves no ``out`` folder.
    """
    dataset, out = Path(dataset), Path(out)
    if problem := wrong_kind(dataset, "folder"):  # (one recording is a folder's work too: put it in one)
        raise DataError(f"{dataset}: {problem}; give the folder that holds the recordings")
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: --out is a file, not a folder")
    prune = not_searched(out)  # (before the lock makes the folder: a new --out holds nothing to name)
    with no_empty_folders_on_failure(out), folder_lock(out, "prepares data"):
        previous = previous_set(out)  # (under the lock: what another prepare leaves counts)
        return _prepare(dataset, out, config, progress, (min_samples, min_reason), previous, prune)


def has_problems(manifest: dict) -> bool:
    """Whether ``prepare`` skipped anything that looked like audio (``ignored`` entries, files
    that are not audio and hidden ones, are not problems): the CLI's exit status 3."""
    return any(not entry.get("ignored") for entry in manifest["skipped"])


def _prepare(
    dataset: Path,
    out: Path,
    config: DataConfig,
    progress: bool,
    shortest: tuple[int, str],
    previous: dict | None,
    prune: Callable[[Path], str | None],
) -> dict:
    mel = MelSettings.from_data(config) if config.mel_bands else None
    if mel:
        check_bands(mel)
    job = _Preparation(dataset, out, config, mel, shortest)
    files = find_audio_files(dataset, job.skip, job.ignore, prune=prune)
    job.say_ignored()
    if not files:
        named = len(job.manifest["skipped"])
        raise DataError(
            f"{dataset}: no audio files found"
            + (f" among its {plural(named, 'entry', 'entries')} (named above)" if named else " (the folder is empty)")
        )
    with contextlib.ExitStack() as stack:
        job.open(stack)
        for path in bar(files, enabled=progress, desc="prepare", unit="file", leave=False):
            usable = job.usable(path)
            if usable is not None:
                job.add(path, *usable)
        if not job.manifest["files"]:
            # each was named above with its reason: naming one again would count it twice
            raise DataError(f"{dataset}: none of the {len(files)} audio files could be used (reasons above)")
        job.finish()
    replace_set(out, previous)  # (the new set in place: what is left of the old one goes)
    logger.info(job.summary())
    return job.manifest


SPLITS = ("train", "val")


class _Preparation:
    """One ``prepare`` call under way: the manifest it builds, the files its splits' codes and
    mel frames go to (and where the next ones start), and what it names as skipped or ignored."""

    def __init__(self, dataset: Path, out: Path, config: DataConfig, mel, shortest: tuple[int, str]) -> None:
        self.dataset, self.out, self.config, self.mel = dataset, out, config, mel
        (self.min_samples, self.min_reason), self.trimmed_total = shortest, 0
        self.manifest: dict = {
            "format": FORMAT,
            "version": 1,
            "sample_rate": config.sample_rate,
            "channel": config.channel,
            "dataset": display_name(dataset.resolve()),
            "val_fraction": config.val_fraction,
            "labels": [],
            "mel": mel.as_dict() if mel else None,
            "files": [],
            "skipped": [],
        }
        self.offsets = {"train": 0, "val": 0, "train_frames": 0, "val_frames": 0}
        self.ignored: dict[str, list[str]] = {}  # reason -> names, said in one line per reason
        self.mono: list[str] = []  # mono files that --channel N (N >= 1) could not apply to
        self.codes_out: dict = {}
        self.mels_out: dict = {}

    def _entry(self, path: Path, reason: str, ignored: bool = False) -> None:
        folder = path.is_dir()  # a folder that could not be listed, or a link not followed
        source = display_name(path.relative_to(self.dataset)) + ("/" if folder else "")
        entry: dict[str, str | bool] = {"source": source, "reason": reason}
        if ignored:
            entry["ignored"] = True
        self.manifest["skipped"].append(entry)

    def skip(self, path: Path, reason: str) -> None:
        """A file that looked like audio but cannot be used: named now, with its reason."""
        self._entry(path, reason)
        logger.warning(f"skipped {display_name(path)}{'/' if path.is_dir() else ''}: {reason}")

    def ignore(self, path: Path, reason: str) -> None:
        """An entry with no audio to prepare (a README, a hidden file): named with its kind."""
        if path.name == LOCK_NAME and path.parent == self.out:  # this call's own lock (--out is the dataset)
            return
        self._entry(path, reason, ignored=True)
        self.ignored.setdefault(reason, []).append(display_name(path) + ("/" if path.is_dir() else ""))

    def say_ignored(self) -> None:
        for reason, names in self.ignored.items():
            logger.info(f"ignored {some(names)}: {reason}")

    def open(self, stack: contextlib.ExitStack) -> None:
        """The split files and the manifest, one set: they replace earlier ones together once complete."""
        stack.enter_context(all_or_none())  # (a kill, Ctrl-C or SIGTERM before that leaves the old set)
        self.codes_out = {split: stack.enter_context(atomic_open(self.out / f"{split}.u8")) for split in SPLITS}
        if self.mel:
            self.mels_out = {split: stack.enter_context(atomic_open(self.out / f"{split}.mel")) for split in SPLITS}

    def usable(self, path: Path) -> tuple[np.ndarray, int, str | None] | None:
        """The file's audio (mono, at the rate, trimmed if asked), samples trimmed, and label;
        None when it cannot be used (then named with its reason)."""
        config, label = self.config, None
        if config.label_source == "folders":
            parts = path.relative_to(self.dataset).parts
            if len(parts) < 2:
                self.skip(path, "not inside a label folder (with --labels folders, files go in DATASET/<label>/)")
                return None
            label = display_name(parts[0])
        try:
            recording = read_recording(path, config.sample_rate, config.channel)
        except (AudioReadError, OSError) as exc:  # OSError: e.g. the file went away while it was being read
            self.skip(path, str(exc) if isinstance(exc, AudioReadError) else os_error_reason(exc, path))
            return None
        reason = silence(recording)
        if reason:
            self.skip(path, reason)
            return None
        if cancel_note(recording):
            logger.warning(
                f"note: {display_name(path)}: {cancel_note(recording)}; prepared as mixed: "
                f"--channel {loudest_channel(recording)} would keep one channel"
            )
        if over_note(recording):
            logger.warning(f"note: {display_name(path)}: {over_note(recording)}")
        if recording.channels == 1 and config.channel not in ("mix", "0"):
            self.mono.append(display_name(path))
        audio, trimmed = recording.audio, 0
        if config.trim_silence:
            audio, trimmed = _trim(audio, config.trim_db)
            self.trimmed_total += trimmed
            if len(audio) == 0:
                self.skip(
                    path,
                    f"nothing left after trimming silence (no part above -{config.trim_db:g} dB "
                    "from its peak); --no-trim-silence keeps the file whole",
                )
                return None
        if len(audio) < self.min_samples:
            self.skip(path, too_short(len(audio), trimmed, self.min_samples, config, self.min_reason))
            return None
        return audio, trimmed, label

    def add(self, path: Path, audio: np.ndarray, trimmed: int, label: str | None) -> None:
        """Append a file's codes (and mel frames) to the splits: its tail is held out."""
        rate, mel = self.config.sample_rate, self.mel
        codes = encode_uint8(audio)
        cut = len(codes) - int(len(codes) * self.config.val_fraction)
        entry = {
            "source": display_name(path.relative_to(self.dataset)),
            "duration_s": round(len(codes) / rate, 4),
            "trimmed_s": round(trimmed / rate, 4),
        }
        if label is not None:
            entry["label"] = label
        for split, part, part_audio in (("train", codes[:cut], audio[:cut]), ("val", codes[cut:], audio[cut:])):
            self.codes_out[split].write(part.tobytes())
            entry[split] = [self.offsets[split], len(part)]
            self.offsets[split] += len(part)
            if mel:
                features = log_mel(part_audio, mel)  # (frames, bands)
                assert len(features) == frame_count(len(part), mel.hop)
                self.mels_out[split].write(features.tobytes())
                entry[f"{split}_frames"] = [self.offsets[f"{split}_frames"], len(features)]
                self.offsets[f"{split}_frames"] += len(features)
        self.manifest["files"].append(entry)
        logger.debug(f"{display_name(path)}: {len(codes) - cut} of {len(codes)} samples held out for validation")

    def finish(self) -> None:
        """The totals and labels into the manifest, the manifest written last (in the set: it
        goes into place with the splits)."""
        manifest, offsets = self.manifest, self.offsets
        manifest["train_samples"], manifest["val_samples"] = offsets["train"], offsets["val"]
        if self.mel:
            manifest["train_frames"], manifest["val_frames"] = offsets["train_frames"], offsets["val_frames"]
        if self.config.label_source == "folders":
            counts = Counter(entry["label"] for entry in manifest["files"])
            manifest["labels"] = sorted(counts)
            logger.info(
                "labels: " + ", ".join(f"{name} ({plural(counts[name], 'file')})" for name in manifest["labels"])
            )
        atomic_write_text(self.out / MANIFEST, json.dumps(manifest, indent=1, ensure_ascii=False))
        if self.mono:
            logger.warning(mono_note(self.config.channel, self.mono))

    def summary(self) -> str:
        config, offsets, skipped = self.config, self.offsets, self.manifest["skipped"]
        seconds = (offsets["train"] + offsets["val"]) / config.sample_rate
        text = (
            f"prepared {plural(len(self.manifest['files']), 'file')} ({duration(seconds)} at "
            f"{config.sample_rate} Hz: {offsets['train']} train + {offsets['val']} validation samples) into "
            f"{display_name(self.out)}"
        )
        if self.mel:
            text += f", with {self.mel.bands}-band log-mel features every {self.mel.hop} samples"
        if config.trim_silence:
            text += f"; trimmed {duration(self.trimmed_total / config.sample_rate)} of silence"
        problems = [entry for entry in skipped if not entry.get("ignored")]
        if problems:
            text += f"; skipped {_count_skipped(problems)} (named above)"
        own = [e for e in skipped if e.get("ignored") and _wavegens(e["reason"])]
        other = [e for e in skipped if e.get("ignored") and not _wavegens(e["reason"])]
        if other:
            text += f"; ignored {_count_skipped(other)} (no audio to prepare; named above)"
        if own:
            text += f"; left out {_count_skipped(own)} that wavegen wrote (its outputs, not recordings; named above)"
        return text


def _wavegens(reason: str) -> bool:
    """Whether an ignored entry's reason says it is wavegen's own output."""
    return "wavegen" in reason or reason.startswith("the --out folder")


def _count_skipped(skipped: list[dict]) -> str:
    """'3 files', '1 file and 1 folder': folders' sources end in /."""
    folders = sum(entry["source"].endswith("/") for entry in skipped)
    counts = [(len(skipped) - folders, "file"), (folders, "folder")]
    return " and ".join(plural(n, word) for n, word in counts if n)
