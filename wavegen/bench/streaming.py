"""Live-generation benchmark: is ``stream_audio`` fast enough to play its audio as it comes?

A model of the recipe's shape with random weights (``native.check.random_model``; conditioned on
the mel features its data settings store, as training makes it) is streamed in this process,
with ``--device`` and ``--precision`` as asked, one row per measurement:

- ``first-cold``: time to first audio, from the call of ``stream_audio`` (the model loaded, its
  engine not yet built) to the first block; ``first-warm``: the same again with the engine the
  first stream built, kept as a loaded ``Model`` keeps it (``generate.reuse``): what a second
  stream costs;
- ``sustained``: audio seconds / wall seconds over ``seconds`` of audio, from the call to the last
  block, and the worst block's own ratio (its samples / the time since the block before);
- ``mel-live`` (a model with mel features): frames fed by a simulated real-time source (frame k
  available k·hop/rate s after the first is asked for; the source sleeps until then), and for each
  frame the latency from its arrival to the output of the block holding its last sample. A sample
  in frame f needs frames up to f + 3 (``model.conditioning``), so part of that latency is the
  model's look-ahead (the arrival of the last frame the block needs, after the frame's own), the
  rest is compute (that last frame's arrival to the block's output). Blocks of one hop by default.

A mel model's other rows get all their frames at once (random log-mels, as ``bench startup``'s).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from typing import Iterable, Iterator

import numpy as np
import torch

from ..config import Config
from ..generate.live import stream_audio
from ..generate.native.check import random_model
from ..generate.request import GenerationRequest
from ..generate.reuse import EngineCache
from ..messages import silenced
from ..model.conditioning import CONTEXT_FRAMES
from ..model.network import WaveNet
from .startup import as_trained

KEYS = [
    *("measure", "first_audio_ms", "audio_seconds", "wall_seconds", "real_time_factor", "worst_block_rtf"),
    *("latency_median_ms", "latency_max_ms", "latency_median_hops", "latency_max_hops"),
    *("lookahead_ms", "lookahead_hops", "compute_median_ms", "compute_max_ms"),
    *("engine", "precision", "device", "threads", "chunk"),
]


def run(
    config: Config,
    seconds: float,
    precision: str = "auto",
    chunk: int | None = None,
    device: str = "cpu",
    threads: int | None = None,
    bar=None,
) -> Iterator[dict]:
    """Yield the rows above for ``config``'s model shape: ``seconds`` of audio for the sustained
    and live rows, blocks of ``chunk`` samples (None: 4096, and one hop for ``mel-live``).
    ``threads`` sets the CPU threads (``$WAVEGEN_THREADS`` and torch's) while it runs; the first
    stream alone says its "synthesising ..." line; ``bar`` (a tqdm) counts the rows."""
    config = as_trained(config)
    model, rate = random_model(config.model), config.data.sample_rate
    hop = config.model.mel_hop if config.model.mel_channels else 0
    frames = _random_frames(model, math.ceil(seconds * rate / hop)) if hop else None
    request = GenerationRequest(seconds=None if hop else seconds, device=device, precision=precision)
    said, engines = [False], EngineCache()  # the engine kept between streams, as a loaded Model keeps it

    def stream(block: int, mels: Iterable[np.ndarray] | None):
        quiet = said[0]
        said[0] = True
        with silenced(quiet):
            return stream_audio(model, rate, "bench stream", request, block, mels, engines=engines)

    if bar is not None:
        bar.reset(total=4 if hop else 3)
    with _threads(threads):
        for start in ("cold", "warm"):
            yield _counted(bar, _first_audio(start, stream, chunk or 4096, frames))
        yield _counted(bar, _sustained(stream, chunk or 4096, frames))
        if frames is not None:
            yield _counted(bar, _live_mels(stream, chunk or hop, frames, hop, rate))


def _random_frames(model: WaveNet, count: int) -> np.ndarray:
    """``count`` random log-mel frames (count, bands) float32, about as loud as speech's."""
    bands = model.config.mel_channels
    return np.random.default_rng(0).normal(-4, 2, (count, bands)).astype(np.float32)


def _first_audio(start: str, stream, chunk: int, frames: np.ndarray | None) -> dict:
    """Time from the call of ``stream_audio`` to its first block."""
    tick = time.perf_counter()
    with stream(chunk, None if frames is None else iter(frames)) as live:
        next(iter(live))
        took = time.perf_counter() - tick
    return _row(f"first-{start}", live, chunk, first_audio_ms=round(took * 1000, 1))


def _sustained(stream, chunk: int, frames: np.ndarray | None) -> dict:
    """Audio seconds / wall seconds over the whole stream, and the worst block's ratio."""
    tick = last = time.perf_counter()
    samples, worst = 0, math.inf
    with stream(chunk, None if frames is None else iter(frames)) as live:
        for block in live:
            now = time.perf_counter()
            samples += block.shape[1]
            worst = min(worst, block.shape[1] / live.sample_rate / max(now - last, 1e-9))
            last = now
    audio, wall = samples / live.sample_rate, last - tick
    return _row(
        "sustained",
        live,
        chunk,
        audio_seconds=round(audio, 3),
        wall_seconds=round(wall, 3),
        real_time_factor=round(audio / wall, 3),
        worst_block_rtf=round(worst, 3),
    )


class RealTimeSource:
    """Mel frames as a live analysis makes them: frame k is handed on no sooner than k·hop/rate
    seconds after the first was asked for (``start``, a ``time.perf_counter`` time)."""

    def __init__(self, frames: np.ndarray, hop: int, rate: int) -> None:
        self.frames, self.period = frames, hop / rate
        self.start = math.nan

    def arrival(self, frames: np.ndarray) -> np.ndarray:
        """When each of ``frames`` (indices) became available (perf_counter seconds)."""
        return self.start + np.asarray(frames) * self.period

    def __iter__(self) -> Iterator[np.ndarray]:
        self.start = time.perf_counter()
        for k, frame in enumerate(self.frames):
            wait = self.start + k * self.period - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            yield frame


def _live_mels(stream, chunk: int, frames: np.ndarray, hop: int, rate: int) -> dict:
    """Each frame's latency from its arrival to the output of the block holding its last sample,
    split into the model's look-ahead and compute (``frame_latencies``)."""
    source = RealTimeSource(frames, hop, rate)
    ends: list[int] = []  # each block's end (samples)
    times: list[float] = []  # and output time
    with stream(chunk, source) as live:
        for block in live:
            times.append(time.perf_counter())
            ends.append((ends[-1] if ends else 0) + block.shape[1])
    latency, lookahead = frame_latencies(ends, times, source, len(frames), hop)
    compute = latency - lookahead
    ms, hop_ms = 1000, 1000 * hop / rate
    return _row(
        "mel-live",
        live,
        chunk,
        audio_seconds=round(ends[-1] / rate, 3),
        latency_median_ms=round(float(np.median(latency)) * ms, 1),
        latency_max_ms=round(float(latency.max()) * ms, 1),
        latency_median_hops=round(float(np.median(latency)) * ms / hop_ms, 2),
        latency_max_hops=round(float(latency.max()) * ms / hop_ms, 2),
        lookahead_ms=round(float(np.median(lookahead)) * ms, 1),
        lookahead_hops=round(float(np.median(lookahead)) * ms / hop_ms, 2),
        compute_median_ms=round(float(np.median(compute)) * ms, 1),
        compute_max_ms=round(float(compute.max()) * ms, 1),
    )


def frame_latencies(
    ends: list[int], times: list[float], source: RealTimeSource, count: int, hop: int
) -> tuple[np.ndarray, np.ndarray]:
    """(latency, look-ahead) per frame in seconds, for the frames whose samples were all output:
    latency from frame k's arrival to the output time of the block (ending at ``ends[i]``
    samples, output at ``times[i]``) that holds its last sample; look-ahead from frame k's arrival
    to that of the last frame the block needed (its last sample's frame + 3, or the last frame)."""
    blocks = np.searchsorted(np.asarray(ends), np.arange(1, count + 1) * hop)  # the block ending past it
    whole = blocks < len(ends)
    frames, blocks = np.arange(count)[whole], blocks[whole]
    needed = np.minimum((np.asarray(ends)[blocks] - 1) // hop + CONTEXT_FRAMES, count - 1)
    arrived = source.arrival(frames)
    latency = np.asarray(times)[blocks] - arrived
    return latency, source.arrival(needed) - arrived


def _row(measure: str, live, chunk: int, **values) -> dict:
    """A row with every key (None where it does not apply) and the stream's engine."""
    row: dict = dict.fromkeys(KEYS)
    engine = {"engine": live.engine, "precision": live.precision, "device": live.device, "threads": live.threads}
    row.update(measure=measure, chunk=chunk, **engine, **values)
    return row


@contextlib.contextmanager
def _threads(threads: int | None) -> Iterator[None]:
    """``threads`` CPU threads for the native engine and torch while inside (None: as they are)."""
    if not threads:
        yield
        return
    before, torch_before = os.environ.get("WAVEGEN_THREADS"), torch.get_num_threads()
    os.environ["WAVEGEN_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(torch_before)
        if before is None:
            del os.environ["WAVEGEN_THREADS"]
        else:
            os.environ["WAVEGEN_THREADS"] = before


def _counted(bar, row: dict) -> dict:
    if bar is not None:
        bar.update(1)
    return row
