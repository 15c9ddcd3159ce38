"""The moving average of the weights (``train.ema``), updated on the device.

What validation scores, ``best.pt`` keeps and ``synth`` plays: an exponential moving average
of the trained weights, with a warm-up (``decay_at``). The update is a handful of foreach
kernels whose decay, update count and skip decision are device tensors, so a training step
never waits for the GPU to read them and the update can be captured in a CUDA graph.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def decay_at(updates: torch.Tensor, decay: float) -> torch.Tensor:
    """The decay of the update after ``updates`` earlier ones (a float64 tensor):
    ``min(decay, (1 + n) / (10 + n))``, as TensorFlow's ExponentialMovingAverage does with
    ``num_updates``. The average follows the weights of a young run instead of holding on to
    its first steps (with 0.999 from the start, a run of 500 steps would still be 60 % its
    initial weights) and reaches ``decay`` after ~9000 updates."""
    return torch.clamp((1 + updates) / (10 + updates), max=decay)


class MovingAverage:
    """A copy of a model (``module``) whose parameters and buffers follow the model's.

    ``updates`` (a float64 device tensor) counts the updates made; the first one copies the
    weights, each later one moves the average by ``1 - decay_at(updates)`` towards them.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(model)
        self.module.requires_grad_(False)
        self.decay = decay
        device = next(model.parameters()).device
        self.updates = torch.zeros((), dtype=torch.float64, device=device)
        self._averaged = [*self.module.parameters(), *self.module.buffers()]

    @torch.no_grad()
    def update(self, model: nn.Module, keep: torch.Tensor | None = None) -> None:
        """Move the average towards ``model``'s weights, unless ``keep`` (a 0-dim device
        tensor, 1 or 0) is 0: a skipped step, which leaves the average and its count as they
        were. Launches a few kernels and reads nothing back."""
        current = [*model.parameters(), *model.buffers()]
        first = self.updates == 0
        weight = torch.where(first, 1.0, 1.0 - decay_at(self.updates, self.decay))  # (the first update copies)
        if keep is not None:
            weight = weight * keep
            self.updates += keep
        else:
            self.updates += 1
        step = torch._foreach_sub(current, self._averaged)
        torch._foreach_mul_(step, weight.float())
        torch._foreach_add_(self._averaged, step)

    @property
    def count(self) -> int:
        """The number of updates made (reads the device)."""
        return int(self.updates.item())

    def load(self, state: dict, updates: int) -> None:
        """Set the average to ``state`` (a state dict of the model) after ``updates`` updates."""
        self.module.load_state_dict(state)
        self.updates.fill_(updates)
