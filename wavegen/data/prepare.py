"""``prepare``: recordings → a prepared folder (its format: ``data.prepared``)."""
from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np

from ..audio.io import (
    AudioReadError,
    cancel_note,
    display_name,
    find_audio_files,
    os_error_reason,
    read_recording,
)
from ..audio.mulaw import encode_uint8
from ..config import DataConfig
from ..errors import DataError
from ..files import atomic_open, atomic_write_text
from ..outputs import no_empty_folders_on_failure
from .prepared import FORMAT, MANIFEST

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
    from ..audio.features import MelSettings, check_bands, frame_count, log_mel

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
    from ..progress import bar

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
