"""Sampling at a lower precision: weights stored as bf16, or as int8 with integer dot products.

STUB (the contract; the int8 arithmetic follows).
"""

from __future__ import annotations

import copy

import torch

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
    rounded = copy.deepcopy(model).float()
    with torch.no_grad():
        for block in rounded.blocks:
            for layer in (block.conv, block.residual, block.skip):
                _round_weight(layer)
        for layer in (rounded.head[1], rounded.head[3]):
            _round_weight(layer)
    return rounded


def _round_weight(layer: torch.nn.Module) -> None:
    """Round ``layer.weight`` to bf16 in place (through a parametrization's original if any)."""
    weight = layer.weight.detach().to(torch.bfloat16).float()
    if hasattr(layer, "parametrizations") and "weight" in layer.parametrizations:
        torch.nn.utils.parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
    layer.weight.copy_(weight)


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
