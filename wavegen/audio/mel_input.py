"""Log-mel frames as they come: from a pipe of raw float32 frames, a .npy file, or audio (a WAV
stream, or any file ``io`` reads), for a vocoder generating while its input arrives.

Each iterator yields float32 arrays (k, bands) of one or more whole frames as soon as they are
complete; a pipe is read as far as it has data, never to its end before a frame is handed on.
Audio is analysed exactly as ``features.log_mel`` analyses a whole file (``MelFrames``): frame f
is handed on once the samples its window reads have arrived, and at the end of the input the last
frames are padded with zeros as the whole-file analysis pads them, so the frames are the same.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator

import numpy as np
import torch

from ..errors import DataError
from .features import SILENCE, MelSettings, frame_count, padded_sides, windows_log_mel
from .io import AudioReadError, read_recording
from .wav_stream import WavPipeReader

logger = logging.getLogger(__name__)

PIECE = 1 << 16  # bytes asked of a pipe at a time (it gives what it has)


def check_mels(mels: np.ndarray, bands: int, source: str = "mel") -> np.ndarray:
    """``mels`` as contiguous float32 (frames, bands); (bands, frames) is transposed. Raises
    ``DataError`` naming ``source`` for another shape, no frames, or NaN/infinite values."""
    mels = np.asarray(mels)
    if mels.ndim != 2 or bands not in mels.shape:
        raise DataError(f"{source}: expected log-mel features of shape (frames, {bands}), got {mels.shape}")
    if mels.shape[1] != bands:
        mels = mels.T
    if not np.issubdtype(mels.dtype, np.number) or not np.isfinite(mels).all():
        raise DataError(f"{source}: mel features contain NaN or infinite values")
    if len(mels) == 0:
        raise DataError(f"{source}: no frames")
    return np.ascontiguousarray(mels, np.float32)


# ln of a mel magnitude of 5e8: no audio in [-1, 1] comes near it (a full-scale sine reaches
# about ln 10 with the default analysis), so a larger value is another scale
CEILING = 20.0


def scale_note(mels: np.ndarray) -> str | None:
    """Words for features (frames, bands) whose range shows they are not natural-log mel
    magnitudes (``features.log_mel``: ln(max(magnitude, 1e-5)), so never below ``SILENCE``),
    None for features that could be. Judged from the range alone: decibels go far below the
    floor, linear magnitudes or power are never negative. A note, not a refusal: features of
    another analysis are the caller's to try, but they are said before they are heard."""
    if not mels.size:
        return None
    low, high = float(mels.min()), float(mels.max())
    if low < SILENCE - 0.01:
        guess = "decibels, or the logarithm of power"
    elif high > CEILING:
        guess = "linear magnitudes or power, or decibels"
    elif low >= 0:
        guess = "linear magnitudes or power (not their logarithm)"
    else:
        return None
    return (
        f"mel values from {low:.4g} to {high:.4g} are not natural-log mel magnitudes as the model was "
        f"trained on (those lie in [{SILENCE:.2f}, about 5]); they look like {guess}, and the audio will be "
        "noise: compute them as wavegen.audio.features.log_mel does, or give the recording to wavegen vocode"
    )


def noted_frames(frames: Iterable[np.ndarray], source: str) -> Iterator[np.ndarray]:
    """``frames`` as they come, saying ``scale_note`` of the first batch that has one (once)."""
    said = False
    for batch in frames:
        if not said and (note := scale_note(np.asarray(batch, np.float32))):
            logger.warning(f"note: {source}: {note}")
            said = True
        yield batch


