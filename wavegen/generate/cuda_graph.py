"""GPU sampling: the cached step captured in a CUDA graph, many samples per replay.

On a GPU the ``torch`` engine's step is ~90 tiny kernels launched one by one from Python, so a
sample costs the launch overhead of all of them (a few hundred samples/s for one stream). Here
the same step — ring-buffer reads and writes, the gated layers, the head and the sampling from
the softmax — is recorded once for ``steps_per_replay`` consecutive samples and replayed as one
graph: no Python and no host synchronisation per sample, one copy of uniforms in and of codes
out per replay.

Ring positions inside the graph are fixed numbers, not computed on the device: the number of
steps per replay is a multiple of every ring's length, so after each replay every ring is back
at the position it started from. Before the first replay the rings are rotated so that their
slot 0 holds "now" (the engine's time origin).

A conditioned model's terms go in like the uniforms: a static buffer (steps, L, B, 2G) filled
before each replay (upsampled from the mel features' frame-rate terms), or (L, B, 2G) once for
labels alone.

``use_graph=False`` runs the same body, with the same static buffers and indices, eagerly on
any device (the CPU included) instead of capturing it: what the tests without a GPU check.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..errors import EngineUnavailable
from ..model.network import WaveNet
from .engine import sample_codes
from .terms import fill_step_terms
from .torch_engine import TorchEngine

MIN_STEPS_PER_REPLAY = 256


MAX_STEPS_PER_REPLAY = 4096


MAX_TERM_BYTES = 4 << 30  # static buffer of conditioning terms per replay


class CudaGraphEngine(TorchEngine):
    """``TorchEngine`` for CUDA with its per-sample loop captured in a CUDA graph."""

    name = "cuda-graph"

    def __init__(self, model: WaveNet, device: torch.device | str = "cuda", use_graph: bool = True) -> None:
        device = torch.device(device)
        if use_graph and (device.type != "cuda" or not torch.cuda.is_available()):
            raise EngineUnavailable("the cuda-graph engine needs a CUDA device")
        super().__init__(model, device)
        self.use_graph = use_graph
        lengths = [layer["ring_length"] for layer in self.layers if layer["ring_length"]]
        period = math.lcm(len(self.in_offsets), *lengths)
        self.steps_per_replay = period * math.ceil(MIN_STEPS_PER_REPLAY / period)
        if self.steps_per_replay > MAX_STEPS_PER_REPLAY:
            raise EngineUnavailable(f"ring lengths need {self.steps_per_replay} steps per replay")
        self.graph: torch.cuda.CUDAGraph | None = None
        self.graph_key: tuple[int, str] | None = None  # (batch, conditioning kind) of the buffers

    # -- the recorded body ---------------------------------------------------------------------
    def _body(self) -> None:
        """``steps_per_replay`` steps on the static buffers; every index is a Python int."""
        k_in, gate, residual = len(self.in_offsets), self.gate, self.residual
        w1, b1, w2, b2 = self.head
        for k in range(self.steps_per_replay):
            h = self.in_bias + sum(
                table[self.g_codes[(k - off) % k_in]] for table, off in zip(self.in_tables, self.in_offsets)
            )  # (B, R)
            skip = None
            terms = self.g_terms if self.g_terms is None or self.g_terms.dim() == 3 else self.g_terms[k]
            for index, (layer, ring) in enumerate(zip(self.layers, self.g_rings)):
                n = layer["ring_length"]
                taps = torch.cat([ring[(k - off) % n] if off else h for off in layer["offsets"]], dim=1)
                if n:  # after the read above: for kernel 2 the oldest tap and "now" share a slot
                    ring[k % n].copy_(h)
                a = torch.addmm(layer["conv_bias"], taps, layer["conv"])  # (B, 2G)
                if terms is not None:
                    a += terms[index]
                z = torch.tanh(a[:, :gate]) * torch.sigmoid(a[:, gate:])
                rs = torch.addmm(layer["out_bias"], z, layer["out"])  # (B, R + S)
                h = h + rs[:, :residual]
                skip = rs[:, residual:] if skip is None else skip + rs[:, residual:]
            logits = torch.addmm(b2, torch.relu(torch.addmm(b1, torch.relu(skip), w1)), w2)
            codes = sample_codes(logits, self.g_temperature, self.g_uniform[k])
            self.g_out[k].copy_(codes)
            self.g_codes[k % k_in].copy_(codes)

    def _capture(self, batch: int, kind: str) -> None:
        """Allocate the static buffers for ``batch`` streams and record the graph. ``kind``:
        the conditioning, "none", "fixed" (labels alone) or "steps"."""
        dev, steps = self.device, self.steps_per_replay
        self.graph, self.graph_key = None, None  # free the old graph's memory first
        self.g_rings = [torch.zeros(r.shape[0], batch, self.residual, device=dev) for r in self.rings]
        self.g_codes = torch.full((len(self.in_offsets), batch), 128, dtype=torch.long, device=dev)
        self.g_temperature = torch.ones(batch, dtype=torch.float64, device=dev)
        self.g_uniform = torch.full((steps, batch), 0.5, dtype=torch.float64, device=dev)
        self.g_out = torch.zeros(steps, batch, dtype=torch.long, device=dev)
        term_shape = (len(self.layers), batch, 2 * self.gate)
        self.g_terms = (
            None if kind == "none" else torch.zeros(term_shape if kind == "fixed" else (steps, *term_shape), device=dev)
        )
        self.graph_key = (batch, kind)
        if not self.use_graph:
            return
        side = torch.cuda.Stream(device=dev)
        side.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(side), torch.inference_mode():
            self._body()  # warm-up outside the graph (lazy initialisation, workspace allocation)
        torch.cuda.current_stream(dev).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(self.graph):
            self._body()

    # -- generation ----------------------------------------------------------------------------
    @torch.inference_mode()
    def generate_codes(
        self,
        num_samples: int,
        temperature: torch.Tensor,
        draw_uniforms: Callable[[int], torch.Tensor],
        progress: Callable[[int], None] | None = None,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Continue from the state ``reset`` left; returns codes (B, N) uint8 on the CPU (``out``
        if given, filled as ``DeviceLoop`` says).

        ``draw_uniforms(n)`` gives the next n uniforms of every stream as (n, B) float64. The
        step-wise ``logits``/``append`` API must not be mixed with this call without a reset.
        """
        batch = self.code_ring.shape[1]
        steps = self.steps_per_replay
        kind = "steps" if self.frame_blocks is not None else "fixed" if self.fixed_term is not None else "none"
        if kind == "steps":
            size = 4 * steps * batch * len(self.layers) * 2 * self.gate
            if size > MAX_TERM_BYTES:
                raise EngineUnavailable(
                    f"the conditioning terms of {batch} streams need {size / 2**30:.1f} GB per replay of "
                    f"{steps} steps (at most {MAX_TERM_BYTES / 2**30:g} GB): use fewer streams"
                )
        if self.graph_key != (batch, kind):
            self._capture(batch, kind)
        # Rotate the state so that slot j of every ring holds relative time j (mod its length).
        for static, ring in zip(self.g_rings, self.rings):
            if ring.shape[0]:
                static.copy_(torch.roll(ring, -(self.t % ring.shape[0]), dims=0))
        k_in = self.code_ring.shape[0]
        self.g_codes.copy_(torch.roll(self.code_ring, -(self.t % k_in), dims=0))
        self.g_temperature.copy_(temperature)
        if kind == "fixed":
            assert self.g_terms is not None  # _capture made the terms' tensor of this kind
            self.g_terms.copy_(self.fixed_term)
        n0 = self.t - self.t0  # generation time of the first step
        out = torch.empty(batch, num_samples, dtype=torch.uint8) if out is None else out
        for start in range(0, num_samples, steps):
            self.g_uniform.copy_(draw_uniforms(steps), non_blocking=True)
            if kind == "steps":
                fill_step_terms(self.parts, self.kernel, self.fixed_term, n0 + start, self.g_terms)
            if self.use_graph:
                assert self.graph is not None  # captured above (_capture)
                self.graph.replay()
            else:
                self._body()
            count = min(steps, num_samples - start)
            out[:, start : start + count] = self.g_out[:count].t().to("cpu", torch.uint8)
            if progress:
                progress(count)
        return out
