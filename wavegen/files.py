"""Atomic file writes: readers see the old file or the complete new one, never a partial one.

Each file is written to a temporary one beside it (``.NAME.XXXXXXXX.tmp``), fsynced and renamed
over it; ``all_or_none`` renames a set of them together. A temporary file is removed on any
error, Ctrl-C and SIGTERM included (``interrupts``); one a kill left (SIGKILL, a power cut) is
removed by the next write into its folder, unless a live write still holds its lock.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator, cast

from .errors import WriteError
from .interrupts import raise_swallowed, signals_held

try:
    import fcntl
except ImportError:  # (no fcntl, no locks: leftovers are then never swept, as a live one could be)
    fcntl = None  # type: ignore[assignment]

# A temporary file of ``atomic_open`` (tempfile's 8 random characters) for a file wavegen writes.
LEFTOVER = re.compile(r"\..+\.(?:wav|png|json|u8|mel|pt|toml|csv|html|safetensors|md)\.[a-z0-9_]{8}\.tmp")


@dataclass
class _Pending:
    """A complete temporary file waiting for the end of ``all_or_none`` to be renamed."""

    order: int  # when it was opened: files are renamed in that order (a manifest written last, last)
    tmp: Path
    path: Path
    existed: bool
    lock: int | None


_local = threading.local()  # .group: the pending files of the current ``all_or_none``, if any
_swept: set[str] = set()  # folders cleared of leftovers by this process
_opened = itertools.count()


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success fsync it and rename it over ``path``
    (inside ``all_or_none``: when that block ends).

    On any error (including Ctrl-C and SIGTERM) the temporary file is removed and ``path`` is
    untouched. A write that fails (a full disk, a file too large) raises ``WriteError`` naming
    ``path``: the OSError from a handle names no file, and some writers (``torch.save``) even
    replace it with an error of their own that no longer says what happened.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    existed = path.exists()
    sweep_leftovers(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise write_error(path, exc, existed) from None
    lock, handle, finishing, group, order = _lock(fd), None, False, getattr(_local, "group", None), next(_opened)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, mode) as raw:
            handle = _Recording(raw)
            yield cast(IO, handle)  # a proxy: every attribute but write is the real handle's
            finishing = True  # from here on an OSError is this file's own
            raw.flush()
            os.fsync(raw.fileno())
        raise_swallowed()  # a Ctrl-C that a library's callback swallowed: keep the old file
        if group is not None:
            group.append(_Pending(order, Path(tmp), path, existed, lock))
            lock = None  # (released when the group ends)
        else:
            os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        failed = handle.error if handle is not None and handle.error else exc if finishing else None
        if isinstance(failed, OSError) and isinstance(exc, Exception):  # Ctrl-C stays Ctrl-C
            raise write_error(path, failed, existed) from None
        raise
    finally:
        _unlock(lock)
    if group is None:
        _fsync_dir(path.parent)


@contextlib.contextmanager
def all_or_none() -> Iterator[None]:
    """The atomic writes in the block put in place together: each file is written and fsynced
    to its temporary file as usual, and renamed over its path only when the whole block has
    succeeded, all renames with stop signals held (``signals_held``) so that none lands
    between two. On any error (Ctrl-C, SIGTERM, a full disk) every temporary file goes and no
    path is replaced: a sample's WAV, spectrogram and JSON are there whole or not at all. A
    block inside another one joins it."""
    if getattr(_local, "group", None) is not None:
        yield
        return
    pending: list[_Pending] = []
    _local.group = pending
    try:
        try:
            yield
            raise_swallowed()
        finally:
            _local.group = None
        with signals_held():
            for item in sorted(pending, key=lambda item: item.order):
                try:
                    os.replace(item.tmp, item.path)
                except OSError as exc:
                    raise write_error(item.path, exc, item.existed) from None
    finally:
        for item in pending:
            item.tmp.unlink(missing_ok=True)  # (those not renamed: the block failed)
            _unlock(item.lock)
    for folder in dict.fromkeys(item.path.parent for item in pending):
        _fsync_dir(folder)


def sweep_leftovers(folder: Path) -> list[Path]:
    """Remove from ``folder`` the temporary files of writes a kill interrupted (``LEFTOVER``'s
    names, which no live write holds locked), once per folder and process; return them."""
    key = os.path.realpath(folder)
    if key in _swept or fcntl is None:
        return []
    _swept.add(key)
    removed = []
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            if LEFTOVER.fullmatch(entry.name) and entry.is_file(follow_symlinks=False) and _unlink_unlocked(entry.path):
                removed.append(Path(entry.path))
    return removed


def _unlink_unlocked(path: str) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a live write holds its temporary file locked
        os.unlink(path)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _lock(fd: int) -> int | None:
    """A second descriptor of the temporary file holding a lock on it until ``_unlock``: a
    live write's file is never taken for a leftover."""
    if fcntl is None:
        return None
    lock = os.dup(fd)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pass
    return lock


def _unlock(lock: int | None) -> None:
    if lock is not None:
        os.close(lock)


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
