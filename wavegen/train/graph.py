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

from typing import TYPE_CHECKING, Callable

import torch

from ..data.windows import Batch
from .step import StepResult

if TYPE_CHECKING:
    from .trainer import Trainer

WARMUP = 3  # eager steps on a side stream before capture


def plan(trainer: Trainer) -> str | None:
    """Why this run's step cannot be captured, in words (None: it can; no words on a CPU)."""
    t = trainer.config.train
    if trainer.device.type != "cuda":
        return ""
    if not t.cuda_graph:
        return "train.cuda_graph is off"
    if trainer.world.distributed:
        return "several processes (DDP synchronises them in its own hooks)"
    if t.compile:
        return "train.compile is on"
    return None


class GraphedStep:
    """Runs a step eagerly (``eager``: batches on the device and the learning rate) for
    ``WARMUP`` steps, then captures ``body`` (the step's work after the learning rate is set
    and the gradients cleared) and replays it."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        body: Callable[[list[Batch]], StepResult],
        eager: Callable[[list[Batch], float], StepResult],
        log: Callable[[str], None],
    ) -> None:
        self.optimizer, self.body, self._eager, self.log = optimizer, body, eager, log
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static: list[Batch] = []
        self.out: StepResult | None = None
        self.lr: torch.Tensor | None = None
        self.warm = 0
        self.failed = False

    def step(self, batches: list[Batch], lr: float) -> StepResult:
        """One training step on ``batches`` (on the device) at learning rate ``lr``."""
        if self.failed:
            return self._eager(batches, lr)
        if self.graph is not None and [b.inputs.shape for b in batches] != [b.inputs.shape for b in self.static]:
            self.graph, self.static, self.out, self.warm = None, [], None, 0  # another shape: capture it anew
        if self.graph is None and self.warm < WARMUP:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                result = self._eager(batches, lr)
            torch.cuda.current_stream().wait_stream(side)
            self.warm += 1
            return result
        if self.graph is None:
            try:
                self._capture(batches, lr)
            except Exception as exc:  # (whatever stops a capture: the step runs eagerly from here on)
                self._give_up(exc)
                return self._eager(batches, lr)
        for static, batch in zip(self.static, batches):
            for into, value in zip(static, batch):
                if isinstance(into, torch.Tensor) and into.device.type == "cuda":
                    into.copy_(value, non_blocking=True)
        self.lr.fill_(lr)
        self.graph.replay()
        return StepResult(self.out.bits.clone(), self.out.norm.clone())

    def _capture(self, batches: list[Batch], lr: float) -> None:
        """Record the step on static copies of ``batches``; the gradients and activations it
        allocates come from the graph's pool and stay there."""
        self.static = [Batch(*(v.clone() if isinstance(v, torch.Tensor) else v for v in b)) for b in batches]
        self.lr = torch.tensor(lr, dtype=torch.float32, device=self.static[0].inputs.device)
        for group in self.optimizer.param_groups:
            group.update(lr=self.lr, capturable=True)
        self.optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.out = self.body(self.static)
        self.graph = graph

    def _give_up(self, exc: Exception) -> None:
        self.failed, self.graph, self.static, self.out = True, None, [], None
        for group in self.optimizer.param_groups:
            group.update(lr=float(self.lr) if self.lr is not None else group["lr"], capturable=False)
        self.optimizer.zero_grad(set_to_none=True)
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        self.log(f"the training step could not be captured as a CUDA graph ({reason}); it runs eagerly")
