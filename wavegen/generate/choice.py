"""Which engine synthesises, and where: the fastest for the device and the number of streams,
found by a short trial when the CPU's native engine and a GPU's persistent engine could both run."""

from __future__ import annotations

import copy
import time
from typing import Callable

import torch

from ..audio.features import SILENCE
from ..devices import resolve_device
from ..model.conditioning import Conditioning
from ..model.network import WaveNet
from .engine import Engine
from .engines import checked_precision, generate, make_engine, native_available

# Up to this many streams the native engine on the CPU outruns the cuda-graph engine on a GPU
# (measured on an H200: the graph engine is launch-bound at ~2,000-2,800 samples/s per stream up
# to 64 streams, the native engine ~4× that for one stream on one busy CPU core); beyond, a GPU's
# batching wins (1.5 million samples/s for 1,024 streams).
NATIVE_OVER_GPU_STREAMS = 16
# Up to this many streams a GPU runs the persistent engine (one kernel launch for many samples
# of every layer) rather than the cuda-graph engine, whose batched steps win for many streams.
PERSISTENT_STREAMS = 8
TRIAL_SAMPLES = 2048  # per stream, timed for each candidate after a short warm-up


def pick_engine(
    engine: str, device: str, model: WaveNet, streams: int, log: Callable[[str], None], precision: str = "fp32"
) -> tuple[Engine, torch.device]:
    """The engine to synthesise with and its device. ``auto`` means the fastest here:

    - on a CPU, the native engine when it builds, else torch;
    - with a GPU and up to ``PERSISTENT_STREAMS`` streams, the persistent engine on the GPU, or
      with ``--device auto`` whichever of it and the CPU's native engine a short trial finds faster
      (one line through ``log`` gives both rates);
    - with a GPU and more streams, the native engine on the CPU up to ``NATIVE_OVER_GPU_STREAMS``
      streams with ``--device auto``, else the cuda-graph engine.

    A lower ``precision`` runs on the CPU whenever the device is ``auto`` (only the native engine
    has it); see ``make_engine`` for what is refused."""
    lower = checked_precision(precision) not in ("fp32", "auto")
    if lower and device == "auto":
        return make_engine(engine, model, torch.device("cpu"), log=log, precision=precision), torch.device("cpu")
    dev = resolve_device(device)
    if engine != "auto" or lower or dev.type == "cpu" or streams > NATIVE_OVER_GPU_STREAMS:
        return make_engine(engine, model, dev, log=log, precision=precision), dev
    gpu = _persistent(model, dev, streams, log) if streams <= PERSISTENT_STREAMS else None
    if device == "auto" and native_available(log):
        cpu = torch.device("cpu")
        native = make_engine("auto", model, cpu, log=log, precision=precision)
        if gpu is None:
            return native, cpu
        return _faster([(gpu, dev), (native, cpu)], model, streams, log)
    if gpu is not None:
        return gpu, dev
    return make_engine(engine, model, dev, log=log, precision=precision), dev


def _persistent(model: WaveNet, device: torch.device, streams: int, log: Callable[[str], None]) -> Engine | None:
    """The persistent engine on a copy of the model (the CPU's engine keeps the model), compiled
    and run for a few samples; or None after saying why it cannot run here."""
    from .persistent import PersistentEngine

    try:
        engine = PersistentEngine(copy.deepcopy(model), device)
        generate(engine, 16, list(range(streams)), conditioning=_silent(engine.model, streams))
        return engine
    except Exception as exc:  # a first compile or launch that fails here: the other engines still run
        lines = str(exc).strip().splitlines()  # a compiler's message: its last line says what failed
        log(f"persistent engine unavailable: {lines[-1] if lines else type(exc).__name__}")
        return None


def _faster(
    candidates: list[tuple[Engine, torch.device]], model: WaveNet, streams: int, log: Callable[[str], None]
) -> tuple[Engine, torch.device]:
    """The candidate that generates fastest in a short trial, saying the rates in one line."""
    rates = [trial_rate(engine, device, model, streams) for engine, device in candidates]
    best = max(range(len(candidates)), key=lambda i: rates[i])
    said = ", ".join(f"{e.name} on {d.type} {r:,.0f} samples/s" for (e, d), r in zip(candidates, rates))
    log(f"engine trial, {streams} stream{'s' * (streams > 1)}: {said}; using {candidates[best][0].name}")
    return candidates[best]


def trial_rate(engine: Engine, device: torch.device, model: WaveNet, streams: int) -> float:
    """Samples/s summed over ``streams`` streams of ``TRIAL_SAMPLES`` each, after a warm-up
    (a first build or compile, thread layouts) of 64; conditioned on silence where the model is."""
    seeds, cond = list(range(streams)), _silent(engine.model, streams)
    generate(engine, 64, seeds, conditioning=cond)
    tick = time.perf_counter()
    generate(engine, TRIAL_SAMPLES, seeds, conditioning=cond)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return streams * TRIAL_SAMPLES / (time.perf_counter() - tick)


def _silent(model: WaveNet, streams: int) -> Conditioning | None:
    """Conditioning on the first label and on silent mel frames, where ``model`` is conditioned."""
    c = model.config
    labels = torch.zeros(streams, dtype=torch.long) if c.labels else None
    mels = torch.full((streams, c.mel_channels, 1), SILENCE) if c.mel_channels else None
    return None if labels is None and mels is None else Conditioning(model, labels, mels)
