"""Stopping on a signal: SIGINT (Ctrl-C) and SIGTERM (what ``kill``, ``timeout``, systemd and
``docker stop`` send) end every command the same way.

Python's own SIGTERM ends the process at once, without running a single ``finally``, so a
half-written temporary file would stay. Under ``signals_handled`` (every command's, through
``friendly_errors``) SIGTERM raises ``Terminated``, a ``KeyboardInterrupt``: every cleanup
written for Ctrl-C runs for it too, and the command exits with 128 + the signal's number (130
for SIGINT, 143 for SIGTERM) and one line, which adds what the command said it keeps
(``note_kept``).

An exception a signal raises can land inside a ``__del__``, a weakref or an atexit callback
(matplotlib's figures have them), where Python prints "Exception ignored in ..." and carries
on. ``signals_handled`` takes those back: the interrupt is remembered, and ``raise_swallowed``
raises it again where it is asked (before a file is put in place, and when the command
returns). ``signals_held`` keeps signals out of a block altogether (a set of files put in place
together): one that comes meanwhile is raised when the block ends."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C's ``KeyboardInterrupt`` would be."""


@dataclass
class _State:
    received: int | None = None  # the last stop signal: the exit status and the word said
    swallowed: bool = False  # its exception was lost inside a callback; ``raise_swallowed`` raises it
    holding: int = 0  # depth of ``signals_held`` blocks
    pending: int | None = None  # a signal that came while held
    kept: str = ""  # what stays on disk if the command stops now


_state = _State()


def interruption(signum: int) -> KeyboardInterrupt:
    """The exception a stop signal raises: ``Terminated`` for SIGTERM, else ``KeyboardInterrupt``."""
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def record_signal(signum: int) -> None:
    """Remember a stop signal that a handler of its own answered (``train`` stops between steps)."""
    _state.received = signum


def on_signal(signum: int, frame: object = None) -> None:
    """The handler of SIGINT and SIGTERM under ``signals_handled`` (``train`` calls it for a second
    signal): raise the interruption, or inside ``signals_held``, keep it for the block's end."""
    record_signal(signum)
    if _state.holding:
        _state.pending = signum
        return
    raise interruption(signum)


def _unraisable(previous):
    def hook(unraisable) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            _state.swallowed = True  # raised again by ``raise_swallowed``, not printed
            return
        previous(unraisable)

    return hook


@contextlib.contextmanager
def signals_handled() -> Iterator[None]:
    """SIGINT and SIGTERM raise ``KeyboardInterrupt`` / ``Terminated`` inside the block (in the
    main thread; elsewhere Python runs no signal handlers, and nothing changes)."""
    global _state
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _state = _State()
    previous = {sig: signal.signal(sig, on_signal) for sig in SIGNALS}
    hook, sys.unraisablehook = sys.unraisablehook, _unraisable(sys.unraisablehook)
    try:
        yield
    finally:
        sys.unraisablehook = hook
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def raise_swallowed() -> None:
    """Raise the interrupt that a callback swallowed since the last check; nothing otherwise."""
    if _state.swallowed:
        _state.swallowed = False
        raise interruption(_state.received or signal.SIGINT)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """No stop signal raises inside the block; one that came meanwhile is raised at its end."""
    _state.holding += 1
    try:
        yield
    finally:
        _state.holding -= 1
        if not _state.holding and _state.pending is not None:
            signum, _state.pending = _state.pending, None
            raise interruption(signum)


def note_kept(kept: str) -> None:
    """Say what stays on disk if the command stops from here on (``samples: kept 2 of 4 samples``);
    the stop line adds it."""
    _state.kept = kept


def stop_line() -> str:
    """The one line a stopped command ends with: ``interrupted`` or ``terminated``, with its note."""
    word = "terminated" if _state.received == signal.SIGTERM else "interrupted"
    return f"{word}; {_state.kept}" if _state.kept else word


def exit_status() -> int:
    """128 + the stop signal's number: 130 for Ctrl-C (and when no signal was seen), 143 for SIGTERM."""
    return 128 + (_state.received or signal.SIGINT)
