"""``wavegen eval``: how good a trained model is on held-out data.

- Validation bits per sample over the whole validation split (every held-out tail, in windows
  with full context, conditioning included), not the random sample training reports.
- For vocoder (mel-conditioned) models, copy-synthesis of held-out audio: the first seconds of
  a few validation tails are resynthesised from their stored log-mel features, and the log-mel
  distance (mean absolute, dB) between the held-out codes (the µ-law audio the model learns to
  produce) and the resynthesis is reported per file and overall.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ..audio.features import MelSettings, log_mel, mel_distance, mel_settings
from ..audio.io import duration
from ..audio.mulaw import decode
from ..data.prepared import PreparedData
from ..devices import resolve_device
from ..errors import DataError
from ..generate.quantized import at_precision
from ..generate.request import GenerationRequest, check_precision
from ..generate.resynthesis import resynthesize
from ..limits import check_eval_lengths
from ..model import checkpoint as ckpt
from ..run_config import check_unedited
from .validation import check_compatible, validation_bits

logger = logging.getLogger(__name__)


def evaluate(
    checkpoint: Path,
    data_dir: Path,
    seconds: float = 2.0,
    files: int = 4,
    max_seconds: float | None = 600.0,
    engine: str = "auto",
    device: str = "auto",
    progress: bool = True,
    precision: str = "fp32",
) -> dict:
    """Validation bits per sample, and for vocoder models the resynthesis distance.

    ``precision`` (fp32, bf16, int8): the network is scored as the native engine computes it at
    that precision (``quantized.at_precision``, teacher-forced), and a vocoder resynthesises with
    the native engine at it; the report says which (``"precision"``). Raises ``ConfigError`` for
    an unknown precision, ``DataError``/``ConfigError`` for data the model cannot be scored on.
    """
    check_eval_lengths(seconds, max_seconds)
    request = GenerationRequest(engine=engine, device=device, precision=check_precision(precision, allow_auto=False))
    model, payload, config = ckpt.load_model(checkpoint, map_location="cpu")
    data = PreparedData(data_dir)
    check_unedited(checkpoint, config)
    check_compatible(model, config.data, data, checkpoint)
    dev = resolve_device(device)
    scored = at_precision(model, precision)  # the model itself at fp32
    bits, count = validation_bits(scored, data, dev, max_seconds=max_seconds, progress=progress)
    report: dict = {
        "checkpoint": str(checkpoint),
        "step": payload.get("step"),
        "data": str(data_dir),
        "precision": precision,
        "val_bits": round(bits, 4),
        "val_seconds": round(count / data.sample_rate, 2),
    }
    logger.info(
        f"validation: {bits:.3f} bits/sample ({precision}) over {duration(count / data.sample_rate)} of held-out audio"
    )
    if model.config.mel_channels:
        settings = mel_settings(model.config, config.data, checkpoint)  # (the data's, as check_compatible made sure)
        report.update(resynthesis_report(model, data, settings, seconds, files, request, progress))
    return report


def resynthesis_report(
    model,
    data: PreparedData,
    settings: MelSettings,
    seconds: float,
    files: int,
    request: GenerationRequest,
    progress: bool,
) -> dict:
    """A vocoder's copy-synthesis of the first ``seconds`` of the ``files`` longest validation
    tails: ``{"mel_distance_db": mean, "resynthesised": [per file]}`` (distances in dB)."""
    split, hop = data.val, settings.hop
    assert split.mels is not None  # a vocoder's data has mel frames (check_compatible made sure)
    want = max(1, round(seconds * data.sample_rate))
    # The longest held-out tails (in file order): short ones say little.
    longest = sorted(range(len(split.spans)), key=lambda i: -split.spans[i][1])[:files]
    chosen = sorted(i for i in longest if split.spans[i][1] >= hop)
    if not chosen:
        raise DataError(f"{data.folder}: no validation tail is long enough to resynthesise")
    lengths = [min(want, split.spans[i][1]) for i in chosen]
    features = []
    for i, n in zip(chosen, lengths):
        offset, _ = split.mel_spans[i]
        features.append(np.asarray(split.mels[offset : offset + -(-n // hop)]))
    labels = [model.config.labels[split.labels[i]] for i in chosen] if split.labels is not None else None
    sources = [f["source"] for f in data.manifest["files"] if f["val"][1] > 0]
    result = resynthesize(model, features, lengths, request, labels, progress)
    distances = []
    for i, n, audio in zip(chosen, lengths, result.audio):
        offset, _ = split.spans[i]
        held_out = decode(torch.from_numpy(np.asarray(split.codes[offset : offset + n], np.int64))).numpy()
        distances.append(mel_distance(log_mel(held_out, settings), log_mel(audio, settings)))
        logger.info(f"  {sources[i]}: log-mel distance {distances[-1]:.2f} dB")
    report = {
        "mel_distance_db": round(float(np.mean(distances)), 3),
        "resynthesised": [
            {"source": sources[i], "seconds": round(n / data.sample_rate, 3), "mel_distance_db": round(d, 3)}
            for i, n, d in zip(chosen, lengths, distances)
        ],
    }
    logger.info(
        f"resynthesis of {len(chosen)} validation excerpts ({duration(sum(lengths) / data.sample_rate)}): "
        f"log-mel distance {report['mel_distance_db']:.2f} dB"
    )
    return report
