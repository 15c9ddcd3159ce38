"""int8 sampling's arithmetic: weights quantised per output channel, activations per step and
stream, products on integers. ``Int8WaveNet`` computes, in parallel over time, exactly what the
native engine computes one step at a time at ``--precision int8`` (its logits equal the engine's
bit for bit, so a generation draws the same codes); ``EngineTerms`` gives a conditioning's terms
in the engine's arithmetic.

The int8 arithmetic, exactly (every ``·`` and ``+`` one float32 operation, rounded to nearest,
never fused into a multiply-add):

    weights W (K, N), per output column c:  w_c = max_k |W_kc| / 127,  Q_kc = round(W_kc / w_c)
    an activation row x (n values):         a = max_i |x_i|,  s = a / 127,
                                            q_i = clamp(round(x_i · (127 / a)), -127, 127)
                                            (a = 0: s = 0, q = 0), round half to even
    a product with a start value:           y_c = start_c + float(Σ_k q_k Q_kc) · (s · w_c)

    input layer  h = ((in_bias + row_0) + row_1) …        rows of the input table (float32)
    layer l      a = conv_bias;  for each tap i (oldest first, reading h(t - (k-1-i)·d)):
                     a = a + float(q_i · Q_i) · (s_i · w)  — one row quantisation per h(t)
                 pre = a (+ conditioning term);  z = tanh(f) · sigmoid(g) by ``gated``
                 (z quantised once)  h = h + (res_bias + P_res);  skip = skip + P_skip
    head         s = relu(skip + Σ skip biases);  u = relu(b1 + P_1(s));  logits = b2 + P_2(u)

The integer sums are exact in any order (|Σ| < 2^24 for K ≤ 1040), which is what lets float32
matrix products stand for them here and AVX2, AVX-VNNI and plain C++ compute the same numbers.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..model.network import WaveNet
from ..model.parameterize import plain_copy
from .state import silence
from .terms import FrameBlocks, TermParts

QMAX = 127  # symmetric int8: -127 .. 127 (no -128, so |q·Q| ≤ 127² and AVX2's pairwise i16 sums cannot saturate)
EXACT_K = 2**24 // QMAX**2  # the longest dot product whose integer sums a float32 product holds exactly


def quantize_weight(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A conv weight (N, K, taps) → integer values Q (taps, K, N) as float32 and scales w (N,)
    float32, per output channel: w = max |W| / 127, Q = round(W / w) (a zero channel: 0, 0)."""
    w = weight.detach().float().cpu().double()
    amax = w.abs().amax(dim=(1, 2))  # (N,)
    scale = (amax / QMAX).float()
    safe = torch.where(scale > 0, scale.double(), torch.ones_like(amax))
    q = torch.round(w / safe[:, None, None]).clamp(-QMAX, QMAX)
    return q.permute(2, 1, 0).float().contiguous(), scale  # (taps, K, N), (N,)


