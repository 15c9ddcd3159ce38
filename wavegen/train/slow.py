"""Notes for a recipe sized for a GPU and trained on a CPU: before the first step, how much more
work a step is than the CPU recipe's (``small``); after a few steps, how long they take and what
the whole run would take."""

from __future__ import annotations

import logging

import numpy as np
import torch

from ..config import Config
from ..model.network import WaveNet

logger = logging.getLogger(__name__)

# A step slower than this on a CPU is a recipe sized for a GPU (the default takes ~10 s a step on
# a laptop CPU, the tiny one ~0.05 s): say once what the whole run would take, and train on.
SLOW_CPU_STEP_S = 2.0
SLOW_STEPS_MEASURED = 3  # steps timed after the first (which pays one-time costs: allocation, threads)

# The ``small`` recipe's work per step (weights × samples per step: 1.66 M × 4 × 4000), the most a
# CPU recipe should ask; a recipe with more than twice that is sized for a GPU (``default``: 5.8×,
# ``vocoder``: 4×). A count from the config alone: nothing is timed, so it is said before step 1.
CPU_RECIPE = "small"
CPU_STEP_WORK = 1_662_592 * 4 * 4000
GPU_SIZED = 2.0


def step_work(config: Config) -> int:
    """A step's work in weight-samples: the network's weights × the samples a step predicts
    (batch × window × accumulation), proportional to its multiply-adds."""
    t = config.train
    return WaveNet(config.model).parameter_count() * t.batch_size * t.segment_length * t.accumulate


def gpu_sized_note(config: Config, device: torch.device) -> str | None:
    """The note for a new run on a CPU whose recipe asks more than ``GPU_SIZED`` times the work per
    step of the CPU recipe, naming it; None on a GPU or for a recipe a CPU trains well."""
    if device.type != "cpu":
        return None
    times = step_work(config) / CPU_STEP_WORK
    if times <= GPU_SIZED:
        return None
    return (
        f"these settings are sized for a GPU: a step is {times:.1f}× the work of --recipe {CPU_RECIPE}, "
        f"the recipe for speech or music on a CPU (stop with Ctrl-C, then wavegen train --recipe "
        f"{CPU_RECIPE}); training goes on"
    )


class SlowStepNote:
    """Watches the first steps of a session on a CPU and, when the median of steps 2..4 takes
    more than ``SLOW_CPU_STEP_S`` seconds, logs once how long a step takes, what the rest of
    ``train.steps`` would take in hours, and how to train something smaller."""

    def __init__(self, device: torch.device, step: int, steps: int) -> None:
        self.watching = device.type == "cpu"
        self.start, self.steps = step, steps
        self.times: list[float] = []

    def after(self, step: int, seconds: float) -> None:
        """Record that ``step`` (counted from 1, the run's own count) took ``seconds``."""
        if not self.watching or step == self.start + 1:  # (the first step of a session is not typical)
            return
        self.times.append(seconds)
        if len(self.times) < SLOW_STEPS_MEASURED:
            return
        self.watching = False
        each = float(np.median(self.times))
        if each > SLOW_CPU_STEP_S:
            hours = each * (self.steps - step) / 3600
            logger.warning(
                f"a training step takes {each:.1f} s on this CPU: the {self.steps - step:,} steps left to "
                f"train.steps = {self.steps:,} would take about {hours:,.1f} hours. Train "
                f"--recipe {CPU_RECIPE} for speech or music on a CPU, --recipe tiny for tones, or a smaller "
                "model or window (--set model.cycles=1, --set train.segment_length=1000); training goes on"
            )
