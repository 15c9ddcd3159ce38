"""The ranges ``config.validate`` holds numeric settings to, kept as data: the check and the
settings reference (``wavegen config reference``, docs/settings.md) read this one table.

A range is written as the error message says it: ``"> 0"``, ``">= 0"`` or an interval
``"in [0, 1)"`` (a square bracket includes its end); a note in parentheses after it says what an
end means and is shown with it.
"""

from __future__ import annotations

import re

RANGES = {
    "model.classes": "> 0",
    "model.cycles": "> 0",
    "model.layers_per_cycle": "> 0",
    "model.kernel_size": "> 0",
    "model.input_kernel_size": "> 0",
    "model.residual_channels": "> 0",
    "model.gate_channels": "> 0",
    "model.skip_channels": "> 0",
    "model.mel_channels": ">= 0",
    "model.mel_hop": ">= 0",
    "model.cond_channels": "> 0",
    "data.sample_rate": "> 0",
    "data.val_fraction": "in [0, 1)",
    "data.trim_db": "> 0",
    "data.mel_bands": ">= 0",
    "data.mel_hop": "> 0",
    "data.mel_fmin": ">= 0",
    "train.batch_size": "> 0",
    "train.segment_length": "> 0",
    "train.lr": "> 0",
    "train.warmup_steps": ">= 0",
    "train.min_lr_ratio": "in [0, 1]",
    "train.steps": "> 0",
    "train.grad_clip": ">= 0",
    "train.input_noise": ">= 0",
    "train.code_noise": ">= 0",
    "train.start_fraction": "in [0, 1]",
    "train.accumulate": ">= 1",
    "train.ema": "in [0, 1)",
    "train.checkpoint_every": "> 0",
    "train.max_bad_steps": "> 0",
    "train.val_every": "> 0",
    "train.val_batches": ">= 0",
    "train.log_every": "> 0",
    "train.sample_every": ">= 0 (0 = no samples)",
    "train.sample_seconds": "in (0, 60]",
    "train.threads": ">= 0 (0: torch's default)",
}

# "> a" or ">= a" (groups 1, 2), or "in [a, b]" with either bracket at either end (groups 3 to 6)
SPEC = re.compile(r"(>=?) (\S+)|in ([\[(])([^,]+), ([^\])]+)([\])])")


def in_range(value: float, spec: str) -> bool:
    """Whether ``value`` lies in the range ``spec`` (a ``RANGES`` value); NaN lies in none."""
    found = SPEC.match(spec)
    if found is None:
        raise ValueError(f"not a range: {spec!r}")
    at_least, low, opening, start, end, closing = found.groups()
    if at_least:
        return value > float(low) or (at_least == ">=" and value == float(low))
    above = value > float(start) or (opening == "[" and value == float(start))
    return above and (value < float(end) or (closing == "]" and value == float(end)))


# The settings that take one of a few words (``validate`` refuses any other).
CHOICES = {
    "model.init": ("kaiming", "torch"),
    "data.label_source": ("none", "folders"),
    "train.precision": ("auto", "fp32", "bf16"),
}
# What ``validate`` checks beyond a range or a choice, as the reference states it (each is held to
# the check by tests/test_settings_reference.py).
RULES = {
    "model.classes": "= 256 (8-bit µ-law)",
    "model.labels": "no name twice",
    "model.mel_channels": "set together with model.mel_hop",
    "model.mel_hop": "set together with model.mel_channels",
    "data.channel": "`mix` or a channel number (0 for the first)",
    "data.mel_n_fft": ">= data.mel_hop",
    "data.mel_fmax": "0 or in (data.mel_fmin, data.sample_rate / 2]",
}
