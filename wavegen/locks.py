"""One process at a time in a folder wavegen writes: a run while ``train`` runs, an output
folder while ``prepare`` writes it.

The lock is an advisory ``flock`` on a hidden file in the folder (``LOCK_NAME``) that holds the
holder's process id and host name, so that a second process can say who holds it. The operating
system releases a ``flock`` when its process ends, however it ends: a lock left by a killed
process never blocks. The file is removed on release (a folder made only for it does not stay).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import socket
from pathlib import Path
from typing import Callable, Iterator

from .errors import ConfigError
from .outputs import no_empty_folders_on_failure

try:
    import fcntl
except ImportError:  # (Windows: no flock; runs are not locked there)
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".wavegen.lock"


class FolderBusy(ConfigError):
    """Another process holds the folder's lock."""


@contextlib.contextmanager
def folder_lock(folder: Path, what: str) -> Iterator[None]:
    """Hold ``folder``'s lock (creating the folder) while the block runs. Raises ``FolderBusy``
    naming the process that holds it: ``what`` says what it does there ("trains", "prepares data")."""
    folder = Path(folder)
    if fcntl is None:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = _acquire(path, folder, what)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        yield
    finally:
        with contextlib.suppress(OSError):  # unlinked while held: the next holder makes a new file
            os.unlink(path)
        os.close(fd)


def _acquire(path: Path, folder: Path, what: str) -> int:
    """An open descriptor of ``path`` holding its lock. A file unlinked by a holder that was
    releasing it while this one waited is not the lock any more: open the new one."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _holder(fd)
            os.close(fd)
            raise _busy(folder, what, holder) from None
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        if current is not None and current.st_ino == os.fstat(fd).st_ino:
            return fd
        os.close(fd)


def check_free(folder: Path, what: str) -> None:
    """Raise ``FolderBusy`` now when another process holds ``folder``'s lock, before any other
    check or message (the lock itself is taken where the writing starts). Under torchrun only
    rank 0 asks: the others' rank 0 may hold it already."""
    if fcntl is None or os.environ.get("RANK", "0") != "0":
        return
    try:
        fd = os.open(Path(folder) / LOCK_NAME, os.O_RDWR)
    except OSError:  # no lock file: nobody holds it
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
    except OSError:
        raise _busy(Path(folder), what, _holder(fd)) from None
    finally:
        os.close(fd)


def _busy(folder: Path, what: str, holder: str) -> FolderBusy:
    return FolderBusy(
        f"{folder}: another wavegen process {what} here ({holder}); wait for it to finish, or stop it, then run this again"
    )


def _holder(fd: int) -> str:
    """'process 1234 on host x', from the lock file's content."""
    try:
        pid, _, host = os.pread(fd, 256, 0).decode(errors="replace").strip().partition(" ")
    except OSError:
        pid, host = "", ""
    if not pid.isdigit():
        return "a process that has just started"
    return f"process {pid}" + (f" on host {host}" if host and host != socket.gethostname() else "")


def holds_run(param: str) -> Callable:
    """Decorator for what trains a run: the function's folder argument ``param`` is locked
    while it runs (by the process that writes it: rank 0 under torchrun, whose ``RANK`` says
    which process this is), and a run that fails leaves no empty folder."""

    def wrap(fn: Callable) -> Callable:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            run = Path(signature.bind(*args, **kwargs).arguments[param])
            writes = os.environ.get("RANK", "0") == "0"
            with no_empty_folders_on_failure(run), folder_lock(run, "trains") if writes else contextlib.nullcontext():
                return fn(*args, **kwargs)

        return wrapper

    return wrap
