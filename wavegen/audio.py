"""Reading and writing audio files: any format in, mono float32 at a chosen rate; 16-bit WAV out."""
from __future__ import annotations

import codecs
import contextlib
import errno
import io
import os
import stat
import sys
import warnings
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import soundfile as sf

from .files import atomic_open

AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".aifc"}

# What other files wearing an audio extension begin with, to say what they are instead of
# passing on the decoder's "format not recognised".
SIGNATURES = {
    b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image",
    b"%PDF": "a PDF document", b"PK\x03\x04": "a ZIP archive",
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


def find_audio_files(folder: Path, skip: Callable[[Path, str], None] | None = None) -> list[Path]:
    """Audio files under ``folder`` (recursively, by extension), sorted for reproducibility.

    Links to folders outside ``folder`` are followed, each real folder once, so a loop of links
    cannot trap the search. A link to a folder inside ``folder`` (a loop, or a second way to
    files that are found anyway) is not followed. Such links, and folders that cannot be listed,
    go to ``skip`` with the reason, so nothing is left out silently.
    """
    skip = skip or (lambda path, reason: None)
    inside = os.path.realpath(folder)
    searched = {inside}
    found = []

    def cannot_list(error: OSError) -> None:
        skip(Path(error.filename), f"cannot list this folder ({os_error_reason(error, Path(error.filename))})")

    for root, dirs, files in os.walk(folder, followlinks=True, onerror=cannot_list):
        for name in sorted(dirs):
            path = Path(root) / name
            target = os.path.realpath(path)
            reason = None
            if os.path.islink(path) and (target == inside or target.startswith(inside + os.sep)):
                if os.path.realpath(root) == target or os.path.realpath(root).startswith(target + os.sep):
                    reason = "link to a folder that contains it (a loop): not followed"
                else:
                    where = display_name(os.path.relpath(target, inside))
                    reason = f"link to {where}, inside the dataset: not followed (its files are read there)"
            elif target in searched:
                reason = "searched already (through another link): not followed"
            if reason:
                dirs.remove(name)
                skip(path, reason)
            else:
                searched.add(target)
        for name in files:
            if Path(name).suffix.lower() in AUDIO_EXTENSIONS:
                found.append(Path(root) / name)
    return sorted(found)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
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


def _looks_like(head: bytes) -> str | None:
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


def _decode_failure(error: Exception, head: bytes) -> str:
    kind = _looks_like(head)
    if kind:
        return f"not audio (looks like {kind})"
    why = str(getattr(error, "error_string", None) or error).removeprefix("Error : ").rstrip(".")
    if "does not exist" in why:  # libsndfile's MP3 reader says this of any data it cannot parse
        why = "no audio stream found"
    return f"cannot decode ({why})"


def _decode(path: Path, head: bytes) -> tuple[np.ndarray, int]:
    """Decode to float32 (frames, channels); soundfile first, librosa (audioread) for the rest.

    Any exception from a decoder means the same thing (it could not make audio of these bytes),
    so all become an ``AudioReadError``; decoder chatter on stderr is silenced.
    """
    try:
        with _quiet_stderr():
            # bytes, not str: soundfile encodes a str name strictly as UTF-8, which fails for
            # names in another encoding
            data, rate = sf.read(os.fsencode(path), dtype="float32", always_2d=True)
        return data, int(rate)
    except Exception as first_error:
        try:
            import librosa  # slow to import: only when soundfile cannot decode the file

            with warnings.catch_warnings(), _quiet_stderr():
                warnings.simplefilter("ignore")
                mono, rate = librosa.load(path, sr=None, mono=True)
            return mono[:, None].astype(np.float32), int(rate)
        except Exception:
            raise AudioReadError(_decode_failure(first_error, head)) from None


def _read_head(path: Path) -> bytes:
    """The first bytes of ``path``, or an ``AudioReadError`` saying why it cannot be read."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a pipe would block the read forever
            raise AudioReadError("not a regular file")
        with open(path, "rb") as handle:
            return handle.read(512)
    except OSError as error:
        raise AudioReadError(os_error_reason(error, path)) from None


def load_audio(path: Path, sample_rate: int) -> np.ndarray:
    """Read ``path`` as mono float32 at ``sample_rate`` (channels averaged, resampled if needed)."""
    head = _read_head(Path(path))
    if not head:
        raise AudioReadError("empty file (0 bytes)")
    data, rate = _decode(Path(path), head)
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
