"""How many threads the native engine uses, and how they share the streams (timed, rechecked)."""

from __future__ import annotations

import os

from ...errors import WavegenError


def default_threads() -> int:
    """``$WAVEGEN_THREADS`` if set, else the cores this process may run on."""
    wanted = os.environ.get("WAVEGEN_THREADS")
    if wanted:
        if not wanted.strip().isdigit() or int(wanted) < 1:
            raise WavegenError(f"WAVEGEN_THREADS={wanted}: expected a number of threads >= 1")
        return int(wanted)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def layouts(threads: int, batch: int) -> list[tuple[int, int]]:
    """The (threads, threads per group) layouts ``LayoutTuner`` times for ``batch`` streams."""
    ladder = [n for n in (2**k for k in range(threads.bit_length())) if n < threads] + [threads]
    wanted = {(n, n) for n in ladder} | {(threads, size) for size in ladder}
    # Layouts that make the same groups are one layout (C++ plan(): min(threads // size, batch) groups).
    unique = {(t, min(t // g, batch)): (t, g) for t, g in sorted(wanted)}
    return list(unique.values())


class LayoutTuner:
    """Picks how the engine's threads share the streams, from timed runs, and checks again now
    and then: threads in lockstep are fastest on idle cores but crawl when another process
    takes one of them, and which layout wins for a batch depends on the machine.

    A layout is (threads, threads per group); the codes are the same whichever runs, so
    switching between calls of one generation is invisible in the output. The layouts timed
    (``layouts``): all threads in one group, or in groups of 1, 2, 4 … threads; and fewer
    threads (1, 2, 4 …) in one group, because on a host with many cores one stream of a
    small model runs fastest on fewer threads than it could have (barriers cost more than
    the columns they share).
    """

    FIRST_CHECK_S = 2.0  # seconds on the best layout before its rivals are timed again
    LAST_CHECK_S = 30.0  # the interval doubles while the best stays the best
    PROBE_S = 0.02  # length of a timing run
    CHUNK_S = 0.1  # length of a run on the best layout: each one is a fresh measurement
    DROP = 0.7  # the best slowing down to this fraction of its last rate: time the others now

    def __init__(self, threads: int, batch: int) -> None:
        self.layouts = layouts(threads, batch)
        self.batch = batch
        self.rates: dict[tuple[int, int], float] = {}  # latest samples/s of each layout
        self.timed: set[tuple[int, int]] = set()  # layouts timed since the last check began
        self.best: tuple[int, int] | None = None
        self.last: tuple[int, int] | None = None  # the layout of the latest run
        self.on_best = 0.0  # seconds run on the best since the last check
        self.interval = self.FIRST_CHECK_S

    def next(self, remaining: int) -> tuple[tuple[int, int], int]:
        """The layout to run next and for how many steps (at most ``remaining``)."""
        untimed = [layout for layout in self.layouts if layout not in self.timed]
        if untimed:  # a short run, sized by what the layout did last time
            layout = untimed[0]
            steps = self.PROBE_S * self.rates[layout] if layout in self.rates else 64
            if layout != self.last:
                steps /= 4  # a warm-up run first (see record)
            return layout, min(remaining, max(4, int(steps / self.batch)))
        assert self.best is not None
        seconds = min(self.CHUNK_S, self.interval - self.on_best)
        return self.best, max(1, min(remaining, int(seconds * self.rates[self.best] / self.batch) + 1))

    def record(self, layout: tuple[int, int], steps: int, seconds: float) -> None:
        warm, self.last = layout == self.last, layout
        if layout == self.best:
            self.on_best += seconds
        if not warm:  # the first run after a switch pays for waking threads and cold caches
            return
        rate = self.batch * steps / max(seconds, 1e-9)
        if layout == self.best and rate < self.DROP * self.rates[layout]:  # e.g. a core was taken
            self._check_again(self.FIRST_CHECK_S)
        self.rates[layout] = rate
        self.timed.add(layout)
        if len(self.timed) < len(self.layouts):
            return
        best = max(self.layouts, key=self.rates.__getitem__)
        if best != self.best:
            self.best, self.on_best, self.interval = best, 0.0, self.FIRST_CHECK_S
        elif self.on_best >= self.interval:  # time to look at the others again
            self._check_again(min(2 * self.interval, self.LAST_CHECK_S))

    def _check_again(self, interval: float) -> None:
        self.timed = {self.best} if self.best else set()
        self.on_best, self.interval = 0.0, interval
