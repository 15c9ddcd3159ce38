"""The conditioning terms of every step, as the cached engines read them.

- ``TermParts``: a ``Conditioning`` taken apart the way the cached engines use it (a fixed
  label term per stream, frame-rate mel terms they upsample themselves), computed in tiles at
  fixed places so that a term is the same number whichever rows are asked for;
- ``fill_step_terms``: the terms of a run of steps, upsampled (the graph and persistent engines);
- ``FrameBlocks``: the frame-rate terms a block of frames at a time, at fixed places so that the
  numbers a step reads do not depend on how a generation is split into calls, refreshed where
  mel frames arrive while it generates (a live vocoder).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch

from ..model.conditioning import mel_window, slice_frames

if TYPE_CHECKING:
    from ..model.conditioning import Conditioning


FRAME_TILE = 32  # frames of frame-rate terms computed together (TermParts.frames)


class TermParts:
    """A ``Conditioning`` taken apart the way the cached engines use it. The term of stream s at
    time t, with f = floor(t / hop) and j = t - f·hop, is

        ((k[0, j]·F(f-1) + k[1, j]·F(f)) + k[2, j]·F(f+1)) + fixed

    ``fixed`` (B, L, 2G): the label terms (None without labels); F(g) (B, L, 2G): the frame-rate
    terms of mel frame g (``frames``); k = ``kernel`` (3, hop). Without mel features ``hop`` is 0
    and the term is ``fixed`` at every step. This is ``Conditioning.bias``'s arithmetic in the
    order every cached engine uses (the tests hold the two together to rounding); it reads the conditioning's fields (``label_terms``,
    ``mels``, ``conditioner``), which is why it lives beside the engines that need it.
    """

    def __init__(self, conditioning: Conditioning, streams: torch.Tensor | None = None) -> None:
        """``streams``: the conditioning of these streams only (indices), else of every stream."""
        self.conditioner = conditioning.conditioner
        self.layers, self.channels = conditioning.layers, conditioning.channels
        labels = conditioning.label_terms  # (B, L·2G)
        self.streams = streams
        if streams is not None:
            labels = None if labels is None else labels[streams.to(labels.device)]
        self.batch = conditioning.batch if streams is None else len(streams)
        self.fixed = None if labels is None else labels.view(self.batch, self.layers, self.channels)
        self.hop = 0 if conditioning.mels is None else self.conditioner.hop
        self.kernel = None if not self.hop else self.conditioner.upsample_kernel.detach().float()  # (3, hop)
        self.conditioning = conditioning

    @property
    def mels(self) -> torch.Tensor | None:
        """The mel features (B, M, frames) of these streams, read from the conditioning each
        time (frames may arrive during a generation: ``Conditioning.extend``)."""
        mels = self.conditioning.mels
        if mels is None or self.streams is None:
            return mels
        return mels[self.streams.to(mels.device)]

    @torch.inference_mode()
    def frames(self, first: int, count: int) -> torch.Tensor:
        """F(first) .. F(first + count - 1): (B, count, L, 2G) float32.

        Computed in tiles of ``FRAME_TILE`` frames at fixed places (multiples of it), so that
        F(g) is the same number whichever rows are asked for: a convolution's rounding can
        depend on its input's length, and engines ask for blocks of different sizes (a live
        vocoder for a few rows at a time)."""
        mels, start = self.mels, first - first % FRAME_TILE
        tiles = [  # (B, L·2G, FRAME_TILE) each; the frame net reads ±2 frames
            self.conditioner.frame_terms(slice_frames(mels, s - 2, FRAME_TILE + 4)).float()
            for s in range(start, first + count, FRAME_TILE)
        ]
        terms = torch.cat(tiles, dim=-1)[..., first - start : first - start + count]  # (B, L·2G, count)
        return terms.reshape(self.batch, self.layers, self.channels, count).permute(0, 3, 1, 2)

    def window(self, start: int, count: int) -> PartsWindow:
        """The terms of times ``start .. start + count - 1`` for ``WaveNet.forward``, upsampled
        layer by layer when asked (all at once, (B, L, 2G, count), could take gigabytes)."""
        return PartsWindow(self, start, count)


class PartsWindow:
    """``TermParts.window``: per-layer terms (B, 2G, count), or (B, 2G, 1) for labels alone."""

    def __init__(self, parts: TermParts, start: int, count: int) -> None:
        self.parts, self.start, self.count = parts, start, count
        self.frames = None
        if parts.hop:
            first, frames = mel_window(start, count, parts.hop)
            with torch.inference_mode():  # (B, L·2G, frames - 4)
                self.frames = parts.conditioner.frame_terms(slice_frames(parts.mels, first, frames))

    @torch.inference_mode()
    def layer(self, index: int) -> torch.Tensor:
        parts, term = self.parts, None
        if self.frames is not None:  # what Conditioning.bias does, for this layer's channels only
            columns = self.frames[:, index * parts.channels : (index + 1) * parts.channels]
            term = parts.conditioner.upsample(columns, self.start % parts.hop, self.count).float()
        if parts.fixed is not None:
            label = parts.fixed[:, index, :, None]
            term = label if term is None else term + label
        return term


@torch.inference_mode()
def fill_step_terms(
    parts: TermParts, kernel: torch.Tensor, fixed: torch.Tensor | None, time: int, out: torch.Tensor
) -> None:
    """``out`` (steps, L, B, 2G) ← the terms of times ``time .. time + steps - 1``, upsampled from
    ``parts``' frame-rate terms as ``TermParts`` says (one gathered copy at a time), plus the
    labels' ``fixed`` term (L, B, 2G) if given; ``kernel`` (3, hop): the upsampling kernel on
    ``out``'s device."""
    hop, steps, device = parts.hop, out.shape[0], out.device
    first = time // hop - 1  # the frame row 0 holds
    frames = parts.frames(first, (time + steps - 1) // hop + 2 - first)  # (B, n, L, 2G)
    frames = frames.to(device).permute(1, 2, 0, 3)  # (n, L, B, 2G)
    t = torch.arange(time, time + steps, device=device)
    row = torch.div(t, hop, rounding_mode="floor")
    column = t - row * hop  # position in the frame
    row -= first + 1  # the row of frame f - 1
    weights = kernel[:, column].reshape(3, steps, 1, 1, 1)  # (3, steps, 1, 1, 1)
    torch.mul(frames[row], weights[0], out=out)
    out.addcmul_(frames[row + 1], weights[1])
    out.addcmul_(frames[row + 2], weights[2])
    if fixed is not None:
        out.add_(fixed)


# Frame-rate conditioning terms held at once by a cached engine: blocks of frames are sized to this.
TERM_BYTES = 32 << 20


class FrameBlocks:
    """The frame-rate terms F(g) of ``TermParts`` for the generated steps, a block of frames at a
    time; one block is kept.

    Block k serves the times of frames k·F .. (k+1)·F - 1 and holds F(k·F - 1) .. F((k+1)·F),
    the rows those times read (F = ``frames``, at most ``max_frames`` and so that a block takes at
    most ``max_bytes``). The blocks sit at fixed places, so the numbers a step reads do not depend
    on how a generation is split into calls. ``pack`` turns (B, rows, L, 2G) into an engine's
    layout of ``width`` floats per stream and row.
    """

    def __init__(
        self,
        parts: TermParts,
        pack: Callable[[torch.Tensor], torch.Tensor],
        width: int,
        max_frames: int = 256,
        max_bytes: int | None = None,
        row_dim: int = 1,
    ) -> None:
        """``row_dim``: the dimension of ``pack``'s output that holds the rows."""
        self.parts, self.pack, self.hop, self.row_dim = parts, pack, parts.hop, row_dim
        budget = TERM_BYTES if max_bytes is None else max_bytes
        self.frames = max(1, min(max_frames, budget // (4 * width * parts.batch) - 2))
        self.first: int | None = None  # frame of the block's row 0
        self.block: torch.Tensor | None = None
        self.known = 0  # the mel frames given when the block was made

    def at(self, t: int) -> tuple[torch.Tensor, int, int]:
        """The block serving time ``t``, the frame of its row 0, and how many steps from t on it
        serves."""
        frame = t // self.hop
        k = frame // self.frames
        first = k * self.frames - 1
        known = self.parts.conditioning.frames
        if first != self.first:
            self.block = None  # let the old block go before the new one is made
            self.block = self.pack(self.parts.frames(first, self.frames + 2))
            self.first, self.known = first, known
        elif self.known < known:  # frames arrived since the block was made (a live vocoder)
            self._refresh(known)
        assert self.block is not None
        return self.block, first, (k + 1) * self.frames * self.hop - t

    def _refresh(self, known: int) -> None:
        """Make again the rows that read a frame which has arrived since: F(g) reads mel frames
        g - 2 .. g + 2, so rows from ``self.known`` - 2 on, up to ``known`` + 1 (past it they
        read only frames still to come, silence, as when they were made)."""
        assert self.first is not None and self.block is not None
        lo = max(self.first, self.known - 2)
        hi = min(self.first + self.frames + 1, known + 1)
        if hi >= lo:
            rows = self.pack(self.parts.frames(lo, hi - lo + 1))
            self.block.narrow(self.row_dim, lo - self.first, hi - lo + 1).copy_(rows)
        self.known = known
