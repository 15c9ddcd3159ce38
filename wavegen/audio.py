"""Reading and writing audio files: any format in, mono float32 at a chosen rate; 16-bit WAV out."""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf

from .files import atomic_open

AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".aifc"}


class AudioReadError(Exception):
    """A file that cannot be used; the message says why (the caller adds the file name)."""


def find_audio_files(folder: Path) -> list[Path]:
    """Audio files under ``folder`` (recursively, by extension), sorted for reproducibility.

    Symbolic links to folders are not followed, so a link loop cannot trap the search.
    """
    found = []
    for root, _dirs, files in os.walk(folder, followlinks=False):
        for name in files:
            if Path(name).suffix.lower() in AUDIO_EXTENSIONS:
                found.append(Path(root) / name)
    return sorted(found)


def _decode(path: Path) -> tuple[np.ndarray, int]:
    """Decode to float32 (frames, channels); soundfile first, librosa (audioread) for the rest."""
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        return data, rate
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as first_error:
        try:
            import librosa  # slow to import: only when soundfile cannot decode the file

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mono, rate = librosa.load(str(path), sr=None, mono=True)
            return mono[:, None].astype(np.float32), int(rate)
        except Exception:
            raise AudioReadError(f"cannot decode ({first_error})") from None


def load_audio(path: Path, sample_rate: int) -> np.ndarray:
    """Read ``path`` as mono float32 at ``sample_rate`` (channels averaged, resampled if needed)."""
    if path.stat().st_size == 0:
        raise AudioReadError("empty file (0 bytes)")
    data, rate = _decode(path)
    if data.size == 0:
        raise AudioReadError("no audio frames")
    mono = data.mean(axis=1, dtype=np.float32)
    if not np.isfinite(mono).all():
        raise AudioReadError("contains NaN or infinite samples")
    if rate != sample_rate:
        import librosa

        mono = librosa.resample(mono, orig_sr=rate, target_sr=sample_rate, res_type="soxr_hq")
    return np.clip(mono, -1.0, 1.0).astype(np.float32)


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write mono 16-bit PCM atomically: a crash never leaves a half-written file at ``path``.

    The WAV is built in memory, then written in one go: soundfile swallows an error its writes
    raise (printing a traceback from its callback), so a full disk must meet a plain write.
    """
    encoded = io.BytesIO()
    sf.write(encoded, np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    with atomic_open(path, "wb") as handle:
        handle.write(encoded.getbuffer())
