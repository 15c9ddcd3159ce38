"""Reading and writing audio files: any format in, mono float32 at a chosen rate; 16-bit WAV out."""

from __future__ import annotations

import codecs
import contextlib
import errno
import io
import os
import shutil
import stat
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf

from ..files import atomic_open

# What other files wearing an audio extension begin with, to say what they are instead of
# passing on the decoder's "format not recognised".
SIGNATURES = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"%PDF": "a PDF document",
    b"PK\x03\x04": "a ZIP archive",
}


class AudioReadError(Exception):
    """A file that cannot be used; the message says why (the caller adds the file name)."""


def display_name(path: Path | str) -> str:
    """``path`` as text that can always be printed and stored as UTF-8 JSON.

    A name in another system's encoding (bytes that are not UTF-8, which Python keeps as lone
    surrogates) would break both; its bytes appear as ``\\xe9``-style escapes instead.
    """
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def os_error_reason(error: OSError, path: Path) -> str:
    """A short reason for an OSError about ``path``, without repeating the path."""
    if error.errno == errno.ELOOP:
        return "symbolic link loop"
    if error.errno == errno.ENOENT and os.path.islink(path):
        return f"broken symbolic link (to {display_name(os.readlink(path))}, which does not exist)"
    if error.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return error.strerror or str(error)


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null for a while.

    The C decoders behind soundfile (mpg123, libvorbis) print their own notes about damaged data
    there ("Illegal Audio-MPEG-Header", "Trying to resync..."): noise around the one line that
    names the file and its problem. Not thread-safe; ``prepare`` decodes one file at a time.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable stderr: nothing to protect
        yield
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def looks_like(head: bytes) -> str | None:
    """What a file that failed to decode appears to be, from its first bytes (or None)."""
    for magic, kind in SIGNATURES.items():
        if head.startswith(magic):
            return kind
    try:  # an incremental decoder accepts a character cut off at the end of ``head``
        text = codecs.getincrementaldecoder("utf-8")().decode(head)
    except UnicodeDecodeError:
        return None
    if text and all(c.isprintable() or c.isspace() for c in text):
        return "text"
    return None


# soundfile (libsndfile) decodes WAV, FLAC, OGG/Opus, MP3, AIFF and more by itself; librosa's
# fallback, audioread, decodes the rest (M4A/AAC, WMA...) only through a system decoder such as
# ffmpeg, which pip does not install.
FORMAT_HINT = "convert it to WAV or FLAC"
NO_FFMPEG = "or install ffmpeg (librosa decodes M4A, AAC, WMA and the like through it)"


def _decode_failure(error: Exception, head: bytes) -> str:
    kind = looks_like(head)
    if kind:
        return f"not audio (looks like {kind})"
    why = str(getattr(error, "error_string", None) or error).removeprefix("Error : ").rstrip(".")
    if "does not exist" in why:  # libsndfile's MP3 reader says this of any data it cannot parse
        why = "no audio stream found"
    if "format not recognised" in why.lower():  # a container libsndfile does not read at all
        return f"cannot decode ({why}): {FORMAT_HINT}" + ("" if shutil.which("ffmpeg") else f", {NO_FFMPEG}")
    return f"cannot decode ({why})"


def _decode(path: Path, head: bytes) -> tuple[np.ndarray, int]:
    """Decode to float32 (frames, channels); soundfile first, librosa (audioread) for the rest.

    Any exception from a decoder means the same thing (it could not make audio of these bytes),
    so all become an ``AudioReadError``; decoder chatter on stderr is silenced.
    """
    try:
        with quiet_stderr():
            # bytes, not str: soundfile encodes a str name strictly as UTF-8, which fails for
            # names in another encoding
            data, rate = sf.read(os.fsencode(path), dtype="float32", always_2d=True)
        return data, int(rate)
    except Exception as first_error:
        try:
            import librosa  # slow to import: only when soundfile cannot decode the file

            with warnings.catch_warnings(), quiet_stderr():
                warnings.simplefilter("ignore")
                mono, rate = librosa.load(path, sr=None, mono=True)
            return mono[:, None].astype(np.float32), int(rate)
        except Exception:
            raise AudioReadError(_decode_failure(first_error, head)) from None


def read_head(path: Path) -> bytes:
    """The first bytes of ``path``, or an ``AudioReadError`` saying why it cannot be read."""
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            raise AudioReadError("is a folder, not a file")
        if not stat.S_ISREG(mode):  # a pipe would block the read forever
            raise AudioReadError("not a regular file")
        with open(path, "rb") as handle:
            return handle.read(512)
    except OSError as error:
        raise AudioReadError(os_error_reason(error, path)) from None


@dataclass
class Recording:
    """A file as ``prepare`` uses it: mono float32 at the asked rate, and what its channels were
    before they became one (so that a reason for skipping it can name the true cause)."""

    audio: np.ndarray  # mono float32 at the asked rate, in [-1, 1] (scaled down when beyond, see ``over``)
    channels: int  # in the file
    channel_peaks: list[float]  # each channel's peak (absolute), as decoded
    picked: int | None = None  # the channel kept (data.channel); None: every channel averaged
    # The mono mix's RMS against the average channels would have without cancelling (each
    # sample's mean magnitude), in dB (<= 0): 0 for one channel or channels in phase, -3 or so for
    # unrelated ones, very negative for channels in opposite phase.
    mix_db: float = 0.0
    # A file beyond full scale (a float WAV with peaks above 1.0): its peak and the share of its
    # samples beyond 1.0, before it was scaled down to peak at full scale; (0, 0) for the rest.
    over: tuple[float, float] = (0.0, 0.0)


