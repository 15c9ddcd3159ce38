"""Sampling at a lower precision: the native engine's weights stored as bf16, or as int8 with
integer dot products (``int8``), and what each precision computes, for scoring and tests.

The native engine (``native/``) runs at one of ``PRECISIONS``:

- ``fp32``: the network as trained.
- ``bf16``: every matrix (``matrices``) rounded to bf16 and read as such; the arithmetic is the
  fp32 engine's. Its reference is ``bf16_model``: a float32 copy with those weights rounded.
- ``int8``: every matrix quantised per output channel, every activation per step, the products
  on integers: ``int8.Int8WaveNet`` computes it exactly.

``at_precision`` gives the network as the engine computes it at a precision, with WaveNet's
``forward``, so that ``wavegen eval`` scores what a precision costs, teacher-forced.
"""

from __future__ import annotations

import torch

from ..model.network import WaveNet
from ..model.parameterize import plain_copy
from .int8 import Int8WaveNet
from .request import PRECISIONS


def check_precision(precision: str) -> str:
    """``precision`` if it is one of PRECISIONS; else ValueError naming the choices."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})")
    return precision


def matrices(model: WaveNet) -> list[torch.nn.Conv1d]:
    """The layers whose weights a lower precision stores: every residual layer's dilated conv,
    residual and skip 1×1s, then the head's two 1×1s."""
    layers = [layer for block in model.blocks for layer in (block.conv, block.residual, block.skip)]
    return layers + [model.head[1], model.head[3]]


def bf16_model(model: WaveNet) -> WaveNet:
    """A copy of ``model`` whose ``matrices`` are rounded to bf16 (to nearest, ties to even) and
    held as float32: what the native engine computes with at ``bf16``. The input layer, the
    biases and the conditioning stay float32."""
    rounded = plain_copy(model)
    with torch.no_grad():
        for layer in matrices(rounded):
            layer.weight.copy_(layer.weight.to(torch.bfloat16).float())
    return rounded


def at_precision(model: WaveNet, precision: str):
    """The network as the native engine computes it at ``precision``, for teacher-forced
    scoring: an object with WaveNet's ``forward(codes, output_from=0, cond=None)`` (logits
    (B, classes, T - output_from)) and its attributes. fp32: ``model`` itself."""
    check_precision(precision)
    if precision == "fp32":
        return model
    if precision == "bf16":
        return bf16_model(model)
    return Int8WaveNet(model)
