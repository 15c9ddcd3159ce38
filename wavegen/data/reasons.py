"""Why a recording cannot be learned from, named by its true cause (channels that cancel, a
silent channel kept, a constant offset, trimming that left too little)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..audio.io import Recording
from ..config import DataConfig
from ..errors import ConfigError
from ..model.network import receptive_field
from ..recipe import load_recipe, recipe_names

# A file whose loudest sample is below this is skipped as silent, trimming or not: it would only
# teach the model more silence (the training windows already start in it), and it is nearly
# always a mistake (a muted channel, a failed recording). µ-law spends barely 10 of its 256
# codes on all of it.
SILENT_DBFS = -60.0


def dbfs(level: float) -> str:
    """A level (0..1 of full scale) in dBFS, as text."""
    return f"{20 * np.log10(level):.0f} dBFS" if level > 0 else "-inf dBFS"


def loudest_channel(recording: Recording) -> int:
    """The index of the channel with the highest peak."""
    return int(np.argmax(recording.channel_peaks))


def silence(recording: Recording) -> str | None:
    """Why a recording holds no sound to learn from, in its true cause (or None when it has).

    Below ``SILENT_DBFS`` everywhere: every channel silent, channels that cancel when mixed to
    mono, or a kept channel that is silent while another is not. A constant offset (DC) that
    varies by less than that is no sound either, however far from 0 it sits.
    """
    threshold = 10 ** (SILENT_DBFS / 20)
    audio, peaks = recording.audio, recording.channel_peaks
    peak = float(np.abs(audio).max())
    loudest = loudest_channel(recording)
    if peak < threshold:
        if peaks[loudest] >= threshold and recording.picked is not None:
            return (
                f"channel {recording.picked} is silent (peak {dbfs(peaks[recording.picked])}); the sound is in "
                f"channel {loudest} (peak {dbfs(peaks[loudest])}): use --channel {loudest}, or --channel mix"
            )
        if peaks[loudest] >= threshold:
            return (
                f"silent when mixed to mono: its {recording.channels} channels cancel (channel {loudest} peaks at "
                f"{dbfs(peaks[loudest])}, the mix at {dbfs(peak)}); keep one channel with --channel {loudest} "
                f"(or --set data.channel={loudest})"
            )
        level = f"peak {dbfs(peak)}" if peak else "every sample is 0"
        return f"silent throughout ({level}; nothing above {SILENT_DBFS:g} dBFS)"
    swing = float(audio.max() - audio.min()) / 2
    if swing < threshold:
        offset = float(np.mean(audio))
        return (
            f"no sound: a constant offset (DC) of {offset:+.3g} ({dbfs(abs(offset))}) throughout, varying by "
            f"less than {SILENT_DBFS:g} dBFS"
        )
    return None


def too_short(
    length: int, trimmed: int, min_samples: int, config: DataConfig, why: str = "the model's receptive field"
) -> str:
    """The reason for a file shorter than ``min_samples`` (``why``: what asks for that many,
    ``short_reason``); when trimming made it so, that is the cause to name."""
    reason = f"too short: {length} samples at {config.sample_rate} Hz"
    if trimmed and length + trimmed >= min_samples:
        return (
            f"{reason} after trimming silence ({length + trimmed} before; the rest is more than "
            f"{config.trim_db:g} dB below its peak), fewer than the {min_samples} of {why}; "
            "--no-trim-silence keeps the file whole"
        )
    return f"{reason}{' after trimming' if trimmed else ''}, fewer than the {min_samples} of {why}"


def short_reason(recipe: str, min_samples: int) -> str:
    """What asks a file for ``min_samples`` samples, for ``too_short``: the recipe's receptive
    field (``recipe`` as given to ``--recipe``), and the shipped or local recipe that needs the
    fewest, when it needs fewer (``--recipe tiny needs 129``)."""
    name = Path(recipe).stem
    sizes = {}
    for other in recipe_names():
        try:
            sizes[other] = receptive_field(load_recipe(other).model)
        except ConfigError:  # a broken recipe in ./recipes says nothing about the others
            continue
    why = f"the {name} recipe's receptive field"
    smallest = min(sizes, key=lambda other: (sizes[other], other), default=None)
    if smallest is not None and sizes[smallest] < min_samples:
        why += f" (--recipe {smallest} needs {sizes[smallest]})"
    return why
