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
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Callable, Protocol

import numpy as np
import torch

from .conditioning import StackedTerms
from .engine_state import (  # noqa: F401  (re-exported: the engines' shared start state)
    FrameBlocks, TermParts, check_conditioning, past_block_inputs, ring_of, silence,
)
from .model import WaveNet

if TYPE_CHECKING:
    from .conditioning import Conditioning


class Engine(Protocol):
    name: str

    def reset(self, batch: int, history: torch.Tensor | None = None,
              conditioning: Conditioning | None = None) -> None: ...
    def logits(self) -> torch.Tensor: ...
    def append(self, codes: torch.Tensor) -> None: ...


# Counter-based random numbers (SplitMix64's finaliser), computed identically in Python and in
# the native engine: the uniform for stream seed s and sample n is a pure function of (s, n), so
# a stream is reproducible on its own, whatever the batch, the engine or the thread count.
GOLDEN = 0x9E3779B97F4A7C15
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on uint64 arrays (arithmetic mod 2^64)."""
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def stream_uniforms(seeds: list[int], start: int, count: int) -> np.ndarray:
    """Uniforms in [0, 1) for samples ``start .. start + count - 1`` of each stream: (B, count) float64.

    u(s, n) = (mix(mix(s + GOLDEN) + (n + 1) * GOLDEN) >> 11) * 2^-53, all mod 2^64.
    """
    with np.errstate(over="ignore"):  # wrap-around is the definition, not an accident
        seed = np.array([int(s) % 2**64 for s in seeds], dtype=np.uint64)
        key = _mix(seed + np.uint64(GOLDEN))  # (B,)
        n = np.arange(start + 1, start + count + 1, dtype=np.uint64)  # (count,)
        bits = _mix(key[:, None] + n[None, :] * np.uint64(GOLDEN)) >> np.uint64(11)
    return bits.astype(np.float64) * 2.0**-53


class StreamRandom:
    """One uniform per stream and sample, counting samples from 0; drawn ahead in chunks."""

    def __init__(self, seeds: list[int], chunk: int = 4096) -> None:
        self.seeds = [int(s) for s in seeds]
        self.chunk = chunk
        self.start = 0  # sample index of buffer[:, 0]
        self.buffer = np.empty((len(seeds), 0))
        self.used = 0

    def next(self) -> torch.Tensor:  # (B,) float64
        if self.used == self.buffer.shape[1]:
            self.start += self.used
            self.buffer = stream_uniforms(self.seeds, self.start, self.chunk)  # (B, chunk)
            self.used = 0
        self.used += 1
        return torch.from_numpy(self.buffer[:, self.used - 1].copy())


def sample_codes(logits: torch.Tensor, temperature: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """Draw one code per row of ``logits`` (B, C) by inverse CDF of softmax(logits / temperature).

    The definition the native engine mirrors step for step: m = max(l); e_i = exp((l_i - m) / T)
    in float64; cdf = running sum in index order; code = first i with cdf_i >= u * cdf[C-1].
    """
    logits = logits.double()  # float32 -> float64 is exact
    shifted = (logits - logits.max(dim=-1, keepdim=True).values) / temperature.to(logits.device)[:, None]
    cdf = torch.exp(shifted).cumsum(dim=-1)  # (B, C), unnormalised
    target = uniform.to(cdf.device) * cdf[:, -1]  # (B,)
    codes = torch.searchsorted(cdf, target[:, None].contiguous())  # first i with cdf_i >= target
    return codes.squeeze(1).clamp_(max=logits.shape[-1] - 1)


class ReferenceEngine:
    """Full forward over the last receptive field per sample: slow, simple, the ground truth."""

    name = "reference"

    def __init__(self, model: WaveNet, device: torch.device | str = "cpu") -> None:
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.rf = model.receptive_field

    def reset(self, batch: int, history: torch.Tensor | None = None,
              conditioning: Conditioning | None = None) -> None:
        check_conditioning(self.model, batch, conditioning)
        past = silence(batch, self.rf, self.device)
        if history is not None:
            past = torch.cat([past, history.to(self.device).long().expand(batch, -1)], dim=1)
        # One extra slot for the position being predicted: type-A masking means its value is
        # never read, so a placeholder is fine.
        self.window = torch.cat([past[:, -self.rf :], silence(batch, 1, self.device)], dim=1)
        self.conditioning = conditioning
        self.n = 0  # generation time of the next sample: the window covers n - rf .. n

    @torch.inference_mode()
    def logits(self) -> torch.Tensor:
        cond = None
        if self.conditioning is not None:
            cond = self.conditioning.terms(self.n - self.rf, self.rf + 1)
            cond = StackedTerms(cond.terms.to(self.device))
        # Full fp32: cuDNN would otherwise use TF32 for the convolutions on recent GPUs, and
        # the ground truth must not be the less exact side of a comparison.
        with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            return self.model(self.window, output_from=self.rf, cond=cond)[:, :, 0].float()  # (B, classes)

    def append(self, codes: torch.Tensor) -> None:
        self.window = torch.cat([self.window[:, 1:-1], codes[:, None], self.window[:, -1:]], dim=1)
        self.n += 1


class TorchEngine:
    """Incremental step in plain PyTorch with per-layer ring buffers (no recomputation)."""

    name = "torch"

    def __init__(self, model: WaveNet, device: torch.device | str = "cpu") -> None:
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.rf = model.receptive_field
        self._silence: tuple[torch.Tensor, list[torch.Tensor]] | None = None
        with torch.no_grad():
            self._pack(model)

    def _pack(self, model: WaveNet) -> None:
        """Rearrange the conv weights into matrices for (B, features) @ (features, out) steps."""
        w = model.input.weight.detach().float()  # (R, classes, k_in)
        self.in_offsets = model.input.tap_offsets()  # all >= 1 (type A)
        self.in_tables = [w[:, :, i].t().contiguous() for i in range(w.shape[2])]  # (classes, R)
        self.in_bias = model.input.bias.detach().float()
        self.gate = model.config.gate_channels
        self.residual = model.config.residual_channels
        self.layers = []
        for block in model.blocks:
            cw = block.conv.weight.detach().float()  # (2G, R, k); tap i reads t - offsets[i]
            k = cw.shape[2]
            conv = cw.permute(2, 1, 0).reshape(k * cw.shape[1], cw.shape[0]).contiguous()  # (k·R, 2G)
            out = torch.cat([block.residual.weight[:, :, 0], block.skip.weight[:, :, 0]]).detach()
            out_bias = torch.cat([block.residual.bias, block.skip.bias]).detach()
            self.layers.append(
                dict(
                    offsets=block.conv.tap_offsets(),  # last one is 0: the current input
                    ring_length=(k - 1) * block.dilation,
                    conv=conv,
                    conv_bias=block.conv.bias.detach().float(),
                    out=out.float().t().contiguous(),  # (G, R + S)
                    out_bias=out_bias.float(),
                )
            )
        h1, h2 = model.head[1], model.head[3]
        self.head = (
            h1.weight[:, :, 0].detach().float().t().contiguous(), h1.bias.detach().float(),
            h2.weight[:, :, 0].detach().float().t().contiguous(), h2.bias.detach().float(),
        )

    @torch.inference_mode()
    def reset(self, batch: int, history: torch.Tensor | None = None,
              conditioning: Conditioning | None = None) -> None:
        """Fill the rings from a parallel forward pass over the history (silence by default),
        conditioned on ``conditioning`` where the model is."""
        check_conditioning(self.model, batch, conditioning)
        if history is None and conditioning is None:  # the same for every call: computed on the first
            self._silence = self._silence or past_block_inputs(self.model, 1, None, self.device)
            past, inputs = self._silence
        else:
            past, inputs = past_block_inputs(self.model, batch, history, self.device, conditioning)
        self.t = self.t0 = past.shape[1]  # time index of the next sample; t0: generation time 0
        self.parts = None if conditioning is None else TermParts(conditioning)
        self.fixed_term: torch.Tensor | None = None  # (L, B, 2G): the labels' terms
        self.frame_blocks: FrameBlocks | None = None  # blocks of (rows, L, B, 2G): the mels' frame terms
        if self.parts is not None and self.parts.fixed is not None:
            self.fixed_term = self.parts.fixed.to(self.device).transpose(0, 1).contiguous()
        if self.parts is not None and self.parts.hop:
            self.kernel = self.parts.kernel.to(self.device)  # (3, hop)
            self.frame_blocks = FrameBlocks(
                self.parts, lambda frames: frames.to(self.device).permute(1, 2, 0, 3).contiguous(),
                self.parts.layers * self.parts.channels)
        self.rings = [  # (L, B, R) each
            ring_of(x, layer["ring_length"], self.t).float().expand(-1, batch, -1).contiguous()
            for layer, x in zip(self.layers, inputs)
        ]
        k_in = len(self.in_offsets)
        self.code_ring = ring_of(past[:, None, :], k_in, self.t)[:, :, 0].expand(k_in, batch).contiguous()
        self.pending: list[torch.Tensor] = []

    @torch.inference_mode()
    def logits(self) -> torch.Tensor:
        t, k_in = self.t, len(self.in_offsets)
        h = self.in_bias + sum(
            table[self.code_ring[(t - off) % k_in]] for table, off in zip(self.in_tables, self.in_offsets)
        )  # (B, R)
        skip = None
        self.pending = []
        terms = self.step_terms()
        for index, (layer, ring) in enumerate(zip(self.layers, self.rings)):
            n = layer["ring_length"]
            taps = [ring[(t - off) % n] if off else h for off in layer["offsets"]]
            a = torch.addmm(layer["conv_bias"], torch.cat(taps, dim=1), layer["conv"])  # (B, 2G)
            if terms is not None:
                a += terms[index]
            z = torch.tanh(a[:, : self.gate]) * torch.sigmoid(a[:, self.gate :])
            rs = torch.addmm(layer["out_bias"], z, layer["out"])  # (B, R + S)
            self.pending.append(h)
            h = h + rs[:, : self.residual]
            skip = rs[:, self.residual :] if skip is None else skip + rs[:, self.residual :]
        w1, b1, w2, b2 = self.head
        return torch.addmm(b2, torch.relu(torch.addmm(b1, torch.relu(skip), w1)), w2)

    def step_terms(self) -> torch.Tensor | None:
        """This step's conditioning (L, B, 2G), or None: ``TermParts``' arithmetic, in the native engine's order."""
        if self.frame_blocks is None:
            return self.fixed_term
        t = self.t - self.t0
        block, first, _ = self.frame_blocks.at(t)
        f = t // self.parts.hop
        rows, k = block[f - 1 - first :], self.kernel[:, t - f * self.parts.hop]
        term = (rows[0] * k[0] + rows[1] * k[1]) + rows[2] * k[2]
        return term if self.fixed_term is None else term + self.fixed_term

    @torch.inference_mode()
    def append(self, codes: torch.Tensor) -> None:
        t = self.t
        for layer, ring, h in zip(self.layers, self.rings, self.pending):
            if layer["ring_length"]:
                ring[t % layer["ring_length"]] = h
        self.code_ring[t % len(self.in_offsets)] = codes.to(self.device)
        self.t = t + 1


