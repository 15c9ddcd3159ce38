"""The ``persistent`` engine: one stream (or a few) on a GPU, every layer of many samples in one
launch of the Triton kernel in ``kernel.py``, the weights held on chip.

The ``cuda-graph`` engine replays ~200 small kernels per sample, so one stream is bound by their
launches; here one launch runs up to ``MAX_STEPS`` samples, each a chain of programs that pass the
residual stream to each other through global memory (the design of NVIDIA's nv-wavenet, written
in Triton). It computes the network as trained (fp32) and draws with ``engine.sample_codes``'s
definition, so with the same seeds it draws the reference engine's codes.

Triton compiles the kernel on first use (seconds; cached by Triton). Under Triton's interpreter
(``TRITON_INTERPRET=1`` before Triton is imported) the same kernel runs on the CPU, one step per
launch, which is how the tests check it where there is no GPU.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch

from ...errors import EngineUnavailable
from ...model.network import WaveNet
from ..cuda_graph import MAX_TERM_BYTES
from ..terms import fill_step_terms
from ..torch_engine import TorchEngine

if TYPE_CHECKING:
    from ...model.conditioning import Conditioning

MAX_STEPS = 2048  # samples per launch on a GPU: a few hundredths of a second, so progress and Ctrl-C respond
POLL_LIMIT = 1 << 25  # polls (a trip to the L2 cache each, ~1 µs) before a waiting program gives up


def _pow2(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def _interpreted() -> bool:
    from triton import knobs

    return bool(knobs.runtime.interpret)


def _padded(x: torch.Tensor, *shape: int) -> torch.Tensor:
    """``x`` zero-padded at the end of every dimension to ``shape``."""
    out = x.new_zeros(shape)
    out[tuple(slice(0, n) for n in x.shape)] = x
    return out


class PersistentEngine(TorchEngine):
    """``TorchEngine``'s state and packing, stepped by the persistent kernel.

    ``slices``: programs per layer (each holds 1/slices of the layer's gate channels; default:
    4, fewer if the GPU has too few multiprocessors for all programs at once); ``heads``:
    programs per head layer (default: 8 for the first, 4 for the second). Raises
    ``EngineUnavailable`` where it cannot run: no Triton, no CUDA device (outside the
    interpreter), or a model that needs more programs than the GPU runs at once.
    """

    name = "persistent"

    def __init__(
        self, model: WaveNet, device: torch.device | str = "cuda", slices: int | None = None, heads: int | None = None
    ) -> None:
        device = torch.device(device)
        try:
            from . import kernel
        except ImportError as exc:
            raise EngineUnavailable(f"the persistent engine needs Triton ({exc})") from None
        self.interpreted = _interpreted()
        if not self.interpreted and (device.type != "cuda" or not torch.cuda.is_available()):
            raise EngineUnavailable("the persistent engine needs a CUDA device")
        if model.config.kernel_size < 2:
            raise EngineUnavailable("the persistent engine needs kernel_size >= 2")
        super().__init__(model, device)
        self.kernel_fn = kernel.persistent_steps
        c, n_layers = model.config, len(self.layers)
        self.RP, self.GP, self.SP = _pow2(c.residual_channels), _pow2(c.gate_channels), _pow2(c.skip_channels)
        self.CP, self.k = _pow2(c.classes), c.kernel_size
        self.PP = _pow2((self.k - 1) * self.RP)
        self.H1, self.H2 = min(heads or 8, self.SP), min(heads or 4, self.CP)
        sms = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 1 << 30
        choices = [slices] if slices else [q for q in (4, 2, 1) if q <= self.GP]
        fitting = [q for q in choices if n_layers * q + self.H1 + self.H2 <= sms]
        if not fitting:
            need = n_layers * choices[-1] + self.H1 + self.H2
            raise EngineUnavailable(f"the persistent engine needs {need} programs at once, this GPU runs {sms}")
        self.Q = fitting[0]
        self.programs = n_layers * self.Q + self.H1 + self.H2
        with torch.no_grad():
            self._pack_programs()
        self.batch_padded = 0
        self.steps_per_launch = MAX_STEPS  # on a GPU; one under the interpreter

    def _pack_programs(self) -> None:
        """Each program's weights, zero-padded to powers of two, in the order the kernel reads."""
        Q, R, G, RP, GP, SP, k = self.Q, self.residual, self.gate, self.RP, self.GP, self.SP, self.k
        GQ = GP // Q
        past, now, bias, res, skip, res_b, skip_b = [], [], [], [], [], [], []
        for layer in self.layers:
            offsets = layer["offsets"]
            if offsets != [(k - 1 - i) * offsets[-2] for i in range(k)]:
                raise EngineUnavailable("the persistent engine reads taps at (k-1-i)·d")
            w = layer["conv"].t().reshape(2, G, k, R)  # (tanh/sigmoid, G, tap, R)
            w = _padded(w, 2, GP, k, RP)
            taps = _padded(w[:, :, : k - 1].reshape(2, GP, (k - 1) * RP), 2, GP, self.PP)
            b = _padded(layer["conv_bias"].view(2, G), 2, GP)
            out = layer["out"]  # (G, R + S)
            res_w, skip_w = _padded(out[:, :R].t(), RP, GP), _padded(out[:, R:].t(), SP, GP)
            for q in range(Q):
                rows = slice(q * GQ, (q + 1) * GQ)
                past.append(taps[:, rows])
                now.append(w[:, rows, k - 1])
                bias.append(b[:, rows])
                res.append(res_w[:, rows])
                skip.append(skip_w[:, rows])
                first = q == 0  # the biases once per layer, in the first slice's part
                res_b.append(_padded(layer["out_bias"][:R], RP) * first)
                skip_b.append(_padded(layer["out_bias"][R:], SP) * first)
        stack = lambda xs: torch.stack(xs).contiguous()  # noqa: E731
        self.w = dict(
            conv_past=stack(past), conv_now=stack(now), conv_bias=stack(bias), res_w=stack(res),
            skip_w=stack(skip), res_bias=stack(res_b), skip_bias=stack(skip_b),
        )  # fmt: skip
        w1, b1, w2, b2 = self.head  # (S, A), (A,), (A, C), (C,)
        self.AP = _pow2(w1.shape[1])
        SQ = SP // self.H1
        self.w["w1"] = _padded(w1.t(), self.AP, SP).view(self.AP, self.H1, SQ).transpose(0, 1).contiguous()
        self.w["b1"], self.w["b2"] = _padded(b1, self.AP), _padded(b2, self.CP)
        self.w["w2"] = _padded(w2.t(), self.CP, self.AP).contiguous()
        self.w["in_tables"] = torch.stack([_padded(t, self.CP, RP) for t in self.in_tables]).contiguous()
        self.w["in_bias"] = _padded(self.in_bias, RP)
        self.w["in_offsets"] = torch.tensor(self.in_offsets, dtype=torch.int32, device=self.device)
        dil = [layer["offsets"][-2] for layer in self.layers]
        self.w["dilations"] = torch.tensor(dil, dtype=torch.int32, device=self.device)
        self.ring_lengths = [(k - 1) * d for d in dil]

    @torch.inference_mode()
    def reset(self, batch: int, history: torch.Tensor | None = None, conditioning: Conditioning | None = None) -> None:
        """``TorchEngine.reset``, then its rings copied into every program's own."""
        super().reset(batch, history, conditioning)
        self.batch, BB = batch, _pow2(batch)
        if BB != self.batch_padded:
            self._allocate(BB)
        Q, RP = self.Q, self.RP
        for index, ring in enumerate(self.rings):  # (length, B, R)
            padded = _padded(ring, ring.shape[0], BB, RP).flatten()
            for q in range(Q):
                start = self.ring_offsets_host[index * Q + q]
                self.ring[start : start + padded.numel()] = padded
        codes = _padded(self.code_ring.to(torch.int32), self.code_ring.shape[0], BB)  # (k_in, BB)
        self.code_rings.copy_(codes.expand(Q, -1, -1))
        for words in (self.blocks, self.skips, self.y1, self.logit_words):
            words.zero_()  # no tag of an earlier generation can match
        self.tag, self.undrawn, self.forced_count, self.cached = 1, False, 0, None
        self.temps.fill_(1.0)

    def _allocate(self, BB: int) -> None:
        dev, n_layers, Q = self.device, len(self.layers), self.Q
        sizes = [length * BB * self.RP for length in self.ring_lengths for _ in range(Q)]
        self.ring_offsets_host = [sum(sizes[:i]) for i in range(len(sizes))]
        self.ring = torch.zeros(max(1, sum(sizes)), device=dev)
        self.ring_offsets = torch.tensor(self.ring_offsets_host, dtype=torch.int64, device=dev)
        self.code_rings = torch.zeros(Q, len(self.in_offsets), BB, dtype=torch.int32, device=dev)
        words = lambda *shape: torch.zeros(shape, dtype=torch.int64, device=dev)  # noqa: E731
        self.blocks = words(n_layers, Q + 1, BB, self.RP)
        self.skips, self.y1 = words(n_layers * Q, BB, self.SP), words(self.H1, BB, self.AP)
        self.logit_words = words(BB, self.CP)
        self.temps = torch.ones(BB, dtype=torch.float64, device=dev)
        self.forced = torch.zeros(BB, dtype=torch.int32, device=dev)
        self.error = torch.zeros(1, dtype=torch.int32, device=dev)
        self.batch_padded = BB

    def _terms(self, steps: int) -> tuple[torch.Tensor | None, int]:
        """The conditioning terms of the next ``steps`` steps and the stride between steps."""
        if self.frame_blocks is None:
            return self.fixed_term, 0
        out = torch.empty(steps, len(self.layers), self.batch, 2 * self.gate, device=self.device)
        fill_step_terms(self.parts, self.kernel, self.fixed_term, self.t - self.t0, out)
        return out, out[0].numel()

    def _launch(self, steps: int, tail: int, uniforms: torch.Tensor | None) -> torch.Tensor:
        """Run ``steps`` steps (and with ``tail`` the last draw); returns the codes drawn at each
        step (BB, steps + tail), column n: the code of the step before step n."""
        BB, dev = self.batch_padded, self.device
        draws = torch.full((steps + tail, BB), 0.5, dtype=torch.float64, device=dev)
        if uniforms is not None:
            draws[-uniforms.shape[0] :, : self.batch] = uniforms.to(dev)
        codes = torch.zeros(BB, steps + tail, dtype=torch.int32, device=dev)
        terms, term_step = self._terms(steps) if steps and self.parts is not None else (None, 0)
        Q, SQ, CQ = self.Q, self.SP // self.H1, self.CP // self.H2
        # By keyword, named as kernel.persistent_steps names them (self.w's keys are its weights' names).
        self.kernel_fn[(self.programs,)](
            steps=steps, tail=tail, t0=self.t, tag0=self.tag, first_step=int(self.undrawn), forced=self.forced,
            n_forced=self.forced_count, temps=self.temps, uniforms=draws, codes_out=codes, out_stride=steps + tail,
            ring=self.ring, ring_offsets=self.ring_offsets, code_ring=self.code_rings, k_in=len(self.in_offsets),
            terms=terms if terms is not None else self.temps, term_step=term_step, n_streams=self.batch,
            n_gate=self.gate, n_classes=self.model.config.classes, blocks=self.blocks, skips=self.skips, y1=self.y1,
            logits_w=self.logit_words, n_layers=len(self.layers), limit=0 if self.interpreted else POLL_LIMIT,
            error=self.error, kernel_taps=self.k, **self.w,
            Q=Q, H1=self.H1, BB=BB, RP=self.RP, GQ=self.GP // Q, PP=self.PP, SP=self.SP, SQ=SQ, AP=self.AP,
            CP=self.CP, CQ=CQ, KP=_pow2(len(self.in_offsets)), HAS_TERMS=terms is not None, num_warps=8,
        )  # fmt: skip
        if self.error.item():
            raise EngineUnavailable("the persistent kernel's programs did not all run at once (is the GPU busy?)")
        self.t, self.tag = self.t + steps, self.tag + steps
        self.undrawn = steps > 0  # the last step's logits are not drawn yet
        return codes

    # -- the step-wise engine calls ------------------------------------------------------------
    @torch.inference_mode()
    def logits(self) -> torch.Tensor:
        """The next step's logits (B, classes), computed by one launch of the kernel."""
        if self.cached is None:
            self._launch(1, 0, None)
            self.forced_count, words = 0, self.logit_words[: self.batch, : self.model.config.classes]
            self.cached = (words & 0xFFFFFFFF).to(torch.int32).view(torch.float32)
        return self.cached

    @torch.inference_mode()
    def append(self, codes: torch.Tensor) -> None:
        """The code of the step ``logits`` computed (B,): the next launch takes it instead of drawing."""
        if self.cached is None:
            self.logits()
        self.forced[: self.batch] = codes.to(self.device, torch.int32)
        self.forced_count, self.cached = 1, None

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

        ``draw_uniforms(n)`` gives the next n uniforms of every stream as (n, B) float64. Must
        follow ``reset`` directly (not the step-wise calls)."""
        self.temps[: self.batch] = temperature.to(self.device)
        out = torch.empty(self.batch, num_samples, dtype=torch.uint8) if out is None else out
        per_launch = 1 if self.interpreted else self.steps_per_launch
        if self.frame_blocks is not None:  # a launch's terms in at most MAX_TERM_BYTES
            per_launch = min(per_launch, max(1, MAX_TERM_BYTES // (8 * len(self.layers) * self.batch * self.gate)))
        done, computed = 0, 0  # codes drawn, steps computed

        def take(codes: torch.Tensor, count: int) -> None:  # the last `count` columns
            nonlocal done
            out[:, done : done + count] = codes[: self.batch, codes.shape[1] - count :].to("cpu", torch.uint8)
            done += count
            if progress:
                progress(count)

        while computed < num_samples:
            steps = min(per_launch, num_samples - computed)
            count = steps - (0 if self.undrawn else 1)  # no draw before a generation's first step
            codes = self._launch(steps, 0, draw_uniforms(count) if count else None)
            if count:
                take(codes, count)
            computed += steps
        if num_samples:  # the last logits, in a launch of their own (see kernel.py)
            take(self._launch(0, 1, draw_uniforms(1)), 1)
        self.undrawn = False
        return out


__all__ = ["PersistentEngine", "EngineUnavailable"]
