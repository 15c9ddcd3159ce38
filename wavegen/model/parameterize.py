"""How the stack is initialised and parameterised: He-normal weights, weight norm, and the
standard network's scaled sums folded into fixed factors on plain weights (``parameterize``)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm


class Scaled(nn.Module):
    """A parametrization: a fixed factor on a weight or bias (not a parameter, not saved)."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, value: torch.Tensor) -> torch.Tensor:
        return value * self.factor

    def right_inverse(self, value: torch.Tensor) -> torch.Tensor:
        """What to store for ``value`` to be read back (``conv.weight = w`` sets the plain weight)."""
        return value / self.factor


def _scale(module: nn.Module, factor: float, names: tuple[str, ...] = ("weight", "bias")) -> None:
    for name in names:
        if factor != 1.0:
            parametrize.register_parametrization(module, name, Scaled(factor))


def _convolutions(model: nn.Module) -> list[nn.Conv1d]:
    """The stack's convolutions: input layer, each block's dilated conv, residual and skip 1×1,
    and the head's two 1×1 (the conditioner keeps its own)."""
    convs = [model.input]
    for block in model.blocks:
        convs += [block.conv, block.residual, block.skip]
    return convs + [layer for layer in model.head if isinstance(layer, nn.Conv1d)]


def parameterize(model: nn.Module) -> None:
    """(``model``: a ``network.WaveNet``.) Initialise and parameterise the stack as ``model.config`` says (``init``,
    ``weight_norm``, ``scale_sums``), keeping the function it computes a plain stack.

    ``scale_sums`` makes training follow the field's standard network, where each block
    returns ``x_{l+1} = c·(x_l + R_l z_l + r_l)`` (c = √0.5, block l = 0, 1, ...) and the head
    reads ``√(1/L)·Σ skips``. Written for x'_l = x_l / c^l that network is this stack, with
    its weights read through fixed factors:

        dilated conv l:     W'_l = c^l · W_l          (it reads x_l = c^l · x'_l)
        residual 1×1 l:     R'_l, r'_l = (R_l, r_l) / c^l
        skip 1×1 (every l): S'_l, s'_l = √(1/L) · (S_l, s_l)

    The parameters (and so the gradients and Adam's steps) are the standard network's; the
    factors sit in parametrizations, so ``conv.weight`` and every sampling engine that reads
    it see the plain stack's weights and need no scaling of their own.
    """
    c = model.config
    if c.init == "kaiming":  # He-normal for the ReLU-like gains of the stack, zero biases
        for conv in _convolutions(model):
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            nn.init.zeros_(conv.bias)
    if c.weight_norm:
        for conv in _convolutions(model):
            weight_norm(conv)
    if c.scale_sums:
        half = math.sqrt(0.5)
        for index, block in enumerate(model.blocks):
            _scale(block.conv, half**index, ("weight",))
            _scale(block.residual, half**-index)
            _scale(block.skip, math.sqrt(1.0 / len(model.blocks)))


def plain_copy(model: nn.Module) -> nn.Module:
    """(``model``: a ``network.WaveNet``.) A float32 copy computing the same function with plain
    weights: the parametrizations applied and removed, so ``conv.weight`` is a parameter that
    can be rounded or quantised in place. In eval mode, on ``model``'s device."""
    plain = type(model)(model.config)  # a fresh copy: a deep copy keeps the parametrized classes
    for module in plain.modules():
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations.keys()):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    plain.load_state_dict({key: value.float() for key, value in model.plain_state_dict().items()})
    return plain.to(next(model.parameters()).device).eval()
