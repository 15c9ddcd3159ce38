"""Autoregressive generation: five engines behind one contract, one sampling definition.

Every engine keeps the ``engine.Engine`` contract (reset, logits, append), and ``generate``
drives any of them:

- ``reference`` runs the whole network over the last receptive field for every sample (what
  "no cache" costs);
- ``torch`` keeps, for every residual block, a ring buffer of that block's past inputs (exactly
  the (k-1)·d values its dilated convolution reads again), so one sample costs one matrix
  product per layer instead of a full forward pass;
- ``native`` does the same in C++ (``native/``) and has a loop of its own (``HostLoop``) that
  samples thousands of steps per call, at fp32, bf16 or int8 weights (``quantized``);
- ``cuda-graph`` replays the torch engine's steps as CUDA graphs, and ``persistent`` runs many
  samples of every layer in one Triton kernel launch; both loop on the GPU (``DeviceLoop``).

With the same seeds all of them produce identical codes at the same precision; the tests hold
them to that. Which engine ``auto`` means is decided in one place, ``choice``; ``build_engine``
here builds one engine by name.

A conditioned model (``conditioning.py``) adds a term per layer and time to the conv output
before the gate. Times count from the first generated sample (0); the past (silence, then the
history, whose last code is at time -1) sits at negative times. The reference engine asks
``Conditioning.terms`` for every window it runs. The cached engines take the conditioning apart
(``terms.TermParts``): a fixed term per stream (labels) and frame-rate terms (mel features) that
they upsample themselves, three multiply-adds per channel and step from rows they fetch a block
of frames at a time (``FrameBlocks``): the per-sample terms would cost more memory traffic than
the step itself.

Sampling is inverse-CDF on a float64 softmax (``sample_codes``) with one uniform per stream and
sample from a counter-based generator (``stream_uniforms``): the uniform is a function of the
stream's seed and the sample's index alone, so every stream is reproducible on its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch

from ..model.network import WaveNet
from .engine import DeviceLoop, Engine, HostLoop, StreamRandom, sample_codes, temperatures, uniform_draws
from .reference import ReferenceEngine
from .torch_engine import TorchEngine

if TYPE_CHECKING:
    from ..model.conditioning import Conditioning


def build_engine(
    name: str,
    model: WaveNet,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
) -> Engine:
    """The engine called ``name`` (one of ``request.ENGINES``) for ``model`` on ``device``, with
    its weights at ``precision`` (fp32; bf16 and int8 in the native engine only), as a
    ``choice.Candidate`` names them: the plan has refused other combinations. Raises
    ``EngineUnavailable`` (saying why) where it cannot run."""
    if name == "native":  # imported on demand: it may build a C++ library
        from .native import NativeEngine

        return NativeEngine(model, device, precision=precision)
    if precision != "fp32":
        raise ValueError(f"the {name} engine computes at fp32 only, not {precision}")
    if name == "cuda-graph":
        from .cuda_graph import CudaGraphEngine

        return CudaGraphEngine(model, device)
    if name == "persistent":  # imports Triton
        from .persistent import PersistentEngine

        return PersistentEngine(model, device)
    return TorchEngine(model, device) if name == "torch" else ReferenceEngine(model, device)


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
    stream; a conditioned model needs one; the history ends at time -1). An engine with a loop
    of its own runs it: a ``DeviceLoop`` whole replays on the GPU, a ``HostLoop`` thousands of
    samples per call; the others step here, one ``logits``/``append`` per sample. ``progress``
    is called with the number of new samples after each chunk (at most 4096 samples).
    """
    batch = len(seeds)
    temps = temperatures(temperature, batch)
    engine.reset(batch, history, conditioning)
    if isinstance(engine, DeviceLoop):  # uniforms go in per replay
        return engine.generate_codes(num_samples, temps, uniform_draws(seeds), progress)
    out = torch.empty(batch, num_samples, dtype=torch.uint8)
    if isinstance(engine, HostLoop):
        step = native_steps_per_call(batch)
        for start in range(0, num_samples, step):
            count = min(step, num_samples - start)
            engine.sample_steps(out, start, count, seeds, temps.numpy())
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
