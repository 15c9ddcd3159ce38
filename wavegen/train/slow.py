"""A note for a recipe sized for a GPU and trained on a CPU: how long its steps take, and what
to try instead."""

from __future__ import annotations

import logging

import numpy as np
import torch

logger = logging.getLogger(__name__)

# A step slower than this on a CPU is a recipe sized for a GPU (the default takes ~10 s a step on
# a laptop CPU, the tiny one ~0.05 s): say once what the whole run would take, and train on.
SLOW_CPU_STEP_S = 2.0
SLOW_STEPS_MEASURED = 3  # steps timed after the first (which pays one-time costs: allocation, threads)


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
                f"train.steps = {self.steps:,} would take about {hours:,.1f} hours. To try things out, train "
                "--recipe tiny, or a smaller model or window (--set model.cycles=1, --set "
                "train.segment_length=1000); training goes on"
            )