def _native_engine(model: WaveNet, device: torch.device | str = "cpu", log: Callable[[str], None] | None = None):
    """The native engine; raises ``NativeUnavailable`` (saying why) where it cannot run."""
    from .native import NativeEngine  # imported on demand: it may build a C++ library

    return NativeEngine(model, device, log=log)


ENGINES = {"native": _native_engine, "torch": TorchEngine, "reference": ReferenceEngine}
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


def make_engine(
    name: str,
    model: WaveNet,
    device: torch.device | str = "cpu",
    log: Callable[[str], None] | None = None,
) -> Engine:
    """Build an engine by name. ``auto`` picks the fastest available on ``device``: the native
    engine on a CPU when it can run, the CUDA-graph engine on a GPU, else ``torch``, saying once
    (through ``log``) why."""
    from .native import NativeUnavailable

    if name == "auto":
        if torch.device(device).type == "cpu":
            try:
                return _native_engine(model, device, log)
            except NativeUnavailable as exc:
                _fallback_notice(exc, log)
        else:
            from .sampling_cuda import CudaGraphEngine, EngineUnavailable

            try:
                return CudaGraphEngine(model, device)
            except EngineUnavailable as exc:
                _fallback_notice(exc, log, "cuda-graph")
        name = "torch"
    if name == "cuda-graph":  # imported only when asked for
        from .sampling_cuda import CudaGraphEngine

        return CudaGraphEngine(model, device)
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r} (choose from auto, cuda-graph, {', '.join(ENGINES)})")
    if name != "native":
        return ENGINES[name](model, device)
    try:
        return _native_engine(model, device, log)
    except NativeUnavailable as exc:
        raise NativeUnavailable(f"native engine unavailable: {exc}") from None


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
