"""The learning-rate schedule: a linear warm-up, then a cosine decay, continued smoothly when a
run's schedule settings change part-way (``continue_schedule``)."""

from __future__ import annotations

import math

from ..config import Config


def lr_at(step: int, config: Config, anchor: tuple[int, float] | None = None) -> float:
    """The learning rate of step ``step``: a linear warm-up, then a cosine decay to
    ``lr * min_lr_ratio`` at the last step.

    ``anchor`` (step s, level a): the decay starts at step s from ``a * lr`` instead of from
    ``lr`` at the end of the warm-up. A run whose schedule changed part-way (``--steps`` raised,
    say) continues from where its rate was (``continue_schedule``) instead of jumping to where a
    run planned that long from the start would be.
    """
    t = config.train
    if anchor is None and step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    start, level = anchor or (t.warmup_steps, 1.0)
    progress = min(max(step - start, 0) / max(t.steps - start, 1), 1.0)
    floor = t.min_lr_ratio
    return t.lr * (floor + (level - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


# The fixed validation windows are val_batches batches of batch_size windows of segment_length.
VALIDATION_KEYS = ("train.batch_size", "train.segment_length", "train.val_batches")


SCHEDULE_KEYS = ("steps", "warmup_steps", "min_lr_ratio")  # what lays out the schedule (lr only scales it)


def continue_schedule(
    step: int, before: Config, after: Config, anchor: tuple[int, float] | None
) -> tuple[int, float] | None:
    """The ``lr_at`` anchor for a run at ``step`` whose schedule settings change from
    ``before``'s to ``after``'s: the decay goes on from the level the old schedule had reached
    at ``step`` (a run still warming up keeps warming up). ``train.lr`` scales the whole curve,
    so changing it alone keeps the anchor."""
    old, new = before.train, after.train
    if all(getattr(old, k) == getattr(new, k) for k in SCHEDULE_KEYS):
        return anchor
    if anchor is None and step < new.warmup_steps:
        return None
    return step, lr_at(step, before, anchor) / old.lr


def describe_schedule(step: int, config: Config, anchor: tuple[int, float] | None, was: float | None = None) -> str:
    """The schedule from ``step`` on, in words (``was``: the rate the previous settings gave)."""
    t = config.train
    now = lr_at(step, config, anchor)
    text = f"learning rate {now:.3g} at step {step}"
    if was is not None and not math.isclose(was, now, rel_tol=1e-3):
        text += f" (it was {was:.3g})"
    if anchor is None and step < t.warmup_steps:
        text += f", warming up to {t.lr:.3g} by step {t.warmup_steps}"
    elif anchor is not None and math.isclose(anchor[1], t.min_lr_ratio, rel_tol=1e-3):
        return text + (
            f": the end of its decay, where it stays until step {t.steps} (train.lr scales the whole schedule)"
        )
    return text + f", then cosine decay to {t.lr * t.min_lr_ratio:.3g} at step {t.steps}"