def quantize_rows(x: torch.Tensor, dim: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row symmetric int8 of float32 ``x`` along ``dim`` (the channels): integer values q
    (float32, same shape) and scales s (``x`` without ``dim``), as the module docstring says."""
    amax = x.abs().amax(dim=dim, keepdim=True)
    scale = amax / torch.tensor(QMAX, dtype=torch.float32)
    inv = torch.where(amax > 0, torch.tensor(QMAX, dtype=torch.float32) / amax, torch.zeros_like(amax))
    q = torch.round(x * inv).clamp_(-QMAX, QMAX)  # torch.round: half to even, as the CPU rounds
    return q, scale.squeeze(dim)


def tanh_ratio(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """tanh(x) = p / q, the rational approximation of the native engine (Eigen's float
    coefficients, within 3e-7 of tanh), evaluated operation for operation as it does."""
    c = [torch.tensor(v, dtype=torch.float32) for v in _TANH]
    lim = torch.tensor(7.90531110763549805, dtype=torch.float32)
    x = torch.minimum(torch.maximum(x, -lim), lim)
    x2 = x * x
    p = (x2 * c[0]).add_(c[1])  # in place where it can be: the same operations, less memory traffic
    for k in c[2:7]:
        p.mul_(x2).add_(k)
    p.mul_(x)
    q = (x2 * c[7]).add_(c[8])
    q.mul_(x2).add_(c[9])
    q.mul_(x2).add_(c[10])
    return p, q


_TANH = (
    -2.76076847742355e-16,
    2.00018790482477e-13,
    -8.60467152213735e-11,
    5.12229709037114e-08,
    1.48572235717979e-05,
    6.37261928875436e-04,
    4.89352455891786e-03,
    1.19825839466702e-06,
    1.18534705686654e-04,
    2.26843463243900e-03,
    4.89352518554385e-03,
)


def gated(pre: torch.Tensor) -> torch.Tensor:
    """tanh(f) · sigmoid(g) of (B, 2G, T) → (B, G, T), as the native engine computes it:
    sigmoid(g) = (1 + tanh(g/2)) / 2, both ratios sharing one division."""
    f, g = pre.chunk(2, dim=1)
    pf, qf = tanh_ratio(f)
    pg, qg = tanh_ratio(g * torch.tensor(0.5, dtype=torch.float32))
    return pf.mul_(pg.add_(qg)).div_(qf.mul_(qg).mul_(torch.tensor(2.0, dtype=torch.float32)))


def _product(q: torch.Tensor, s: torch.Tensor, Q: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """float(q · Q) · (s · w): q (B, K, T) integer values, s (B, T), Q (K, N), w (N,) → (B, N, T)."""
    exact = torch.float32 if Q.shape[0] <= EXACT_K else torch.float64
    dots = torch.einsum("bkt,kn->bnt", q.to(exact), Q.to(exact)).float()  # exact integers
    return dots.mul_(s[:, None, :] * w[None, :, None])


def _shift(x: torch.Tensor, by: int) -> torch.Tensor:
    """x (..., T) delayed by ``by`` steps, zeros before its start."""
    return F.pad(x, (by, 0))[..., : x.shape[-1]] if by else x


class Int8WaveNet:
    """The network as the native engine computes it at ``int8``: WaveNet's ``forward``, parallel
    over time, and its attributes (read from the float32 model it was made from)."""

    def __init__(self, model: WaveNet) -> None:
        self.model = plain_copy(model)
        self.blocks_q = []
        for block in self.model.blocks:
            conv, res, skip = (quantize_weight(m.weight) for m in (block.conv, block.residual, block.skip))
            self.blocks_q.append((conv, (res[0][0], res[1]), (skip[0][0], skip[1])))
        self.head_q = [(q[0], w) for q, w in (quantize_weight(self.model.head[i].weight) for i in (1, 3))]
        skip_bias = np.zeros(self.model.config.skip_channels, np.float32)
        for block in self.model.blocks:  # summed in layer order, as the native engine's packing does
            skip_bias += block.skip.bias.detach().float().cpu().numpy()
        self.skip_bias = torch.from_numpy(skip_bias)

    def __getattr__(self, name: str):  # config, receptive_field, conditioner, conditioned, blocks ...
        return getattr(self.__dict__["model"], name)

    def to(self, device: torch.device | str) -> Int8WaveNet:
        if torch.device(device).type != "cpu":
            raise ValueError("the int8 reference runs on the CPU (its float32 products must not use TF32)")
        return self

    def eval(self) -> Int8WaveNet:
        return self

    def __call__(self, codes: torch.Tensor, output_from: int = 0, cond=None) -> torch.Tensor:
        return self.forward(codes, output_from, cond)

    @torch.inference_mode()
    def forward(self, codes: torch.Tensor, output_from: int = 0, cond=None, block_inputs: list | None = None):
        """Logits (B, classes, T - output_from) for codes (B, T); ``cond`` as WaveNet's (terms
        added to each layer's conv sums, (B, 2G, T or 1)); ``block_inputs``: every residual
        block's input h (B, R, T) is appended to it."""
        if self.model.conditioned and cond is None:
            raise ValueError("this model is conditioned: pass cond (labels and/or mel features)")
        h = self._input(codes.cpu())
        skip = None
        for index, (block, (conv, res, skip_w)) in enumerate(zip(self.model.blocks, self.blocks_q)):
            if block_inputs is not None:
                block_inputs.append(h)
            q, s = quantize_rows(h)  # (B, R, T), (B, T)
            taps = conv[0].shape[0]
            a = block.conv.bias.detach().float()[None, :, None]
            for i in range(taps):
                by = (taps - 1 - i) * block.dilation
                a = a + _product(_shift(q, by), _shift(s, by), conv[0][i], conv[1])
            if cond is not None:
                a = a + cond.layer(index).float().cpu()
            z = gated(a)  # (B, G, T)
            qz, sz = quantize_rows(z)
            h = h + (block.residual.bias.detach().float()[None, :, None] + _product(qz, sz, *res))
            term = _product(qz[..., output_from:], sz[..., output_from:], *skip_w)
            skip = term if skip is None else skip + term
        head1, head2 = self.model.head[1], self.model.head[3]
        x = torch.relu(skip + self.skip_bias[None, :, None])
        x = torch.relu(head1.bias.detach().float()[None, :, None] + _product(*quantize_rows(x), *self.head_q[0]))
        return head2.bias.detach().float()[None, :, None] + _product(*quantize_rows(x), *self.head_q[1])

    @torch.inference_mode()
    def past_block_inputs(
        self, batch: int, history: torch.Tensor | None, terms: Callable[[int, int], EngineTerms] | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``state.past_block_inputs`` at int8: the codes before the first sample (b, P) and
        every block's input over the last (k-1)·d of them (b, R, (k-1)·d). ``terms(start,
        count)``: a conditioned model's terms of those times (``EngineTerms``); the past is at
        times -P .. -1. b is 1 when every stream has the same past."""
        rf = self.model.receptive_field
        if history is not None:
            history = history[:, -rf:].cpu().long()
            if torch.equal(history, history[:1].expand_as(history)):
                history = history[:1]
        past = silence(1 if history is None else history.shape[0], rf)
        if history is not None:
            past = torch.cat([past, history], 1)
        if terms is not None:
            past = past.expand(batch, -1)
        inputs: list[torch.Tensor] = []
        cond = None if terms is None else terms(-past.shape[1], past.shape[1])
        self.forward(past, output_from=past.shape[1] - 1, cond=cond, block_inputs=inputs)
        k = self.model.config.kernel_size
        return past, [x[:, :, x.shape[2] - (k - 1) * b.dilation :] for x, b in zip(inputs, self.model.blocks)]

    def _input(self, codes: torch.Tensor) -> torch.Tensor:
        """The type-A input layer as the engine adds it: bias, then tap 0's row, tap 1's …: (B, R, T)."""
        layer = self.model.input
        h = layer.bias.detach().float()[None, :, None].expand(codes.shape[0], -1, codes.shape[1])
        for tap, offset in enumerate(layer.tap_offsets()):
            rows = F.embedding(codes, layer.weight.detach().float()[:, :, tap].t()).transpose(1, 2)  # (B, R, T)
            h = h + _shift(rows, offset)  # before the start: + 0, the zero padding
        return h


class EngineTerms:
    """A conditioning's terms for times ``start .. start + count - 1`` in the native engine's
    int8 arithmetic (a ``LayerTerms``): the mel part upsampled per step as the engine does it,
    ``((k0·F(f-1) + k1·F(f)) + k2·F(f+1)) + fixed`` with every operation rounded alone, from frame
    rows made by a ``FrameBlocks`` of the engine's own layout (``width`` floats per stream and
    row, blocks of at most ``max_frames``), so that every F(g) is the very number the engine
    reads. Labels alone: the label term, (B, 2G, 1)."""

    def __init__(self, conditioning, start: int, count: int, width: int, max_frames: int) -> None:

        parts = TermParts(conditioning)
        self.fixed = None if parts.fixed is None else parts.fixed.float().cpu()  # (B, L, 2G)
        self.mel: torch.Tensor | None = None
        if parts.kernel is None:  # labels alone: no mel features, no kernel
            return
        blocks = FrameBlocks(parts, lambda frames: frames.float().cpu(), width, max_frames=max_frames)
        kernel, chunks, t = parts.kernel.cpu(), [], start
        while t < start + count:
            block, first, serves = blocks.at(t)  # (B, rows, L, 2G)
            n = min(serves, start + count - t)
            times = torch.arange(t, t + n)
            frame = torch.div(times, parts.hop, rounding_mode="floor")
            j, row = times - frame * parts.hop, frame - 1 - first  # row of F(f-1)
            k = [kernel[q, j][None, :, None, None] for q in range(3)]
            chunks.append((block[:, row] * k[0] + block[:, row + 1] * k[1]) + block[:, row + 2] * k[2])
            t += n
        self.mel = torch.cat(chunks, dim=1)  # (B, count, L, 2G)

    def layer(self, index: int) -> torch.Tensor:
        if self.mel is None:
            assert self.fixed is not None  # a conditioning without mels has labels
            return self.fixed[:, index, :, None]  # (B, 2G, 1)
        term = self.mel[:, :, index].transpose(1, 2)  # (B, 2G, count)
        return term if self.fixed is None else term + self.fixed[:, index, :, None]
