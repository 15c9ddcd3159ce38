"""Stopping a run between steps: a signal asks, the loop answers at the end of the step."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

from ..interrupts import on_signal, record_signal


@contextlib.contextmanager
def stop_requests() -> Iterator[threading.Event]:
    """Ctrl-C (SIGINT) or SIGTERM only asks to stop: the step under way finishes, then the
    processes (torchrun passes on the signal it gets) agree on that step, rank 0 saves there,
    and all stop together. An interrupt raised inside a step could land anywhere, between the
    windows drawn and the step counted or halfway through Adam's update, and save a state that
    no uninterrupted run ever had. A second signal stops at once (``KeyboardInterrupt``, or
    ``Terminated`` for SIGTERM; saving in one process when it lands between steps)."""
    stop = threading.Event()

    def ask_to_stop(signum, frame):
        record_signal(signum)  # the exit status: 130 for SIGINT, 143 for SIGTERM
        if stop.is_set():
            on_signal(signum)  # raises (once a set of files being put in place is: a sample's)
        stop.set()

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = (
        {sig: signal.signal(sig, ask_to_stop) for sig in (signal.SIGTERM, signal.SIGINT)} if in_main_thread else {}
    )
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
