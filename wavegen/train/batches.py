"""Training batches on the device: the windows' arrays as tensors, and their conditioning."""

from __future__ import annotations

import numpy as np
import torch

from ..data.windows import Batch
from ..model.conditioning import WindowTerms
from ..model.network import WaveNet


def batch_on_device(batch: Batch, device: torch.device) -> Batch:
    """A batch's arrays as tensors on ``device`` (pinned and copied without waiting, on a GPU)."""

    def put(array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        return tensor.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else tensor

    inputs, targets = put(batch.inputs), put(batch.targets)
    labels, mels, offsets = (
        None if array is None else put(array) for array in (batch.labels, batch.mels, batch.offsets)
    )
    return Batch(inputs, targets, labels, mels, offsets)


def window_terms(model: WaveNet, batch: Batch) -> WindowTerms | None:
    """The conditioning of a batch of windows on the device (``Trainer._on_device``), for a
    conditioned model (else None)."""
    if not model.conditioned:  # (the baseline network has no conditioner at all)
        return None
    assert model.conditioner is not None  # a conditioned model has one
    return WindowTerms(model.conditioner, batch.inputs.shape[1], batch.labels, batch.mels, batch.offsets)
