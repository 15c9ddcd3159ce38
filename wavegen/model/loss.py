"""The loss a WaveNet is trained and scored on: the cross-entropy of each next sample's code,
in bits per sample (nats / ln 2), the unit every figure of wavegen's is in."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LN2 = math.log(2.0)
IGNORE = -100  # a target the loss skips (past the end of a file); F.cross_entropy's default


def bits(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of ``logits`` (B, classes, T) against ``targets`` (B, T) codes in bits,
    skipping ``IGNORE`` targets: the mean per sample, or with ``reduction="sum"`` the total.
    Computed in float32 whatever the logits' dtype (bf16 under autocast)."""
    return F.cross_entropy(logits.float(), targets, ignore_index=IGNORE, reduction=reduction) / LN2
