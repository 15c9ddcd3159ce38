"""The WaveNet network: causal dilated convolutions, gated units, residual and skip paths.

This module is the network only. It holds no sampling state; ``sampling.py`` reads the weights
of a ``WaveNet`` and runs its own incremental step.

    codes (B, T) ──one-hot──▶ type-A causal conv (k_in taps, sees t-k_in .. t-1)
                                   │ x (B, R, T)
            ┌──────────────────────▼──────────────────────────────────┐
            │ residual block, dilation d (×cycles×layers_per_cycle)   │
            │   x ─▶ causal conv k, d (type B) ─▶ (B, 2G, T)          │
            │        tanh(a) · sigmoid(b) = z (B, G, T)               │
            │   x + 1×1(z) ─▶ next block      1×1(z) ─▶ skip (B, S, T) │
            └──────────────────────────────────────────────────────────┘
    Σ skips ─▶ ReLU ─▶ 1×1 (S→S) ─▶ ReLU ─▶ 1×1 (S→256) ─▶ logits (B, 256, T)

Logits at position t predict code t from codes t-RF .. t-1 only (RF = ``receptive_field``),
so training needs no shift between inputs and targets. A conditioned model adds a term per
layer to (B, 2G, T) before the gate: a label embedding and/or upsampled mel features
(``conditioning.py``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .conditioning import CONTEXT_FRAMES, Conditioner, LayerTerms
from .config import ModelConfig


class CausalConv1d(nn.Conv1d):
    """A 1-D convolution that only looks back in time (left padding, nothing on the right).

    ``mask_type="B"`` lets output t see the input at t; ``"A"`` shifts the kernel one dilation
    further back, so output t never sees input t (used by the first layer, on the codes being
    predicted). Example with kernel 2, dilation 2, input x0..x3, pad p = 0:

        type B: pad (k-1)·d = 2     p  p  x0 x1 x2 x3     y[t] = w0·x[t-2] + w1·x[t]
                                    └──┼──┘
                                       y0 ...
        type A: pad k·d = 4, drop the last d outputs
                              p  p  p  p  x0 x1 x2 x3     y[t] = w0·x[t-4] + w1·x[t-2]
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        dilation: int = 1,
        mask_type: str = "B",
    ) -> None:
        if mask_type not in ("A", "B"):
            raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation)
        self.mask_type = mask_type
        self.left_pad = kernel_size * dilation if mask_type == "A" else (kernel_size - 1) * dilation

    def tap_offsets(self) -> list[int]:
        """How far back in time ``weight[:, :, i]`` reads, for each tap i."""
        k, d = self.kernel_size[0], self.dilation[0]
        shift = 1 if self.mask_type == "A" else 0
        return [(k - 1 - i + shift) * d for i in range(k)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, T) -> (B, C_out, T)
        length = x.shape[-1]
        return super().forward(F.pad(x, (self.left_pad, 0)))[..., :length]


class ResidualBlock(nn.Module):
    """Dilated causal conv → gated tanh·sigmoid → residual 1×1 and skip 1×1."""

    def __init__(self, residual: int, gate: int, skip: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.dilation = dilation
        self.conv = CausalConv1d(residual, 2 * gate, kernel_size, dilation, mask_type="B")
        self.residual = nn.Conv1d(gate, residual, 1)
        self.skip = nn.Conv1d(gate, skip, 1)

    def forward(
        self, x: torch.Tensor, skip_from: int = 0, cond: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (next block's input (B, R, T), skip contribution (B, S, T - skip_from)).

        ``cond`` (B, 2G, T or 1) is added to the conv's output before the gate: the paper's
        V·h term of global and local conditioning.
        """
        pre = self.conv(x)  # (B, 2G, T)
        if cond is not None:
            pre = pre + cond
        filt, gate = pre.chunk(2, dim=1)  # (B, G, T) each
        z = torch.tanh(filt) * torch.sigmoid(gate)
        return x + self.residual(z), self.skip(z[..., skip_from:])


class WaveNet(nn.Module):
    """Autoregressive model of µ-law codes: ``forward(codes)`` gives logits for every position."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.input = CausalConv1d(c.classes, c.residual_channels, c.input_kernel_size, 1, "A")
        self.blocks = nn.ModuleList(
            ResidualBlock(c.residual_channels, c.gate_channels, c.skip_channels, c.kernel_size, d)
            for d in self.dilations
        )
        self.head = nn.Sequential(
            nn.ReLU(),
            nn.Conv1d(c.skip_channels, c.skip_channels, 1),
            nn.ReLU(),
            nn.Conv1d(c.skip_channels, c.classes, 1),
        )
        # Label embedding and mel network, when the config asks for conditioning.
        self.conditioner = Conditioner(c, len(self.blocks)) if c.labels or c.mel_channels else None

    @property
    def dilations(self) -> list[int]:
        c = self.config
        return [2**i for _ in range(c.cycles) for i in range(c.layers_per_cycle)]

    @property
    def receptive_field(self) -> int:
        """How many past samples the logits at t depend on: codes t-RF .. t-1."""
        k = self.config.kernel_size
        return self.config.input_kernel_size + sum((k - 1) * d for d in self.dilations)

    @property
    def mel_context(self) -> tuple[int, int]:
        """Mel frames before and after its own frame that a sample's logits can depend on:
        those of the positions its residual layers see, each widened by the mel network's
        ``CONTEXT_FRAMES``. (0, 0) without mel conditioning."""
        if not self.config.mel_channels:
            return 0, 0
        reach = self.receptive_field - self.config.input_kernel_size  # positions back that cond reaches from
        return -(-reach // self.config.mel_hop) + CONTEXT_FRAMES, CONTEXT_FRAMES

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def conditioned(self) -> bool:
        return self.conditioner is not None

    def forward(self, codes: torch.Tensor, output_from: int = 0, cond: LayerTerms | None = None) -> torch.Tensor:
        """Logits (B, classes, T - output_from) for codes (B, T).

        ``output_from`` skips the skip/head work for the first positions, which training only
        uses as context. ``cond`` gives each residual layer's conditioning term, aligned with
        ``codes`` (see ``conditioning.LayerTerms``); a conditioned model needs it.
        """
        onehot = F.one_hot(codes, self.config.classes).transpose(1, 2)  # (B, classes, T)
        return self.forward_onehot(onehot.to(self.input.weight.dtype), output_from, cond=cond)

    def forward_onehot(
        self,
        onehot: torch.Tensor,
        output_from: int = 0,
        block_inputs: list | None = None,
        cond: LayerTerms | None = None,
    ) -> torch.Tensor:
        """Same as ``forward`` on a float (B, classes, T) input, so gradients can flow to it.

        If ``block_inputs`` is a list, each residual block's input (B, R, T) is appended to it
        (the sampler uses these to start its caches from a given history).
        """
        if self.conditioned and cond is None:
            raise ValueError("this model is conditioned: pass cond (labels and/or mel features)")
        x = self.input(onehot)  # (B, R, T)
        skips = None
        for index, block in enumerate(self.blocks):
            if block_inputs is not None:
                block_inputs.append(x)
            x, skip = block(x, output_from, None if cond is None else cond.layer(index))
            skips = skip if skips is None else skips + skip
        return self.head(skips)  # (B, classes, T - output_from)
