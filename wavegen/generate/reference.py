"""The reference engine: the whole network over the whole past for every sample."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..model.conditioning import StackedTerms
from ..model.network import WaveNet
from .state import check_conditioning, silence

if TYPE_CHECKING:
    from ..model.conditioning import Conditioning


class ReferenceEngine:
    """Full forward over the last receptive field per sample: slow, simple, the ground truth."""

    name = "reference"
    precision = "fp32"  # the weights as trained

    def __init__(self, model: WaveNet, device: torch.device | str = "cpu") -> None:
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.rf = model.receptive_field

    def reset(self, batch: int, history: torch.Tensor | None = None, conditioning: Conditioning | None = None) -> None:
        check_conditioning(self.model, batch, conditioning)
        past = silence(batch, self.rf, self.device)
        if history is not None:
            past = torch.cat([past, history.to(self.device).long().expand(batch, -1)], dim=1)
        # One extra slot for the position being predicted: type-A masking means its value is
        # never read, so a placeholder is fine.
        self.window = torch.cat([past[:, -self.rf :], silence(batch, 1, self.device)], dim=1)
        self.conditioning = conditioning
        self.n = 0  # generation time of the next sample: the window covers n - rf .. n

    @torch.inference_mode()
    def logits(self) -> torch.Tensor:
        cond = None
        if self.conditioning is not None:
            cond = self.conditioning.terms(self.n - self.rf, self.rf + 1)
            cond = StackedTerms(cond.terms.to(self.device))
        # Full fp32: cuDNN would otherwise use TF32 for the convolutions on recent GPUs, and
        # the ground truth must not be the less exact side of a comparison.
        with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            return self.model(self.window, output_from=self.rf, cond=cond)[:, :, 0].float()  # (B, classes)

    def append(self, codes: torch.Tensor) -> None:
        self.window = torch.cat([self.window[:, 1:-1], codes[:, None], self.window[:, -1:]], dim=1)
        self.n += 1
