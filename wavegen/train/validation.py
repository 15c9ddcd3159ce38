"""Validation bits per sample over a prepared split, and the checks that the data is what a model was trained on."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ..audio.features import check_same_analysis, mel_settings
from ..config import DataConfig
from ..data.prepared import PreparedData
from ..data.windows import WindowSampler
from ..errors import ConfigError, DataError
from ..model.loss import IGNORE, bits
from ..progress import bar as progress_bar
from .batches import batch_on_device, window_terms


def check_compatible(model, config: DataConfig, data: PreparedData, checkpoint: Path | str = "the model") -> None:
    """The prepared data must be what the model was trained on: rate, labels and every mel
    analysis setting (checked before anything is scored)."""
    c = model.config
    if data.sample_rate != config.sample_rate:
        raise ConfigError(
            f"{data.folder}: prepared at {data.sample_rate} Hz, the model works at {config.sample_rate} "
            f"Hz; prepare it again with --sample-rate {config.sample_rate}"
        )
    if list(data.labels) != list(c.labels):
        raise ConfigError(
            f"{data.folder}: labels [{', '.join(data.labels)}] differ from the model's [{', '.join(c.labels)}]"
        )
    bands = data.mel["bands"] if data.mel else 0
    hop = data.mel["hop"] if data.mel else 0
    if (bands, hop) != (c.mel_channels, c.mel_hop):
        raise ConfigError(
            f"{data.folder}: mel features ({bands} bands every {hop} samples) differ from the "
            f"model's ({c.mel_channels} every {c.mel_hop})"
        )
    if data.mel:
        check_same_analysis(
            data.mel, mel_settings(model.config, config, checkpoint), data.folder, f"the model in {checkpoint}"
        )


@torch.no_grad()
def validation_bits(
    model,
    data: PreparedData,
    device: torch.device,
    segment: int = 4000,
    batch_size: int = 8,
    max_seconds: float | None = None,
    progress: bool = False,
) -> tuple[float, int]:
    """Mean cross-entropy in bits per sample over the validation split (up to ``max_seconds``
    of it): every held-out sample predicted once, with its full receptive field of context
    (``progress``: a bar over the samples scored)."""
    split = data.val
    if not split.spans:
        raise DataError(f"{data.folder}: no validation data (prepare with --val-fraction > 0)")
    rf = model.receptive_field
    segment = min(segment, max(length for _, length in split.spans))  # no windows of padding
    sampler = WindowSampler(split, rf, segment, seed=0)
    budget = math.inf if max_seconds is None else max_seconds * data.sample_rate
    windows, scored = [], []
    for index, (_, length) in enumerate(split.spans):
        for start in range(0, length, segment):
            if budget <= 0:
                break
            windows.append((index, start))
            scored.append(min(segment, length - start))
            budget -= scored[-1]
    model = model.to(device).eval()
    total_bits, total = 0.0, 0

    with progress_bar(
        total=sum(scored), desc="eval", unit="sample", unit_scale=True, enabled=progress, leave=False
    ) as bar:
        for i in range(0, len(windows), batch_size):
            chosen = windows[i : i + batch_size]
            batch = batch_on_device(sampler.windows([f for f, _ in chosen], [s for _, s in chosen]), device)
            logits = model(batch.inputs, output_from=rf, cond=window_terms(model, batch))
            targets = batch.targets
            total_bits += bits(logits, targets, reduction="sum").item()
            total += int((targets != IGNORE).sum())
            bar.update(sum(scored[i : i + batch_size]))
    return total_bits / total, total
