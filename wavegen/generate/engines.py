"""Autoregressive generation: three engines behind one interface, one sampling definition.

Every engine exposes the same three calls, and ``generate`` drives any of them:

    engine.reset(batch, history, conditioning)   start from past codes (B, P), or from silence
    engine.logits()         logits (B, classes) for the next sample, from the state
    engine.append(codes)    advance the state by the sampled codes (B,)

``ReferenceEngine`` runs the whole network over the last receptive field for every sample (what
"no cache" costs). ``TorchEngine`` keeps, for every residual block, a ring buffer of that block's
past inputs — exactly the (k-1)·d values its dilated convolution will read again — so one sample
costs one matrix product per layer instead of a full forward pass. The native engine
(``wavegen.native``) does the same in C++ and also offers ``sample_steps``, a loop that samples
thousands of steps per call; ``generate`` uses it when an engine has it. With the same seeds
all of them produce identical codes; the tests hold them to that.

A conditioned model (``conditioning.py``) adds a term per layer and time to the conv output
before the gate. Times count from the first generated sample (0); the past — silence, then the
history, whose last code is at time -1 — sits at negative times. The reference engine asks
``Conditioning.terms`` for every window it runs. The cached engines take the conditioning apart
(``engine_state.TermParts``): a fixed term per stream (labels) and frame-rate terms (mel features) that they
upsample themselves, three multiply-adds per channel and step from rows they fetch a block of
frames at a time (``FrameBlocks``) — the per-sample terms would cost more memory traffic than
the step itself.

Sampling is inverse-CDF on a float64 softmax (``sample_codes``) with one uniform per stream and
sample from a counter-based generator (``stream_uniforms``): the uniform is a function of the
stream's seed and the sample's index alone, so every stream is reproducible on its own.

A lower ``precision`` (``quantized``: weights as bf16, or int8 with integer dot products) runs
in the native engine on the CPU only: ``make_engine`` refuses it elsewhere, in one line.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from ..errors import ConfigError
from ..model.network import WaveNet
from .engine import Engine, StreamRandom, sample_codes, stream_uniforms
from .quantized import check_precision
from .reference import ReferenceEngine
from .torch_engine import TorchEngine

if TYPE_CHECKING:
    from ..model.conditioning import Conditioning


def _native_engine(
    model: WaveNet,
    device: torch.device | str = "cpu",
    log: Callable[[str], None] | None = None,
    precision: str = "fp32",
):
    """The native engine at ``precision``; raises ``NativeUnavailable`` (saying why) where it cannot run."""
    from .native import NativeEngine  # imported on demand: it may build a C++ library

    return NativeEngine(model, device, log=log, precision=precision)


ENGINES = {"native": _native_engine, "torch": TorchEngine, "reference": ReferenceEngine}
GPU_ENGINES = ["cuda-graph", "persistent"]  # imported when asked for


_reported: set[str] = set()  # fallback notices already given in this process


def _fallback_notice(reason: Exception, log: Callable[[str], None] | None, engine: str = "native") -> None:
    notice = f"{engine} engine unavailable: {reason}; using the 'torch' engine"
    if notice not in _reported:  # once per process
        _reported.add(notice)
        (log or (lambda message: print(message, file=sys.stderr)))(notice)


def native_available(log: Callable[[str], None] | None = None) -> bool:
    """Whether the native engine builds and loads here (building it if needed); if not, says
    why once through ``log``."""
    from .native import NativeUnavailable, load

    try:
        load(log)
        return True
    except NativeUnavailable as exc:
        _fallback_notice(exc, log)
        return False


# What ``precision="auto"`` means in the native engine: int8, whose cost was measured at 0.001
# bits/sample or less from fp32 on a trained speech model (docs/measurements.md) for 1.4-3.6x the speed.
AUTO_NATIVE_PRECISION = "int8"


def checked_precision(precision: str) -> str:
    """``precision`` if it is ``auto`` or one of ``quantized.PRECISIONS``; else ``ConfigError``
    naming the choices."""
    if precision == "auto":
        return precision
    try:
        return check_precision(precision)
    except ValueError as exc:
        raise ConfigError(str(exc).replace("choose from ", "choose from auto, ")) from None


def make_engine(
    name: str,
    model: WaveNet,
    device: torch.device | str = "cpu",
    log: Callable[[str], None] | None = None,
    precision: str = "fp32",
) -> Engine:
    """Build an engine by name. ``auto`` picks the fastest available on ``device``: the native
    engine on a CPU when it can run, the CUDA-graph engine on a GPU, else ``torch``, saying once
    (through ``log``) why.

    ``precision`` (``fp32``, ``bf16``, ``int8``): anything but fp32 runs in the native engine on
    the CPU only, so ``auto`` then means the native engine. ``precision="auto"``: the native
    engine at ``AUTO_NATIVE_PRECISION`` wherever it runs, any other engine at fp32. Raises
    ``ConfigError`` for an unknown precision, or a lower one asked of another engine or of a GPU;
    ``NativeUnavailable`` when the native engine is asked for (or needed) and cannot run;
    ``ValueError`` for an unknown engine.
    """
    from .native import NativeUnavailable

    if checked_precision(precision) == "auto":
        native = name == "native" or (name == "auto" and torch.device(device).type == "cpu")
        if not native:
            return make_engine(name, model, device, log, "fp32")
        try:
            return _native_engine(model, device, log, AUTO_NATIVE_PRECISION)
        except NativeUnavailable as exc:
            if name == "native" or torch.device(device).type != "cpu":
                raise NativeUnavailable(f"native engine unavailable: {exc}") from None
            _fallback_notice(exc, log)
            return make_engine("torch", model, device, log, "fp32")
    if precision != "fp32":
        return _lower_precision_engine(name, model, device, log, precision)
    if name == "auto":
        if torch.device(device).type == "cpu":
            try:
                return _native_engine(model, device, log)
            except NativeUnavailable as exc:
                _fallback_notice(exc, log)
        else:
            from .cuda_graph import CudaGraphEngine, EngineUnavailable

            try:
                return CudaGraphEngine(model, device)
            except EngineUnavailable as exc:
                _fallback_notice(exc, log, "cuda-graph")
        name = "torch"
    if name in GPU_ENGINES:  # imported only when asked for
        from .cuda_graph import CudaGraphEngine
        from .persistent import PersistentEngine

        return {"cuda-graph": CudaGraphEngine, "persistent": PersistentEngine}[name](model, device)
    if name not in ENGINES:
        raise _unknown_engine(name)
    if name != "native":
        return ENGINES[name](model, device)
    try:
        return _native_engine(model, device, log)
    except NativeUnavailable as exc:
        raise NativeUnavailable(f"native engine unavailable: {exc}") from None


def _lower_precision_engine(
    name: str, model: WaveNet, device: torch.device | str, log: Callable[[str], None] | None, precision: str
) -> Engine:
    """The native engine at bf16 or int8, or a one-line refusal: no other engine stores lower
    precision weights, and there is no fallback that would compute something else silently."""
    from .native import NativeUnavailable

    if name not in ("auto", *GPU_ENGINES, *ENGINES):
        raise _unknown_engine(name)
    if name not in ("auto", "native"):
        raise ConfigError(
            f"--precision {precision} runs in the native engine only, not the '{name}' engine "
            "(use --engine native or auto, or --precision fp32)"
        )
    if torch.device(device).type != "cpu":
        raise ConfigError(f"--precision {precision} runs in the native engine on the CPU (use --device cpu)")
    try:
        return _native_engine(model, device, log, precision)
    except NativeUnavailable as exc:
        raise NativeUnavailable(f"--precision {precision}: native engine unavailable: {exc}") from None


def _unknown_engine(name: str) -> ValueError:
    return ValueError(f"unknown engine {name!r} (choose from auto, {', '.join(GPU_ENGINES + list(ENGINES))})")


def engine_precision(engine: Engine) -> str:
    """The precision an engine computes at: the native engine's own, fp32 for every other."""
    return getattr(engine, "precision", "fp32")


