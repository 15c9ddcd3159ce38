"""The field's standard WaveNet, as a yardstick: what ``bench --learn`` measures wavegen against.

This is the network and training diet of the best-known PyTorch WaveNet trainer
(r9y9/wavenet_vocoder), written here from its published description, so that every change to
wavegen's network or training is judged against the field's usual choices on the same data:

- every convolution is weight-normalised (Salimans & Kingma 2016), its direction initialised
  Kaiming-normal for ReLU (He et al. 2015) and its bias at zero;
- the input layer is a 1×1 convolution on the one-hot codes of the *previous* sample (the
  window is shifted right by one), so output t never sees code t;
- each residual sum is scaled by √0.5, and the sum of the skips by √(1/layers);
- gated tanh·sigmoid units, ReLU → 1×1 → ReLU → 1×1 head, a 256-way softmax;
- training windows of ``segment`` codes with the loss on *every* position: early positions
  see zero padding (an all-zero one-hot) where the window has no past, as in the peer's
  training; no input noise.

    codes (B, T) ─shift by 1, one-hot─▶ 1×1 conv ─▶ x (B, R, T)
    block d:  x ─▶ pad (k-1)·d ─▶ conv k, d ─▶ tanh·sigmoid ─▶ z (B, G, T)
              x' = (x + 1×1(z)) · √0.5        skip += 1×1(z) (B, S, T)
    skip · √(1/L) ─▶ ReLU ─▶ 1×1 ─▶ ReLU ─▶ 1×1 ─▶ logits (B, 256, T)

Left out on purpose: the peer's dropout on block inputs (p = 0.05) and its moving average of
the weights, which the comparison's description of the peer does not include.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from ..config import ModelConfig
from .network import receptive_field


def standard_conv(in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1) -> nn.Conv1d:
    """A weight-normalised convolution with Kaiming-normal (ReLU) directions and zero bias."""
    conv = nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation)
    nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
    nn.init.zeros_(conv.bias)
    return weight_norm(conv)


class StandardBlock(nn.Module):
    """Padded dilated conv → tanh·sigmoid → (x + 1×1) · √0.5 and a skip 1×1."""

    def __init__(self, residual: int, gate: int, skip: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.pad = (kernel_size - 1) * dilation
        self.conv = standard_conv(residual, 2 * gate, kernel_size, dilation)
        self.out = standard_conv(gate, residual)
        self.skip = standard_conv(gate, skip)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, R, T) → (next input (B, R, T), skip (B, S, T))."""
        filt, gate = self.conv(F.pad(x, (self.pad, 0))).chunk(2, dim=1)  # (B, G, T) each
        z = torch.tanh(filt) * torch.sigmoid(gate)
        return (x + self.out(z)) * math.sqrt(0.5), self.skip(z)


class StandardWaveNet(nn.Module):
    """The field's standard WaveNet of a wavegen model shape (unconditioned).

    ``forward(codes, output_from)`` has ``WaveNet``'s contract: logits at t predict code t from
    the codes before it, so the same windows, targets and scoring (``evaluate.validation_bits``)
    serve both. ``config.input_kernel_size`` is not used: the input layer is 1×1 on the
    previous code, as in the peer.
    """

    conditioned = False

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.labels or config.mel_channels:
            raise ValueError("the standard WaveNet baseline is unconditioned")
        c = config
        self.config = config
        self.dilations = [2**i for _ in range(c.cycles) for i in range(c.layers_per_cycle)]
        self.input = standard_conv(c.classes, c.residual_channels)
        self.blocks = nn.ModuleList(
            StandardBlock(c.residual_channels, c.gate_channels, c.skip_channels, c.kernel_size, d)
            for d in self.dilations
        )
        self.head = nn.Sequential(
            nn.ReLU(),
            standard_conv(c.skip_channels, c.skip_channels),
            nn.ReLU(),
            standard_conv(c.skip_channels, c.classes),
        )

    @property
    def receptive_field(self) -> int:
        """Past codes the logits at t depend on: t-1 from the input layer, then each block's reach."""
        return receptive_field(self.config) - self.config.input_kernel_size + 1

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, codes: torch.Tensor, output_from: int = 0, cond=None, recompute: bool = False) -> torch.Tensor:
        """Logits (B, classes, T - output_from) for codes (B, T)."""
        onehot = F.one_hot(codes, self.config.classes).transpose(1, 2).float()  # (B, classes, T)
        x = self.input(F.pad(onehot, (1, -1)))  # (B, R, T): position t reads code t-1 (zeros before the window)
        x, skips = self.blocks[0](x)  # the sum of every block's skip, (B, S, T)
        for block in self.blocks[1:]:
            x, skip = block(x)
            skips = skips + skip
        skips = skips[..., output_from:] * math.sqrt(1.0 / len(self.blocks))  # (B, S, T - output_from)
        return self.head(skips)
