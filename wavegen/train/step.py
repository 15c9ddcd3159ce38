"""What a training step leaves on the device: its loss and gradient norm, and the running
figures the loop reads only when it logs (``StepStats``).

A step never reads the device: on a GPU every read waits for all the work queued before it,
so the host could never run ahead, and a step that reads cannot be captured in a CUDA graph.
The decision to skip a step (a non-finite loss or gradient norm) is a device tensor too:
Adam's fused update and the moving average take it as an input (``found_inf``, ``keep``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .ema import MovingAverage


class StepResult(NamedTuple):
    """One step's figures, 0-dim device tensors: the loss in bits (averaged over the
    micro-batches and processes) and the gradient norm before clipping."""

    bits: torch.Tensor
    norm: torch.Tensor


class Figures(NamedTuple):
    """``StepStats`` read back: the last step's loss and norm, the mean of the finite losses
    since the last read (None if none was finite), skipped steps in all and in a row."""

    bits: float
    norm: float
    mean_bits: float | None
    skipped: int
    in_a_row: int


class StepStats:
    """Running figures of the steps, kept in one float64 device tensor and updated with a few
    small kernels a step (exact as counts up to 2**53 steps)."""

    _BITS, _NORM, _SUM, _COUNT, _SKIPPED, _IN_A_ROW = range(6)

    def __init__(self, device: torch.device) -> None:
        self.values = torch.zeros(6, dtype=torch.float64, device=device)

    def record(self, result: StepResult, bad: torch.Tensor) -> None:
        """Add a step: ``bad`` (a 0-dim bool tensor) says it was skipped."""
        v, bits = self.values, result.bits.detach().double()
        finite = torch.isfinite(bits)
        bad = bad.double()
        new = torch.stack(
            [
                bits,
                result.norm.detach().double(),
                v[self._SUM] + torch.where(finite, bits, 0.0),
                v[self._COUNT] + finite.double(),
                v[self._SKIPPED] + bad,
                (v[self._IN_A_ROW] + bad) * bad,
            ]
        )
        v.copy_(new)

    def read(self) -> Figures:
        """The figures (one read of the device), and start a new interval for the mean."""
        bits, norm, total, count, skipped, in_a_row = self.values.tolist()
        self.values[self._SUM : self._COUNT + 1] = 0.0
        return Figures(bits, norm, total / count if count else None, int(skipped), int(in_a_row))

    def set_counts(self, skipped: int, in_a_row: int = 0) -> None:
        """Start from a resumed run's counts."""
        self.values[self._SKIPPED] = skipped
        self.values[self._IN_A_ROW] = in_a_row


def clip_grad_norm(parameters: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Scale the gradients so that their total 2-norm is at most ``max_norm``; returns the norm
    before (a 0-dim device tensor, non-finite if a gradient is). The arithmetic of
    ``torch.nn.utils.clip_grad_norm_`` with foreach kernels, in four launches: its version
    also moves every per-tensor norm to one device, one call a parameter (~280 here)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    torch._foreach_mul_(grads, torch.clamp(max_norm / (norm + 1e-6), max=1.0))
    return norm


def fused_adam(parameters: list[torch.Tensor], lr: float) -> torch.optim.Adam:
    """Adam, fused: one kernel for every parameter, and it takes the decision to skip a step
    as a device tensor (``found_inf``), so that a step never reads the device."""
    return torch.optim.Adam(parameters, lr=lr, fused=True)


def keep_fused(optimizer: torch.optim.Adam) -> None:
    """``fused_adam`` as made, after loading a state: a checkpoint's groups carry the options of
    the Adam that wrote it (from before the fused one, too), and its step counts belong on the
    parameters' device, where the fused update keeps them."""
    for group in optimizer.param_groups:
        group.update(fused=True, foreach=None, capturable=False)
    for param, state in optimizer.state.items():
        if "step" in state:
            state["step"] = torch.as_tensor(state["step"], dtype=torch.float32).to(param.device)


def start_step(optimizer: torch.optim.Optimizer, lr: float | torch.Tensor) -> None:
    """Set the learning rate and clear the gradients, before a step's backward passes."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)


def finish_step(
    optimizer: torch.optim.Optimizer,
    model: torch.nn.Module,
    parameters: list[torch.Tensor],
    bits: torch.Tensor,
    grad_clip: float,
    ema: MovingAverage | None,
    stats: StepStats,
) -> StepResult:
    """Clip, Adam (``fused_adam``) and the moving average after a step's backward passes, the
    step skipped on the device where its loss ``bits`` or the gradient norm is not finite: a
    finite loss can still have an infinite gradient (an overflow in backward), and clipping then
    scales every gradient by 0 · inf = NaN, which the skipped update never reads."""
    norm = clip_grad_norm(parameters, grad_clip or float("inf"))
    bad = ~(torch.isfinite(bits) & torch.isfinite(norm))
    optimizer.found_inf = bad.float()  # fused Adam leaves a step with found_inf = 1 undone
    optimizer.step()
    if ema is not None:
        ema.update(model, keep=(~bad).float())
    result = StepResult(bits, norm)
    stats.record(result, bad)
    return result