def native_steps_per_call(batch: int) -> int:
    """Samples per native call: about 0.1 s of work, so progress and Ctrl-C stay responsive."""
    return max(256, min(4096, 32768 // batch))


@torch.inference_mode()
def generate(
    engine: Engine,
    num_samples: int,
    seeds: list[int],
    temperature: float | list[float] = 1.0,
    history: torch.Tensor | None = None,
    progress: Callable[[int], None] | None = None,
    conditioning: Conditioning | None = None,
) -> torch.Tensor:
    """Generate ``num_samples`` codes for ``len(seeds)`` streams; returns (B, N) uint8 on CPU.

    Sample n of a stream (n counted from 0 in this call) uses the uniform u(seed, n), whatever
    the engine, and sits at time n of ``conditioning`` (labels and/or mel features for every
    stream; a conditioned model needs one; the history ends at time -1). An engine with a native
    loop (``sample_steps``) generates thousands of samples per call, a graph engine
    (``generate_codes``) whole replays on the GPU; the others step here, one
    ``logits``/``append`` per sample. ``progress`` is called with the number of new samples after
    each chunk (at most 4096 samples).
    """
    batch = len(seeds)
    temps = torch.as_tensor(
        temperature if isinstance(temperature, list) else [temperature] * batch, dtype=torch.float64
    )
    engine.reset(batch, history, conditioning)
    out = torch.empty(batch, num_samples, dtype=torch.uint8)
    generate_codes = getattr(engine, "generate_codes", None)
    if generate_codes is not None:  # a loop of its own on the GPU: uniforms go in per replay
        drawn = 0

        def draw(count: int) -> torch.Tensor:  # (count, B) float64, continuing the counter
            nonlocal drawn
            uniforms = stream_uniforms(seeds, drawn, count)
            drawn += count
            return torch.from_numpy(np.ascontiguousarray(uniforms.T))

        return generate_codes(num_samples, temps, draw, progress)
    native = getattr(engine, "sample_steps", None)
    if native is not None:
        step = native_steps_per_call(batch)
        for start in range(0, num_samples, step):
            count = min(step, num_samples - start)
            native(out, start, count, seeds, temps.numpy())
            if progress:
                progress(count)
        return out
    rng = StreamRandom(seeds)
    chunk = []
    for n in range(num_samples):
        codes = sample_codes(engine.logits(), temps, rng.next())
        engine.append(codes)
        chunk.append(codes)
        if len(chunk) == 1024 or n == num_samples - 1:  # one device→host copy per chunk
            out[:, n + 1 - len(chunk) : n + 1] = torch.stack(chunk, 1).to("cpu", torch.uint8)
            if progress:
                progress(len(chunk))
            chunk = []
    return out
