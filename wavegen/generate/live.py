"""Audio as it is generated: the codes of ``engines.generate`` a block at a time, and a
vocoder's mel frames taken as they arrive.

``generate_blocks`` yields exactly the codes ``generate`` returns for the same engine, seeds and
conditioning, whatever the block size: sample n of a stream draws the uniform u(seed, n) in
every engine, the engines keep their state between calls, and a ``FrameBlocks`` cache made
before some of its mel frames had arrived is made again (``terms.FrameBlocks``). Engines with a
loop of their own on the host (``HostLoop``) or none run block after block, without an end if
asked; those that run a whole loop on a GPU (``DeviceLoop``) run it in a thread that fills one
buffer, whose blocks are handed on as they are written, so they need a length.

A live vocoder (``MelFeed``) generates a sample only once every mel frame it depends on has
arrived: sample t, in frame f = t // hop, reads frames up to f + 3 (``conditioning``'s diagram),
so frames arriving at one per ``hop`` samples are turned into audio with a delay of 4 frames.
When the frames end, the rest is generated as ``generate`` would with all of them: frames past
the end are silence, and the last sample is the end of the last frame.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch

from ..audio.mel_input import noted_frames
from ..audio.mulaw import decode
from ..errors import ConfigError
from ..model.conditioning import CONTEXT_FRAMES, Conditioning
from ..model.network import WaveNet
from .engine import DeviceLoop, Engine, HostLoop, StreamRandom, sample_codes, temperatures, uniform_draws
from .request import GenerationRequest
from .reuse import EngineCache
from .streams import check_mels, prepare_streams

BLOCK = 4096  # samples per stream in a block by default: 0.26 s at 16 kHz


class MelFeed:
    """Mel frames for a conditioning, taken from ``frames`` as generation needs them.

    ``frames`` yields arrays of one frame (bands,) or several (k, bands), the same for every
    stream (or (streams, k, bands), one per stream). ``ready(done, count)`` takes frames until
    samples ``done .. done + count - 1`` have all theirs, and says how many of those samples
    can be generated: ``count``, fewer when the frames ended, 0 at the end."""

    def __init__(self, conditioning: Conditioning, frames: Iterable[np.ndarray], hop: int, bands: int) -> None:
        self.conditioning, self.source, self.hop, self.bands = conditioning, iter(frames), hop, bands
        self.ended = False
        self.arrived = 0  # frames given to the conditioning

    def ready(self, done: int, count: int) -> int:
        # Sample t reads frames up to t // hop + 3; the past before sample 0 (read when the
        # engine starts, with count 0) up to frame 2.
        self._take((done + count - 1) // self.hop + CONTEXT_FRAMES + 1)
        if self.ended:  # the audio ends with the last frame
            return max(0, min(count, self.arrived * self.hop - done))
        return count

    def _take(self, needed: int) -> None:
        """Take frames until ``needed`` have arrived, or there are no more."""
        while not self.ended and self.arrived < needed:
            try:
                self._add(next(self.source))
            except StopIteration:
                self.ended = True

    def _add(self, given: np.ndarray) -> None:
        frames = np.asarray(given, np.float32)
        if frames.ndim == 1:
            frames = frames[None]
        batch = self.conditioning.batch
        if frames.ndim == 2:  # (k, bands): every stream's
            frames = np.broadcast_to(frames, (batch, *frames.shape))
        if frames.ndim != 3 or frames.shape[0] != batch:
            raise ConfigError(
                f"mel frames: expected (bands,), (frames, bands) or ({batch}, frames, bands), got {np.shape(given)}"
            )
        for one in frames:
            check_mels(one, self.bands, "mel frames")
        self.conditioning.extend(torch.from_numpy(np.array(frames.transpose(0, 2, 1))))  # (B, M, k), a copy
        self.arrived += frames.shape[1]


@torch.inference_mode()
def generate_blocks(
    engine: Engine,
    num_samples: int | None,
    seeds: list[int],
    temperature: float | list[float] = 1.0,
    history: torch.Tensor | None = None,
    conditioning: Conditioning | None = None,
    block: int = BLOCK,
    feed: MelFeed | None = None,
) -> Iterator[torch.Tensor]:
    """``engines.generate``'s codes as blocks (B, block) uint8 on the CPU (the last may be
    shorter, and with ``feed`` a block whose frames ended), each as soon as it is made; ``num_samples`` None: no end (the caller stops by closing the iterator). ``feed``:
    mel frames taken as they are needed. Raises ``ConfigError`` where a ``DeviceLoop`` engine is
    asked for no end or for arriving frames."""
    batch = len(seeds)
    temps = temperatures(temperature, batch)
    if isinstance(engine, DeviceLoop) and (num_samples is None or feed is not None):
        raise ConfigError(f"the '{engine.name}' engine needs a length known in advance: use the CPU (--device cpu)")
    if feed is not None:
        feed.ready(0, 0)  # the frames the past reads
    engine.reset(batch, history, conditioning)
    if isinstance(engine, DeviceLoop):
        assert num_samples is not None
        yield from _device_blocks(engine, num_samples, seeds, temps, block)
        return
    rng = None if isinstance(engine, HostLoop) else StreamRandom(seeds)
    done = 0
    while num_samples is None or done < num_samples:
        count = block if num_samples is None else min(block, num_samples - done)
        if feed is not None:
            count = feed.ready(done, count)
            if not count:
                return
        if isinstance(engine, HostLoop):
            out = torch.empty(batch, count, dtype=torch.uint8)
            engine.sample_steps(out, 0, count, seeds, temps.numpy(), index=done)
        else:
            assert rng is not None
            chunk = []
            for _ in range(count):
                codes = sample_codes(engine.logits(), temps, rng.next())
                engine.append(codes)
                chunk.append(codes)
            out = torch.stack(chunk, 1).to("cpu", torch.uint8)  # (B, count): one copy from the device
        done += count
        yield out


class _Stop(Exception):
    """Raised in the generating thread when the reader has gone."""


def _device_blocks(
    engine: DeviceLoop, num: int, seeds: list[int], temps: torch.Tensor, block: int
) -> Iterator[torch.Tensor]:
    """A ``DeviceLoop``'s codes, generated in a thread into one buffer, handed on in blocks of
    ``block`` (the last may be shorter) as its columns are written."""
    out = torch.empty(len(seeds), num, dtype=torch.uint8)
    written: queue.Queue = queue.Queue()
    stop = threading.Event()

    def progress(count: int) -> None:
        if stop.is_set():
            raise _Stop
        written.put(count)

    def run() -> None:
        try:
            engine.generate_codes(num, temps, uniform_draws(seeds), progress, out)
            written.put(None)
        except BaseException as exc:  # handed to the reader, which raises it
            written.put(exc)

    worker = threading.Thread(target=run, name="wavegen-generate", daemon=True)
    worker.start()
    taken = ready = 0
    try:
        while taken < num:
            got = written.get()
            if isinstance(got, BaseException):
                raise got
            ready = num if got is None else ready + got
            while ready - taken >= block or taken < ready == num:  # whole blocks, then the rest
                count = min(block, ready - taken)
                yield out[:, taken : taken + count].clone()
                taken += count
    finally:
        stop.set()
        worker.join()


def _decoded(codes: Iterator[torch.Tensor], release: Callable[[], None]) -> Iterator[np.ndarray]:
    """µ-law codes (B, n) as float32 audio (B, n), block by block; closing this closes ``codes``,
    then ``release`` gives the engine back."""
    try:
        for block in codes:
            yield decode(block).numpy()
    finally:
        close = getattr(codes, "close", None)
        if close is not None:
            close()
        release()


@dataclass
class LiveStream:
    """Audio as it is generated. Iterating gives float32 blocks (streams, samples) in [-1, 1],
    each as soon as it is made; ``close()`` (or leaving a ``with``) stops the generation."""

    blocks: Iterator[np.ndarray]
    sample_rate: int  # Hz
    seeds: list[int]  # stream i's seed
    labels: list[str] | None  # the label of each stream, for labelled models
    engine: str  # the engine that runs
    device: str
    precision: str  # the weights' precision in the engine
    threads: int | None  # the native engine's CPU threads (None for the others)
    samples: int | None  # per stream; None: until the caller stops (or the mel frames end)

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.blocks

    def close(self) -> None:
        close: Callable[[], None] | None = getattr(self.blocks, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> LiveStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def split_mel(mel: np.ndarray | str | Path | Iterable[np.ndarray] | None) -> tuple[Any, Iterable[np.ndarray] | None]:
    """``mel`` as a request's (a file or an array, whole) or as frames that arrive (any other
    iterable): (whole or None, frames or None)."""
    if mel is None or isinstance(mel, (str, Path, np.ndarray)):
        return mel, None
    return None, mel


def stream_audio(
    model: WaveNet,
    rate: int,
    where: str,
    request: GenerationRequest,
    block: int = BLOCK,
    mel_frames: Iterable[np.ndarray] | None = None,
    step: int | None = None,
    engines: EngineCache | None = None,
) -> LiveStream:
    """The streams ``request`` asks for, as audio blocks of ``block`` samples per stream (the
    last may be shorter): exactly what ``generate_streams`` makes, decoded. ``request.seconds``
    None: no end. ``mel_frames``: a vocoder's features as they arrive (``MelFeed``), instead of
    ``request.mel``. Engines that need a length in advance (the GPU's loops) are not chosen
    for a stream without one: ``--device auto`` then runs on the CPU. Raises as
    ``generate_streams`` does, and ``ConfigError`` for a ``block`` below 1."""
    if isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise ConfigError(f"block of {block} samples: expected 1 or more")
    if mel_frames is not None and request.mel is not None:
        raise ConfigError("give the mel features as a whole (mel) or as they arrive (mel frames), not both")
    if mel_frames is not None and not model.config.mel_channels:
        raise ConfigError("mel frames: this model was trained without mel features")
    unbounded = mel_frames is not None or (request.seconds is None and not model.config.mel_channels)
    if unbounded and request.device == "cuda":
        raise ConfigError("a stream without a length known in advance runs on the CPU (use --device cpu or auto)")
    if unbounded:
        request = request.replace(device="cpu")
    frames_arrive = mel_frames is not None
    ready = prepare_streams(model, rate, where, request, step, True, frames_arrive, engines)
    feed = None
    if mel_frames is not None:
        assert ready.conditioning is not None  # (a mel model is conditioned)
        frames = noted_frames(mel_frames, "mel frames")  # features of another scale: said once
        feed = MelFeed(ready.conditioning, frames, model.config.mel_hop, model.config.mel_channels)
    codes = generate_blocks(
        ready.engine,
        ready.samples,
        ready.seeds,
        request.temperature,
        ready.history,
        ready.conditioning,
        block,
        feed,
    )
    engine = ready.engine
    return LiveStream(
        _decoded(codes, ready.release),
        rate,
        ready.seeds,
        ready.labels,
        engine.name,
        str(ready.device),
        engine.precision,
        getattr(engine, "threads", None),
        ready.samples,
    )
