"""``wavegen eval``: how good a trained model is on held-out data.

- Validation bits per sample over the whole validation split (every held-out tail, in windows
  with full context, conditioning included), not the random sample training reports.
- For vocoder (mel-conditioned) models, copy-synthesis of held-out audio: the first seconds of
  a few validation tails are resynthesised from their stored log-mel features, and the log-mel
  distance (mean absolute, dB) between the held-out codes (the µ-law audio the model learns to
  produce) and the resynthesis is reported per file and overall.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import checkpoint as ckpt
from .data import IGNORE, PreparedData, WindowSampler
from .errors import ConfigError, DataError
from .config import DataConfig
from .features import check_same_analysis, log_mel, mel_distance
from .limits import check_eval_lengths
from .mulaw import decode
from .run_config import check_unedited
from .train import resolve_device, window_terms
from .vocode import mel_settings, resynthesize


def check_compatible(model, config: DataConfig, data: PreparedData, checkpoint: Path | str = "the model") -> None:
    """The prepared data must be what the model was trained on: rate, labels and every mel
    analysis setting (checked before anything is scored)."""
    c = model.config
    if data.sample_rate != config.sample_rate:
        raise ConfigError(f"{data.folder}: prepared at {data.sample_rate} Hz, the model works at {config.sample_rate} "
                          f"Hz; prepare it again with --sample-rate {config.sample_rate}")
    if list(data.labels) != list(c.labels):
        raise ConfigError(f"{data.folder}: labels [{', '.join(data.labels)}] differ from the model's "
                          f"[{', '.join(c.labels)}]")
    bands = data.mel["bands"] if data.mel else 0
    hop = data.mel["hop"] if data.mel else 0
    if (bands, hop) != (c.mel_channels, c.mel_hop):
        raise ConfigError(f"{data.folder}: mel features ({bands} bands every {hop} samples) differ from the "
                          f"model's ({c.mel_channels} every {c.mel_hop})")
    if data.mel:
        check_same_analysis(data.mel, mel_settings(model, config, checkpoint), data.folder, f"the model in {checkpoint}")


@torch.no_grad()
def validation_bits(
    model, data: PreparedData, device: torch.device, segment: int = 4000, batch_size: int = 8,
    max_seconds: float | None = None, progress: bool = False,
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
    from .progress import bar as progress_bar

    with progress_bar(total=sum(scored), desc="eval", unit="sample", unit_scale=True, enabled=progress,
                      leave=False) as bar:
        for i in range(0, len(windows), batch_size):
            chosen = windows[i : i + batch_size]
            batch = sampler.windows([f for f, _ in chosen], [s for _, s in chosen])

            def put(array: np.ndarray) -> torch.Tensor:
                return torch.from_numpy(np.ascontiguousarray(array)).to(device)

            logits = model(put(batch.inputs), output_from=rf, cond=window_terms(model, batch, put))
            targets = put(batch.targets)
            total_bits += F.cross_entropy(logits.float(), targets, ignore_index=IGNORE, reduction="sum").item() / math.log(2)
            total += int((targets != IGNORE).sum())
            bar.update(sum(scored[i : i + batch_size]))
    return total_bits / total, total


def evaluate(
    checkpoint: Path,
    data_dir: Path,
    seconds: float = 2.0,
    files: int = 4,
    max_seconds: float | None = 600.0,
    engine: str = "auto",
    device: str = "auto",
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> dict:
    """Validation bits per sample, and for vocoder models the resynthesis distance."""
    check_eval_lengths(seconds, max_seconds)
    model, payload = ckpt.load_model(checkpoint, map_location="cpu")
    config = ckpt.config_of(payload, checkpoint)
    data = PreparedData(data_dir)
    check_unedited(checkpoint, config)
    check_compatible(model, config.data, data, checkpoint)
    dev = resolve_device(device)
    bits, count = validation_bits(model, data, dev, max_seconds=max_seconds, progress=progress)
    report: dict = {"checkpoint": str(checkpoint), "step": payload.get("step"), "data": str(data_dir),
                    "val_bits": round(bits, 4), "val_seconds": round(count / data.sample_rate, 2)}
    log(f"validation: {bits:.3f} bits/sample over {count / data.sample_rate:.1f} s of held-out audio")
    if not model.config.mel_channels:
        return report
    settings = mel_settings(model, config.data, checkpoint)  # (the data's, as check_compatible made sure)
    split, hop = data.val, settings.hop
    want = max(1, round(seconds * data.sample_rate))
    # The longest held-out tails (in file order): short ones say little.
    longest = sorted(range(len(split.spans)), key=lambda i: -split.spans[i][1])[:files]
    chosen = sorted(i for i in longest if split.spans[i][1] >= hop)
    if not chosen:
        raise DataError(f"{data_dir}: no validation tail is long enough to resynthesise")
    lengths = [min(want, split.spans[i][1]) for i in chosen]
    features = []
    for i, n in zip(chosen, lengths):
        offset, _ = split.mel_spans[i]
        features.append(np.asarray(split.mels[offset : offset + -(-n // hop)]))
    labels = [model.config.labels[split.labels[i]] for i in chosen] if split.labels is not None else None
    sources = [f["source"] for f in data.manifest["files"] if f["val"][1] > 0]
    result = resynthesize(model, features, lengths, labels=labels, engine=engine, device=device, log=log,
                          progress=progress)
    distances = []
    for i, n, audio in zip(chosen, lengths, result.audio):
        offset, _ = split.spans[i]
        held_out = decode(torch.from_numpy(np.asarray(split.codes[offset : offset + n], np.int64))).numpy()
        distances.append(mel_distance(log_mel(held_out, settings), log_mel(audio, settings)))
        log(f"  {sources[i]}: log-mel distance {distances[-1]:.2f} dB")
    report["mel_distance_db"] = round(float(np.mean(distances)), 3)
    report["resynthesised"] = [{"source": sources[i], "seconds": round(n / data.sample_rate, 3), "mel_distance_db":
                                round(d, 3)} for i, n, d in zip(chosen, lengths, distances)]
    log(f"resynthesis of {len(chosen)} validation excerpts ({sum(lengths) / data.sample_rate:.1f} s): "
        f"log-mel distance {report['mel_distance_db']:.2f} dB")
    return report
