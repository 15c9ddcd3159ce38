"""Sampling at a lower precision: weights stored as bf16, or as int8 with integer dot products.

STUB (the contract; the int8 arithmetic follows).
"""

from __future__ import annotations

import torch
from torch.nn.utils import parametrize

from ..model.network import WaveNet

PRECISIONS = ("fp32", "bf16", "int8")


def check_precision(precision: str) -> str:
    """``precision`` if it is one of PRECISIONS; else ValueError naming the choices."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})")
    return precision


def bf16_model(model: WaveNet) -> WaveNet:
    """A copy of ``model`` whose matrices (residual layers' convolutions, residual and skip 1×1s,
    the head) are rounded to bf16 and held as float32: what the native engine computes with at
    ``bf16``. The input layer, the biases and the conditioning stay float32."""
    rounded = plain_copy(model)
    with torch.no_grad():
        for layer in matrices(rounded):
            layer.weight.copy_(layer.weight.to(torch.bfloat16).float())
    return rounded


def plain_copy(model: WaveNet) -> WaveNet:
    """A float32 copy of ``model`` with its parametrizations applied and removed (plain weights)."""
    plain = WaveNet(model.config)  # a fresh copy: a deep copy keeps the parametrized classes
    for module in plain.modules():
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations.keys()):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    plain.load_state_dict({key: value.float() for key, value in model.plain_state_dict().items()})
    return plain.to(next(model.parameters()).device).eval()


def matrices(model: WaveNet) -> list[torch.nn.Conv1d]:
    """The layers whose weights a lower precision stores: every residual layer's dilated conv,
    residual and skip 1×1s, then the head's two 1×1s."""
    layers = [layer for block in model.blocks for layer in (block.conv, block.residual, block.skip)]
    return layers + [model.head[1], model.head[3]]


def at_precision(model: WaveNet, precision: str):
    """The network as the native engine computes it at ``precision``, for teacher-forced
    scoring: an object with WaveNet's ``forward(codes, output_from=0, cond=None)`` (logits
    (B, classes, T - output_from)) and its attributes. fp32: ``model`` itself."""
    check_precision(precision)
    if precision == "fp32":
        return model
    if precision == "bf16":
        return bf16_model(model)
    raise NotImplementedError("int8: not yet")