def read_recording(path: Path, sample_rate: int, channel: str = "mix") -> Recording:
    """Read ``path`` at ``sample_rate``: every channel averaged (``channel="mix"``) or one kept
    (its index as text, "0" for the first; a mono file is used as it is). Resampled if needed."""
    head = read_head(Path(path))
    if not head:
        raise AudioReadError("empty file (0 bytes)")
    data, rate = _decode(Path(path), head)
    if data.size == 0:
        raise AudioReadError("no audio frames")
    if not np.isfinite(data).all():
        raise AudioReadError("contains NaN or infinite samples")
    channels = data.shape[1]
    peaks = [float(p) for p in np.abs(data).max(axis=0)]
    picked, mix_db = None, 0.0
    if channel != "mix" and channels > 1:
        picked = int(channel)
        if picked >= channels:
            raise AudioReadError(
                f"has {_plural(channels, 'channel')} (0-{channels - 1}); data.channel = {picked} "
                "asks for one it does not have: choose another --channel, or mix"
            )
        mono = np.ascontiguousarray(data[:, picked])
    else:
        mono = data.mean(axis=1, dtype=np.float32)
        if channels > 1:
            mix_db = _mix_db(mono, data)
    peak, over = float(np.abs(mono).max()), (0.0, 0.0)
    if peak > 1.0:  # beyond full scale: scaled down, not clipped (clipping would flatten every peak)
        over = (peak, float(np.mean(np.abs(mono) > 1.0)))
        mono = mono / np.float32(peak)
    if rate != sample_rate:
        import librosa

        mono = librosa.resample(mono, orig_sr=rate, target_sr=sample_rate, res_type="soxr_hq")
    # (resampling can overshoot full scale by a little: those few samples are clipped)
    return Recording(np.clip(mono, -1.0, 1.0).astype(np.float32), channels, peaks, picked, mix_db, over)


# A mix this much quieter than its channels (dB) is named: unrelated channels lose about 3 dB,
# channels in opposite phase everything.
CANCEL_NOTE_DB = -12.0


def cancel_note(recording: Recording) -> str | None:
    """Words for a mono mix that its channels cancelled (None when they did not)."""
    if recording.mix_db >= CANCEL_NOTE_DB:
        return None
    return (
        f"its {recording.channels} channels {'cancel' if recording.mix_db < -60 else 'partly cancel'} when mixed "
        f"to mono (the mix is {-recording.mix_db:.0f} dB quieter than they are)"
    )


def over_note(recording: Recording) -> str | None:
    """Words for a recording beyond full scale, scaled down (None for one within it)."""
    peak, share = recording.over
    if not peak:
        return None
    return (
        f"peaks at {peak:.3g}, beyond full scale (+{20 * np.log10(peak):.1f} dBFS; {100 * share:.2g} % of its "
        f"samples beyond 1.0); scaled down by {20 * np.log10(peak):.1f} dB to peak at full scale instead of clipping them"
    )


def _mix_db(mono: np.ndarray, data: np.ndarray) -> float:
    """How much quieter the mix is than its channels' magnitudes averaged (dB, <= 0)."""
    unmixed = float(np.sqrt(np.mean(np.square(np.abs(data).mean(axis=1, dtype=np.float64)))))
    mixed = float(np.sqrt(np.mean(np.square(mono, dtype=np.float64))))
    if unmixed == 0.0:
        return 0.0
    return 20 * np.log10(max(mixed / unmixed, 1e-12))


def duration(seconds: float) -> str:
    """A length of audio in the unit that fits: ``0.25 s``, ``12.3 s``, ``4.5 min``, ``2.1 h``
    (never ``0.0 min`` for a few seconds of data)."""
    if seconds < 1:
        return f"{seconds:.2g} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def load_audio(path: Path, sample_rate: int, channel: str = "mix") -> np.ndarray:
    """Read ``path`` as mono float32 at ``sample_rate`` (channels averaged, or the one
    ``channel`` names; resampled if needed)."""
    return read_recording(path, sample_rate, channel).audio


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write mono 16-bit PCM atomically: a crash never leaves a half-written file at ``path``.

    The WAV is built in memory, then written in one go: soundfile swallows an error its writes
    raise (printing a traceback from its callback), so a full disk must meet a plain write.
    """
    encoded = io.BytesIO()
    sf.write(encoded, np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    with atomic_open(path, "wb") as handle:
        handle.write(encoded.getbuffer())


def pcm16(audio: np.ndarray) -> bytes:
    """Float audio (channels, samples) as interleaved 16-bit little-endian PCM, converted as
    ``write_wav`` converts: clipped to [-1, 1], then libsndfile's float-to-PCM_16 (which scales
    by 32768 and saturates: a plain ``round(x * 32767)`` differs in the last bit)."""
    encoded = io.BytesIO()
    frames = np.clip(audio, -1.0, 1.0).T  # (samples, channels): interleaved
    # (RAW has no header: the rate is not written, any valid one will do)
    sf.write(encoded, frames, 8000, subtype="PCM_16", format="RAW", endian="LITTLE")
    return encoded.getvalue()
