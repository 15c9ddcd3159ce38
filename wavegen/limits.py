"""Limits on what one command may be asked to generate, checked before any work is done.

Generation is sample by sample, so length costs time: an hour of audio at 16 kHz is 57.6 million
steps of the network, tens of minutes for one stream on a CPU core. Streams and total samples
cost memory: every stream keeps its own network state (about a receptive field of activations
per layer), and the codes of all streams are held until they are written. Beyond these limits a
request is more likely a typo than a plan; several calls (other seeds) do the same work.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Iterator

from .errors import OutOfMemory, OutOfRange

MAX_SECONDS = 3600.0  # one stream: an hour
MAX_STREAMS = 4096  # generated together (a GPU's batching stops paying well before this)
MAX_SAMPLES = 2**28  # all streams of one call: 256 MiB of codes, 4.7 h of audio at 16 kHz
MAX_SEED = 2**64 - 1  # seeds are unsigned 64-bit numbers (torch's and the sampling engines')


def check_seed(seed: object, streams: int = 1, option: str = "--seed") -> int:
    """A seed: an integer with every stream's seed (``seed + i`` for stream i) in 0..2**64 - 1.
    Beyond that range two seeds would give the same audio under different names."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise OutOfRange(f"{option} must be a whole number, got {type(seed).__name__} {seed!r}")
    if not 0 <= seed <= MAX_SEED - max(streams - 1, 0):
        top = "2**64 - 1" if streams <= 1 else f"2**64 - {streams} for {streams} streams (stream i uses seed + i)"
        raise OutOfRange(f"{option} must be in 0..{top}, got {seed}")
    return seed


def available_memory() -> int | None:
    """The system's available memory in bytes (``MemAvailable``), or None where it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_seconds(
    seconds: float,
    option: str = "--seconds",
    maximum: float = MAX_SECONDS,
    beyond: str = "an hour per stream at most: generation runs sample by sample",
) -> None:
    """A length in seconds: positive, finite, at most ``maximum`` (``beyond`` says why and what to
    do). Every check here raises ``OutOfRange``, a ``ConfigError``."""
    if not 0 < seconds <= maximum:  # NaN fails too
        why = f" ({beyond})" if seconds > maximum and beyond else ""
        raise OutOfRange(f"{option} must be in (0, {maximum:g}], got {seconds:g}{why}")


def check_eval_lengths(seconds: float, max_seconds: float | None) -> None:
    """``eval``'s lengths: seconds resynthesised per file, and validation audio scored at most."""
    check_seconds(seconds, beyond="seconds resynthesised per validation file, sample by sample")
    if max_seconds is not None and not max_seconds > 0:  # NaN too; inf means all of it
        raise OutOfRange(f"--max-seconds must be > 0, got {max_seconds:g}")


def check_temperature(temperature: float) -> None:
    """The softmax temperature: positive and finite."""
    if not (temperature > 0 and math.isfinite(temperature)):
        raise OutOfRange(f"--temperature must be > 0 (and finite), got {temperature:g}")


def check_streams(streams: int, what: str = "--n", instead: str = "run several calls with different --seed") -> None:
    """How many streams are generated together: at least one, at most ``MAX_STREAMS``."""
    if streams < 1:
        raise OutOfRange(f"{what} must be at least 1, got {streams}")
    if streams > MAX_STREAMS:
        raise OutOfRange(
            f"{what} {streams}: at most {MAX_STREAMS} streams are generated at once (each holds "
            f"its own network state in memory); {instead}"
        )


def check_samples(streams: int, samples: int, rate: int, what: str = "--n × --seconds") -> None:
    """All streams of one call together: at most ``MAX_SAMPLES`` samples."""
    total = streams * samples
    if total > MAX_SAMPLES:
        raise OutOfRange(
            f"{what}: {streams} × {samples / rate:g} s is {total:,} samples at {rate} Hz; one call generates at "
            f"most {MAX_SAMPLES:,} ({MAX_SAMPLES / rate / 3600:.1f} h of audio, {MAX_SAMPLES >> 20} MiB of codes "
            "in memory): generate fewer or shorter streams, or run several calls"
        )


@contextlib.contextmanager
def generation_memory(what: str) -> Iterator[None]:
    """Turn running out of memory while generating into one line that says what to lower."""
    import torch

    try:
        yield
    except (MemoryError, torch.OutOfMemoryError) as exc:
        where = "GPU memory" if isinstance(exc, torch.OutOfMemoryError) else "memory"
        raise OutOfMemory(f"ran out of {where} generating {what}; {LESS}") from None
    except RuntimeError as exc:  # a failed CPU allocation
        if "can't allocate memory" not in str(exc) and "out of memory" not in str(exc):
            raise
        raise OutOfMemory(f"ran out of memory generating {what}; {LESS}") from None


LESS = "generate fewer streams (--n, or fewer inputs) or shorter ones, or use a device with more memory"
