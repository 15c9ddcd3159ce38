"""The training step captured once as a CUDA graph and replayed every step after (on a GPU).

Eager PyTorch pays a few microseconds of host time for every operator a step runs (about
1,450 for the ``default`` recipe, forward, backward, clip, Adam and moving average), and a
GPU finishes most of them faster than the host issues them. A CUDA graph records the kernels
of one step once; each later step is one replay, so the GPU runs them back to back.

What a replay cannot change is fixed at capture: tensor addresses and every Python number.
So the step reads its batch from static buffers (``Trainer._on_device`` makes the batch, with
its input noise, outside the graph; it is copied in), the learning rate is a device tensor
filled before each replay, and nothing in the step reads the device (``step``). The first
``WARMUP`` steps run eagerly on a side stream, as CUDA's capture needs (cuBLAS workspaces,
Adam's state, the autograd engine's threads), and are real steps. After capture the graph's
memory pool holds the step's activations between steps.

Where capture cannot work (several processes, ``train.compile``) the step runs eagerly, and
the reason is said once (``plan``); a capture that fails says why in one line and the run goes
on eagerly.
"""

from __future__ import annotations

import logging
from typing import Callable, Protocol

import torch

from ..config import Config
from ..data.windows import Batch
from .step import StepResult

logger = logging.getLogger(__name__)

WARMUP = 3  # eager steps on a side stream before capture


def plan(config: Config, device: torch.device, distributed: bool) -> str | None:
    """Why a run's step cannot be captured, in words (None: it can; no words on a CPU)."""
    if device.type != "cuda":
        return ""
    if not config.train.cuda_graph:
        return "train.cuda_graph is off"
    if distributed:
        return "several processes (DDP synchronises them in its own hooks)"
    if config.train.compile:
        return "train.compile is on"
    return None


class Stepper(Protocol):
    """What ``GraphedStep`` runs: the optimizer, the eager step (batches on the device and the
    learning rate) and its body (the work after the rate is set and the gradients cleared)."""

    optimizer: torch.optim.Optimizer

    def eager_step(self, batches: list[Batch], lr: float) -> StepResult: ...

    def step_body(self, batches: list[Batch]) -> StepResult: ...


class GraphedStep:
    """Runs a ``Stepper``'s step eagerly for ``WARMUP`` steps, then captures its body and
    replays it. A batch of another shape is captured anew."""

    def __init__(self, stepper: Stepper) -> None:
        self.optimizer = stepper.optimizer
        self.body, self._eager = stepper.step_body, stepper.eager_step
        self.replay: Callable[[], None] | None = None  # the captured step (None: not captured)
        self.static: list[Batch] = []  # the batches it reads, each step's copied in
        self.out: StepResult | None = None  # what it writes
        self.lr: torch.Tensor | None = None  # the learning rate it reads
        self.warm = 0
        self.failed = False

    def step(self, batches: list[Batch], lr: float) -> StepResult:
        """One training step on ``batches`` (on the device) at learning rate ``lr``."""
        if self.failed:
            return self._eager(batches, lr)
        if self.replay is not None and [b.inputs.shape for b in batches] != [b.inputs.shape for b in self.static]:
            self._release()
        if self.replay is None and self.warm < WARMUP:
            self.warm += 1
            return self._warm_up(lambda: self._eager(batches, lr))
        if self.replay is None:
            try:
                self._capture(batches, lr)
            except Exception as exc:  # (whatever stops a capture: the step runs eagerly from here on)
                self._give_up(exc)
                return self._eager(batches, lr)
        for static, batch in zip(self.static, batches):
            for into, value in zip(static, batch):
                if isinstance(into, torch.Tensor):
                    into.copy_(value, non_blocking=True)
        assert self.replay is not None and self.lr is not None  # captured (above), with the rate it reads
        self.lr.fill_(lr)
        self.replay()
        assert self.out is not None  # the captured step's result, written by then
        return StepResult(self.out.bits.clone(), self.out.norm.clone())

    def _warm_up(self, work: Callable[[], StepResult]) -> StepResult:
        """An eager step on a side stream, as CUDA's capture needs before it."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            result = work()
        torch.cuda.current_stream().wait_stream(side)
        return result

    def _capture(self, batches: list[Batch], lr: float) -> None:
        """Record the step on static copies of ``batches``; the gradients and activations it
        allocates come from the graph's pool and stay there."""
        self.static = [Batch._make(v.clone() if isinstance(v, torch.Tensor) else v for v in b) for b in batches]
        self.lr = torch.tensor(lr, dtype=torch.float32, device=self.static[0].inputs.device)
        self._groups(lr=self.lr, capturable=True)
        self.optimizer.zero_grad(set_to_none=True)
        self.replay = self._record(lambda: self.body(self.static))

    def _record(self, work: Callable[[], StepResult]) -> Callable[[], None]:
        """Capture ``work`` (nothing runs) into ``out``; returns what replays it."""
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.out = work()
        return graph.replay

    def _groups(self, **options) -> None:
        for group in self.optimizer.param_groups:
            group.update(options)

    def _release(self) -> None:
        """Drop the captured step (its memory pool with it) and go back to eager steps."""
        assert self.lr is not None  # a capture sets its learning rate first
        self.replay, self.static, self.out, self.warm = None, [], None, 0
        self._groups(lr=float(self.lr), capturable=False)  # (one read of the device)
        self.optimizer.zero_grad(set_to_none=True)

    def _give_up(self, exc: Exception) -> None:
        self.failed = True
        if self.lr is not None:
            self._release()
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        logger.warning(f"the training step could not be captured as a CUDA graph ({reason}); it runs eagerly")