def read_mel_file(path: str | Path, bands: int) -> np.ndarray:
    """Log-mel features (frames, bands) from a .npy file, as ``prepare`` stores them
    ((bands, frames) is accepted too). Raises ``DataError`` for an unreadable file or bad features."""
    if Path(path).is_dir():
        raise DataError(f"{path}: is a folder, not a file; give a .npy of log-mel frames")
    try:
        mels = np.load(Path(path), allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read mel features ({exc})") from None
    return check_mels(mels, bands, str(path))


def reader(source: BinaryIO) -> Callable[[int], bytes]:
    """A read that returns what ``source`` has (at least a byte, b"" at its end) instead of
    waiting for the whole size asked: a buffered file's ``read1``, else its ``read``."""
    return getattr(source, "read1", None) or source.read


def frames_from_raw(source: BinaryIO, bands: int) -> Iterator[np.ndarray]:
    """Frames (k, bands) from raw little-endian float32, ``bands`` values per frame, each batch
    as soon as its bytes have arrived. Raises ``DataError`` for a trailing partial frame or
    NaN/infinite values."""
    name, size = _name(source), 4 * bands
    read, pending = reader(source), b""
    while data := read(PIECE):
        pending += data
        whole = len(pending) - len(pending) % size
        if whole:
            frames = np.frombuffer(pending[:whole], "<f4").reshape(-1, bands)  # (k, bands)
            pending = pending[whole:]
            yield check_mels(frames, bands, name)
    if pending:
        raise DataError(
            f"{name}: ends with a partial frame ({len(pending)} of {size} bytes: {bands} float32 values per frame)"
        )


def frames_from_npy(path: str | Path, bands: int, chunk: int = 64) -> Iterator[np.ndarray]:
    """Frames (k ≤ ``chunk``, bands) of a (frames, bands) or (bands, frames) .npy file
    (``read_mel_file``'s rules; ``DataError`` as it raises), a chunk at a time."""
    mels = read_mel_file(path, bands)
    for start in range(0, len(mels), chunk):
        yield mels[start : start + chunk]


class MelFrames:
    """``features.log_mel`` of audio given a piece at a time: ``add`` returns the frames whose
    windows the audio so far completes, ``end`` the rest, padded as the whole-file analysis pads."""

    def __init__(self, settings: MelSettings) -> None:
        self.settings = settings
        self.left, self.right = padded_sides(settings)
        self.buffer = np.zeros(self.left, np.float32)  # the padded audio from frame ``done``'s window on
        self.done = 0  # frames handed on
        self.samples = 0  # audio samples given

    def add(self, audio: np.ndarray) -> np.ndarray:
        """The frames (k, bands) that ``audio`` (samples,), after what came before, completes."""
        self.buffer = np.concatenate([self.buffer, np.asarray(audio, np.float32)])
        self.samples += len(audio)
        s = self.settings
        return self._frames(max(0, (len(self.buffer) - s.n_fft) // s.hop + 1))

    def end(self) -> np.ndarray:
        """The last frames (k, bands): ceil(samples / hop) in all, the audio padded with zeros."""
        s = self.settings
        count = frame_count(self.samples, s.hop) - self.done
        if count <= 0:
            return np.zeros((0, s.bands), np.float32)
        needed = (count - 1) * s.hop + s.n_fft
        self.buffer = np.concatenate([self.buffer, np.zeros(max(0, needed - len(self.buffer)), np.float32)])
        return self._frames(count)

    def _frames(self, count: int) -> np.ndarray:
        s = self.settings
        if count == 0:
            return np.zeros((0, s.bands), np.float32)
        window = torch.from_numpy(self.buffer[: (count - 1) * s.hop + s.n_fft])
        frames = windows_log_mel(window, s)  # (count, bands)
        self.buffer, self.done = self.buffer[count * s.hop :], self.done + count
        return frames


def frames_from_audio(source: BinaryIO | str | Path, settings: MelSettings) -> Iterator[np.ndarray]:
    """Log-mel frames (k, bands) of audio as it arrives, as ``features.log_mel`` computes them for
    the whole: ``source`` a binary stream of WAV (stdin, a pipe: read as it comes), or the path
    of a file ``io.read_recording`` reads (any format, resampled to the settings' rate; a path
    that is not a regular file, a named pipe, is read as a WAV stream). Channels are averaged.
    Raises ``DataError`` for audio that cannot be read."""
    if isinstance(source, (str, Path)) and _regular(source):
        yield from _frames_of_file(Path(source), settings)
    elif isinstance(source, (str, Path)):
        with open(source, "rb") as stream:
            yield from _frames_of_stream(stream, settings)
    else:
        yield from _frames_of_stream(source, settings)


def _frames_of_file(path: Path, settings: MelSettings, piece: int = 1 << 16) -> Iterator[np.ndarray]:
    try:
        audio = read_recording(path, settings.sample_rate).audio
    except (AudioReadError, OSError) as exc:
        raise DataError(f"{path}: cannot read audio ({exc})") from None
    analysis = MelFrames(settings)
    for start in range(0, len(audio), piece):
        yield from _some(analysis.add(audio[start : start + piece]))
    yield from _some(analysis.end())


def _frames_of_stream(stream: BinaryIO, settings: MelSettings) -> Iterator[np.ndarray]:
    wav = WavPipeReader(reader(stream), _name(stream), settings.sample_rate)
    analysis = MelFrames(settings)
    for audio in wav:
        yield from _some(analysis.add(audio))
    yield from _some(analysis.end())


def _some(frames: np.ndarray) -> Iterator[np.ndarray]:
    if len(frames):
        yield frames


def _regular(path: str | Path) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return True  # read_recording says why it cannot be read


def _name(source: BinaryIO) -> str:
    name = getattr(source, "name", None)
    return name if isinstance(name, str) else "input"
