"""The ranges ``config.validate`` holds numeric settings to, kept as data: the check and the
settings reference (``wavegen config reference``, docs/settings.md) read this one table.

Sizes have upper bounds too (channels, layers, bands, rates, batches...): far beyond any model
or data set wavegen is meant for, they turn a typo (``2000000`` channels) into one line instead
of gigabytes allocated before anything checks them. ``model.network.check_size`` then bounds a
model's parameter count as a whole.

A range is written as the error message says it: ``"> 0"``, ``">= 0"`` or an interval
``"in [0, 1)"`` (a square bracket includes its end); a note in parentheses after it says what an
end means and is shown with it.
"""

from __future__ import annotations

import re

MAX_SAMPLE_RATE = 192_000  # Hz: the highest rate audio interfaces record at
MAX_MEL_BANDS = 1024  # log-mel bands: vocoders use 80 to 128

RANGES = {
    "model.classes": "> 0",
    "model.cycles": "in (0, 64]",
    "model.layers_per_cycle": "in (0, 24]",
    "model.kernel_size": "in (0, 16]",
    "model.input_kernel_size": "in (0, 16]",
    "model.residual_channels": "in (0, 4096]",
    "model.gate_channels": "in (0, 4096]",
    "model.skip_channels": "in (0, 4096]",
    "model.mel_channels": f"in [0, {MAX_MEL_BANDS}]",
    "model.mel_hop": "in [0, 65536]",
    "model.cond_channels": "in (0, 4096]",
    "data.sample_rate": f"in [1000, {MAX_SAMPLE_RATE}]",
    "data.val_fraction": "in [0, 1)",
    "data.trim_db": "> 0",
    "data.mel_bands": f"in [0, {MAX_MEL_BANDS}]",
    "data.mel_hop": "in (0, 65536]",
    "data.mel_n_fft": "in (0, 65536]",
    "data.mel_fmin": ">= 0",
    "train.batch_size": "in (0, 65536]",
    "train.segment_length": "in (0, 16777216]",
    "train.lr": "> 0",
    "train.warmup_steps": ">= 0",
    "train.min_lr_ratio": "in [0, 1]",
    "train.steps": "> 0",
    "train.grad_clip": ">= 0",
    "train.input_noise": ">= 0",
    "train.code_noise": ">= 0",
    "train.start_fraction": "in [0, 1]",
    "train.accumulate": "in [1, 65536]",
    "train.ema": "in [0, 1)",
    "train.checkpoint_every": "> 0",
    "train.max_bad_steps": "> 0",
    "train.val_every": "> 0",
    "train.val_batches": "in [0, 1000000]",
    "train.log_every": "> 0",
    "train.sample_every": ">= 0 (0 = no samples)",
    "train.sample_seconds": "in (0, 60]",
    "train.seed": "in [0, 18446744073709551615]",
    "train.threads": "in [0, 4096] (0: torch's default)",
}

# "> a" or ">= a" (groups 1, 2), or "in [a, b]" with either bracket at either end (groups 3 to 6)
SPEC = re.compile(r"(>=?) (\S+)|in ([\[(])([^,]+), ([^\])]+)([\])])")


def number(text: str) -> int | float:
    """An end of a range as written: an integer exactly (2**64 - 1 is not a float), else a float."""
    return int(text) if re.fullmatch(r"-?\d+", text) else float(text)


def in_range(value: float, spec: str) -> bool:
    """Whether ``value`` lies in the range ``spec`` (a ``RANGES`` value); NaN lies in none."""
    found = SPEC.match(spec)
    if found is None:
        raise ValueError(f"not a range: {spec!r}")
    at_least, low, opening, start, end, closing = found.groups()
    if at_least:
        return value > number(low) or (at_least == ">=" and value == number(low))
    above = value > number(start) or (opening == "[" and value == number(start))
    return above and (value < number(end) or (closing == "]" and value == number(end)))


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
