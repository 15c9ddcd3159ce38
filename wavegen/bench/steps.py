"""The implementations ``training`` steps in turn: a plain PyTorch step (``Contender``) and
wavegen's step as ``train`` runs it (``TrainStep``), each timed, counted and measured."""

from __future__ import annotations

import ctypes
import threading
import time

import torch
from torch import nn

from ..data.windows import Batch
from ..model import loss
from ..train import precision as precisions
from ..train.ema import MovingAverage
from ..train.graph import GraphedStep
from ..train.step import StepResult, StepStats, finish_step, fused_adam, start_step
from .ops import OpCount, count_ops


class PeakRss:
    """Peak resident memory of this process while the block runs, sampled every 2 ms (CPU).

    Freed memory is handed back to the system first (glibc ``malloc_trim``), so the peak
    reflects this step rather than what an earlier one left cached."""

    def __enter__(self) -> "PeakRss":
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:
            pass
        self.start = self.peak = self._rss()
        self._running = True
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._running = False
        self._thread.join()

    def _watch(self) -> None:
        while self._running:
            self.peak = max(self.peak, self._rss())
            time.sleep(0.002)

    @staticmethod
    def _rss() -> int:
        try:
            with open("/proc/self/statm") as handle:
                return int(handle.read().split()[1]) * 4096
        except OSError:  # not Linux: no measurement
            return 0


class Contender:
    """One implementation with its optimizer, stepping like ``train`` does."""

    graphed: GraphedStep | None = None  # its step captured as a CUDA graph (a TrainStep's, on a GPU)

    def __init__(
        self, name: str, model: nn.Module, forward, device: torch.device, precision: str, lr: float = 1e-4
    ) -> None:
        self.name, self.model, self.forward, self.device, self.precision = name, model, forward, device, precision
        self.optimizer = torch.optim.Adam(model.parameters(), lr=lr)

    def run(self, inputs: torch.Tensor, targets: torch.Tensor, output_from: int) -> None:
        self.eager(inputs, targets, output_from)

    def step(self, inputs: torch.Tensor, targets: torch.Tensor, output_from: int) -> float:
        """One optimizer step; returns its wall time (synchronised on CUDA)."""
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize()
        tick = time.perf_counter()
        self.run(inputs, targets, output_from)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - tick

    def ops(self, inputs: torch.Tensor, targets: torch.Tensor, output_from: int) -> OpCount:
        """The operator calls and host reads of one eager step (``bench.ops``)."""
        return count_ops(lambda: self.eager(inputs, targets, output_from))

    def eager(self, inputs: torch.Tensor, targets: torch.Tensor, output_from: int) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        with precisions.autocast(self.device, self.precision):
            logits = self.forward(inputs, output_from)  # (B, classes, segment)
        loss.bits(logits, targets).backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()

    def peak_memory(self, inputs: torch.Tensor, targets: torch.Tensor, output_from: int) -> int:
        """Bytes a step takes at its peak: the CUDA allocator's peak, or on a CPU how far the
        process's resident memory grows during the step (an untimed step: watching costs)."""
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            self.step(inputs, targets, output_from)
            return torch.cuda.max_memory_allocated()
        with PeakRss() as rss:
            self.step(inputs, targets, output_from)
        return rss.peak - rss.start


class TrainStep(Contender):
    """wavegen's step as ``train`` runs it (``train.trainer``): fused Adam that skips a
    non-finite step on the device, the moving average, the figures kept on the device, and on
    a GPU the step captured as a CUDA graph after its first steps (``train.graph``)."""

    def __init__(self, name: str, model: nn.Module, forward, device: torch.device, precision: str, graph: bool) -> None:
        super().__init__(name, model, forward, device, precision)
        self.parameters = list(model.parameters())
        self.optimizer = fused_adam(self.parameters, 1e-4)
        self.ema, self.stats, self.start = MovingAverage(model, 0.999), StepStats(device), 0
        self.graphed = GraphedStep(self) if graph else None

    def eager_step(self, batches: list[Batch], lr: float) -> StepResult:
        start_step(self.optimizer, lr)
        return self.step_body(batches)

    def step_body(self, batches: list[Batch]) -> StepResult:
        (inputs, targets, *_), start = batches[0], self.start
        with precisions.autocast(self.device, self.precision):
            logits = self.forward(inputs, start)  # (B, classes, segment)
        bits = loss.bits(logits, targets)
        bits.backward()
        return finish_step(self.optimizer, self.model, self.parameters, bits.detach(), 1.0, self.ema, self.stats)

    def eager(self, inputs: torch.Tensor, targets: torch.Tensor, output_from: int) -> None:
        self.start = output_from
        self.eager_step([Batch(inputs, targets)], 1e-4)

    def run(self, inputs: torch.Tensor, targets: torch.Tensor, output_from: int) -> None:
        self.start = output_from  # (the same in every step of a configuration)
        if self.graphed is None:
            self.eager_step([Batch(inputs, targets)], 1e-4)
        else:
            self.graphed.step([Batch(inputs, targets)], 1e-4)
