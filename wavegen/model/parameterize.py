"""How the stack is initialised and parameterised: He-normal weights, weight norm, and the
standard network's scaled sums folded into fixed factors on plain weights (``parameterize``),
and the blocks' weights computed for all blocks at once (``layer_weights``)."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import _WeightNorm, weight_norm


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


class LayerWeights(NamedTuple):
    """Every residual block's weights as a plain stack holds them, one list entry per block:
    ``conv`` (2G, R, k) and ``conv_bias`` (2G,), ``out`` (R + S, G, 1) and ``out_bias`` (R + S,),
    the residual and skip 1×1 weights one above the other."""

    conv: list[torch.Tensor]
    conv_bias: list[torch.Tensor]
    out: list[torch.Tensor]
    out_bias: list[torch.Tensor]


def layer_weights(model: nn.Module, dtype: torch.dtype | None = None) -> LayerWeights:
    """(``model``: a ``network.WaveNet``.) The blocks' weights, each kind computed for all
    blocks at once: weight norm over the stacked (L, out, in, k) directions in three kernels
    instead of three per layer, the fixed factors of ``scale_sums`` folded into its scale, and
    under autocast one cast of each stack to ``dtype`` (the matrices' arithmetic) instead of
    one per layer. Values equal ``conv.weight`` and the others' to rounding (the norm is
    reduced the same way, the factor multiplies the scale before the directions).

    On a GPU a training step otherwise spends most of its kernel launches (and their
    backward) on ~6 small per-layer tensors of each of its L blocks.
    """
    blocks = model.blocks
    conv = _stacked([b.conv for b in blocks], "weight", dtype)  # (L, 2G, R, k)
    conv_bias = _stacked([b.conv for b in blocks], "bias", dtype)  # (L, 2G)
    out = torch.cat(
        [_stacked([b.residual for b in blocks], "weight", dtype), _stacked([b.skip for b in blocks], "weight", dtype)],
        dim=1,
    )  # (L, R + S, G, 1)
    out_bias = torch.cat(
        [_stacked([b.residual for b in blocks], "bias", dtype), _stacked([b.skip for b in blocks], "bias", dtype)],
        dim=1,
    )  # (L, R + S)
    return LayerWeights(*(list(stack.unbind(0)) for stack in (conv, conv_bias, out, out_bias)))


def _stacked(modules: list[nn.Module], name: str, dtype: torch.dtype | None) -> torch.Tensor:
    """``getattr(m, name)`` of every module, stacked (L, ...), computed from the stacked
    originals of its parametrizations: weight norm (on all or none), then ``Scaled`` factors
    (block 0's factor is 1, which registers none)."""
    steps = [list(m.parametrizations[name]) if parametrize.is_parametrized(m, name) else [] for m in modules]
    normed = all(s and isinstance(s[0], _WeightNorm) for s in steps)
    rest = [s[1:] if normed else s for s in steps]
    if any(not isinstance(step, Scaled) for s in rest for step in s):  # (another layout: as the modules say)
        return _cast(torch.stack([getattr(m, name) for m in modules]), dtype)
    values = [math.prod(step.factor for step in s) for s in rest]
    if normed:  # w = g · v / ‖v‖, the norm over every dim but the parametrization's `dim`
        lists = [m.parametrizations[name] for m in modules]
        g = torch.stack([p.original0 for p in lists])  # (L, out, 1, 1)
        stack = torch.stack([p.original1 for p in lists])  # (L, out, in, k)
        dims = [d + 1 for d in range(stack.dim() - 1) if d != steps[0][0].dim]
        scale = g / torch.linalg.vector_norm(stack, dim=dims, keepdim=True)
        factors = _factors(modules[0], name, values, stack)
        return _cast(stack * (scale if factors is None else scale * factors), dtype)
    stack = torch.stack([m.parametrizations[name].original if s else getattr(m, name) for m, s in zip(modules, steps)])
    factors = _factors(modules[0], name, values, stack)
    return _cast(stack if factors is None else stack * factors, dtype)


def _cast(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    return tensor if dtype is None else tensor.to(dtype)


def _factors(owner: nn.Module, name: str, values: list[float], stack: torch.Tensor) -> torch.Tensor | None:
    """The factors ``values`` as an (L, 1, ...) tensor beside ``stack``, kept on ``owner`` from
    the first call (a new tensor every step would be copied from the host: a device sync)."""
    if all(v == 1.0 for v in values):
        return None
    key = (name, stack.device, stack.dim(), tuple(values))
    cache = owner.__dict__.setdefault("_stacked_factors", {})  # a plain attribute: not saved, not a buffer
    if key not in cache:
        with torch.inference_mode(False):  # (made in a sampler's inference mode, it could not train after)
            factors = torch.tensor(values, dtype=torch.float32, device=stack.device)
        cache[key] = factors.view(-1, *[1] * (stack.dim() - 1))
    return cache[key]
