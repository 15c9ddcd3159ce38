"""Atomic file writes: readers see the old file or the complete new one, never a partial one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator, cast

from .errors import WriteError


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success fsync it and rename it over ``path``.

    On any error (including Ctrl-C) the temporary file is removed and ``path`` is untouched. A
    write that fails (a full disk, a file too large) raises ``WriteError`` naming ``path``: the
    OSError from a handle names no file, and some writers (``torch.save``) even replace it with
    an error of their own that no longer says what happened.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    existed = path.exists()
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise write_error(path, exc, existed) from None
    handle, finishing = None, False
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, mode) as raw:
            handle = _Recording(raw)
            yield cast(IO, handle)  # a proxy: every attribute but write is the real handle's
            finishing = True  # from here on an OSError is this file's own
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        failed = handle.error if handle is not None and handle.error else exc if finishing else None
        if isinstance(failed, OSError) and isinstance(exc, Exception):  # Ctrl-C stays Ctrl-C
            raise write_error(path, failed, existed) from None
        raise
    _fsync_dir(path.parent)


class _Recording:
    """A file handle that remembers the first OSError its writes raised (everything else is
    the handle's own)."""

    def __init__(self, handle: IO) -> None:
        self._handle, self.error = handle, None

    def write(self, data):
        try:
            return self._handle.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def __getattr__(self, name: str):
        return getattr(self._handle, name)


def write_error(path: Path, exc: OSError, existed: bool) -> WriteError:
    """The one-line error for a file that could not be written."""
    outcome = "the previous file is intact" if existed else "nothing was written"
    return WriteError(path, reason(exc), outcome)


def reason(exc: OSError) -> str:
    """An OSError in words, without its errno and file name: ``no space left on device``."""
    text = exc.strerror or str(exc) or type(exc).__name__
    return text[:1].lower() + text[1:]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every filesystem allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def wrong_kind(path: Path, want: str) -> str | None:
    """Why ``path`` cannot be read as a ``want`` ("folder" or "file"), in the words every
    command uses: ``no such folder``, ``is a file, not a folder``, ``is a folder, not a file``;
    None when it can. (Each caller adds the path and its own error class.)"""
    path = Path(path)
    if not path.exists():
        return f"no such {want}"
    if want == "folder" and not path.is_dir():
        return "is a file, not a folder"
    if want == "file" and path.is_dir():
        return "is a folder, not a file"
    return None
