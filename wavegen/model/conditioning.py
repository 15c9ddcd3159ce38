"""Conditioning: what a model is told besides the past samples, as one term per residual layer.

Both kinds from the WaveNet paper end up as a term added to every layer's conv output before
the gate, ``tanh(W_f * x + V_f h) · sigmoid(W_g * x + V_g h)``:

- **global** (a label: speaker, instrument, class): a learned embedding of size L·2G, the
  same at every time step;
- **local** (log-mel features at one frame per ``hop`` samples): a small frame-rate network
  maps the features to L·2G channels, then a learned transposed convolution (stride ``hop``,
  three frames wide, one kernel shared by every channel, initialised to linear interpolation)
  brings them to the sample rate.

Doing the per-layer projection at the frame rate and upsampling afterwards makes the local
term cheap (one multiply-add per channel and sample), so the sampling engines can precompute it
per layer and simply add it.

Frame f of the features covers samples [f·hop, (f+1)·hop) and is centred on its middle. A
sample in frame f reads the upsampled frames f-1, f, f+1, each of which reads mel frames ±2
(two convolutions of width 3), so a sample depends on mel frames f-3 .. f+3:

    mel frames     f-3 f-2 f-1  f  f+1 f+2 f+3
    frame net           └──┴── P(f-1), P(f), P(f+1) ──┴──┘
    upsampler                  ╲   │   ╱
    sample t in frame f          term(t)

Through the residual path, the logits at t also see the terms of the positions before t that
the dilated convolutions reach, so a model's whole dependence is ``WaveNet.mel_context``.
Frames outside a recording are the features of digital silence (``SILENCE``), in training
(windows that reach past a file's ends) and in generation alike.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import nn

from ..audio.features import SILENCE
from ..config import ModelConfig

CONTEXT_FRAMES = 3  # mel frames on each side of a sample's own frame that it depends on


_MEL_CENTER, _MEL_SCALE = -5.0, 4.0  # fixed affine that brings log-mels to about [-1.6, 2]


class LayerTerms(Protocol):
    """Per-layer conditioning terms aligned with a block of codes."""

    def layer(self, index: int) -> torch.Tensor:  # (B, 2G, T) or (B, 2G, 1)
        ...


def mel_window(start: int, length: int, hop: int) -> tuple[int, int]:
    """The mel frames the samples ``start .. start + length - 1`` depend on: (first frame, count).

    The count depends on ``length`` only, so windows of one length stack into a batch; the
    first sample then sits ``start % hop`` samples into the upsampled range.
    """
    return start // hop - CONTEXT_FRAMES, -(-length // hop) + 1 + 2 * CONTEXT_FRAMES


def slice_frames(mels: torch.Tensor, first: int, count: int) -> torch.Tensor:
    """Frames ``first .. first + count - 1`` of ``mels`` (B, M, F), silence outside 0 .. F-1."""
    frames = mels.shape[-1]
    out = mels.new_full((*mels.shape[:-1], count), SILENCE)
    lo, hi = max(first, 0), min(first + count, frames)
    if hi > lo:
        out[..., lo - first : hi - first] = mels[..., lo:hi]
    return out


class Conditioner(nn.Module):
    """The label embedding and the mel network of a conditioned ``WaveNet``."""

    def __init__(self, config: ModelConfig, layers: int) -> None:
        super().__init__()
        self.layers, self.channels = layers, 2 * config.gate_channels  # per layer
        width = layers * self.channels
        self.labels = nn.Embedding(len(config.labels), width) if config.labels else None
        if self.labels is not None:
            # N(0, 1), not small: the past samples already say a lot (e.g. the pitch), and a
            # weak label term is learnt to be ignored (see ../shared/notes on small models).
            nn.init.normal_(self.labels.weight, 0.0, 1.0)
        self.hop = config.mel_hop
        self.frame_net = None
        if config.mel_channels:
            hidden = config.cond_channels
            self.frame_net = nn.Sequential(
                nn.Conv1d(config.mel_channels, hidden, 3),
                nn.Tanh(),
                nn.Conv1d(hidden, hidden, 3),
                nn.Tanh(),
                nn.Conv1d(hidden, width, 1),
            )
            nn.init.normal_(self.frame_net[-1].weight, 0.0, 1.0 / math.sqrt(hidden))
            # Row k weighs frame f-1+k for each of the hop samples of frame f; linear
            # interpolation between frame centres to start with.
            position = (torch.arange(self.hop) + 0.5 - self.hop / 2) / self.hop  # (hop,) in (-0.5, 0.5)
            kernel = torch.stack([(-position).clamp(min=0), 1 - position.abs(), position.clamp(min=0)])
            self.upsample_kernel = nn.Parameter(kernel)  # (3, hop)

    def label_terms(self, labels: torch.Tensor) -> torch.Tensor:  # (B,) -> (B, L·2G)
        assert self.labels is not None
        return self.labels(labels)

    def frame_terms(self, mels: torch.Tensor) -> torch.Tensor:
        """Log-mels (B, M, n) -> per-layer terms at the frame rate (B, L·2G, n - 4), for frames
        2 .. n-3 of the input (the convolutions are unpadded)."""
        assert self.frame_net is not None
        return self.frame_net((mels - _MEL_CENTER) / _MEL_SCALE)

    def upsample(self, frames: torch.Tensor, offsets: torch.Tensor | int, length: int) -> torch.Tensor:
        """Frame-rate terms (B, C, n) -> (B, C, length) at the sample rate.

        The output covers frames 1 .. n-2 of the input (each reads its two neighbours),
        ``(n - 2)·hop`` samples, cropped to ``length`` samples starting ``offsets`` (an int, or
        an int64 tensor (B,) of one per row, on the frames' device) into that range.
        """
        # Each output frame's samples weigh the previous, own and next frame: one product
        # (B, C, n-2, 3) @ (3, hop) -> (B, C, n-2, hop).
        neighbours = torch.stack([frames[..., :-2], frames[..., 1:-1], frames[..., 2:]], dim=-1)
        full = (neighbours @ self.upsample_kernel.to(neighbours.dtype)).flatten(-2)  # (B, C, (n-2)·hop)
        if isinstance(offsets, int):
            return full[..., offsets : offsets + length]
        # One gather for every row, its offsets read on the device (no host read: a CUDA graph
        # replays it for windows at other offsets).
        index = offsets[:, None, None] + torch.arange(length, device=full.device)  # (B, 1, length)
        return full.gather(2, index.expand(-1, full.shape[1], -1))  # (B, C, length)


class WindowTerms:
    """Training-time terms for a batch of windows, computed layer by layer when the model asks
    (the full L·2G × T tensor would take gigabytes for a large model).

    ``mels`` (B, M, n) are the frames ``mel_window`` names for each window's first sample and
    ``offsets`` (B,) that sample's position in its frame (``start % hop``).
    """

    def __init__(
        self,
        conditioner: Conditioner,
        length: int,
        labels: torch.Tensor | None = None,
        mels: torch.Tensor | None = None,
        offsets: torch.Tensor | None = None,
    ) -> None:
        self.conditioner, self.length = conditioner, length
        self.labels = None if labels is None else conditioner.label_terms(labels)  # (B, L·2G)
        self.frames = None if mels is None else conditioner.frame_terms(mels)  # (B, L·2G, n-4)
        self.offsets = None if offsets is None or mels is None else offsets.to(mels.device)  # (B,) int64

    def layer(self, index: int) -> torch.Tensor:
        c = self.conditioner.channels
        columns = slice(index * c, (index + 1) * c)
        term = None
        if self.frames is not None:
            term = self.conditioner.upsample(self.frames[:, columns], self.offsets, self.length)
        if self.labels is not None:
            label = self.labels[:, columns, None]  # (B, 2G, 1)
            term = label if term is None else term + label
        return term


class StackedTerms:
    """Terms held as one tensor (B, L, 2G, T or 1)."""

    def __init__(self, terms: torch.Tensor) -> None:
        self.terms = terms

    def layer(self, index: int) -> torch.Tensor:
        return self.terms[:, index]


class Conditioning:
    """What a batch of generated streams is conditioned on, for the sampling engines.

    Times count from the first generated sample (0); the past before it (silence, a prime) has
    negative times, where the mel features are silence. ``bias(start, count)`` gives every
    layer's term, (B, count, L, 2G) float32, which the engines add to the conv output.
    """

    def __init__(self, model: nn.Module, labels: torch.Tensor | None = None, mels: torch.Tensor | None = None) -> None:
        conditioner: Conditioner = model.conditioner
        if conditioner is None:
            raise ValueError("the model is not conditioned")
        if (labels is None) != (conditioner.labels is None) or (mels is None) != (conditioner.frame_net is None):
            raise ValueError("conditioning must match the model: labels and mels exactly as it was trained with")
        self.conditioner = conditioner
        given = labels if labels is not None else mels
        assert given is not None  # a conditioner has labels, mels or both, and they match it (above)
        self.batch = given.shape[0]
        self.layers, self.channels = conditioner.layers, conditioner.channels
        param = next(conditioner.parameters())
        self.device = param.device
        with torch.inference_mode():
            self.label_terms = None if labels is None else conditioner.label_terms(labels.to(self.device)).float()
        self.mels = None if mels is None else mels.to(self.device, torch.float32)
        self.time_invariant = mels is None  # labels only: the same term at every step

    def extend(self, mels: torch.Tensor) -> None:
        """Append frames (B, M, count) to the mel features, for features that arrive while the
        streams are generated (a live vocoder). Engines read the features through this object,
        so the new frames are theirs from their next step; a step must not have read a frame
        before it arrived (frames not yet given read as silence)."""
        if self.mels is None:
            raise ValueError("the model is not conditioned on mel features")
        self.mels = torch.cat([self.mels, mels.to(self.device, torch.float32)], dim=-1)

    @property
    def frames(self) -> int:
        """The number of mel frames given so far (0 without mel features)."""
        return 0 if self.mels is None else self.mels.shape[-1]

    @torch.inference_mode()
    def bias(self, start: int, count: int) -> torch.Tensor:
        """Every layer's term for times ``start .. start + count - 1``: (B, count, L, 2G)."""
        shape = (self.batch, self.layers, self.channels)
        if self.mels is None:
            assert self.label_terms is not None  # without mels a conditioner has labels
            return self.label_terms.view(*shape)[:, None].expand(-1, count, -1, -1)
        c = self.conditioner
        first, frames = mel_window(start, count, c.hop)
        terms = c.upsample(c.frame_terms(slice_frames(self.mels, first, frames)), start % c.hop, count)
        terms = terms.float()  # (B, L·2G, count)
        if self.label_terms is not None:
            terms = terms + self.label_terms[:, :, None]
        return terms.view(*shape, count).permute(0, 3, 1, 2)

    def terms(self, start: int, count: int) -> StackedTerms:
        """The same as ``bias``, laid out for ``WaveNet.forward``."""
        return StackedTerms(self.bias(start, count).permute(0, 2, 3, 1))  # (B, L, 2G, count)
