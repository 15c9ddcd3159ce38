"""Training windows drawn from prepared data (layout and padding: ``data.prepared``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from ..audio.features import SILENCE
from ..audio.mulaw import SILENCE_CODE
from ..errors import DataError
from ..model.conditioning import mel_window
from ..model.loss import IGNORE
from .prepared import Split


class Batch(NamedTuple):
    """Training windows: codes (B, W) int64, targets (B, segment) int64 and, with
    conditioning, label ids (B,), the mel frames each window depends on (B, bands, n) float32
    (``conditioning.mel_window``) and the window's first sample's place in its frame (B,)."""

    inputs: np.ndarray
    targets: np.ndarray
    labels: np.ndarray | None = None
    mels: np.ndarray | None = None
    offsets: np.ndarray | None = None


class WindowSampler:
    """Draws random training windows from one split with its own numpy RNG (state is saveable)."""

    def __init__(
        self,
        split: Split,
        context: int,
        segment: int,
        seed: int | np.random.SeedSequence,
        start_fraction: float = 0.0,
        start_silence: int = 0,
    ) -> None:
        if not split.spans:
            raise DataError(f"{split.name}: no samples to draw windows from (prepare more or longer files)")
        self.split, self.context, self.segment = split, context, segment
        self.start_fraction = start_fraction
        # windows without context drawn from a file's start lead with this much silence (at
        # most half the window, so that most of it is still targets)
        self.start_silence = min(start_silence, segment // 2) if context == 0 else 0
        lengths = np.array([length for _, length in split.spans], dtype=np.float64)
        self.weights = lengths / lengths.sum()  # every target sample equally likely
        self.rng = np.random.default_rng(seed)

    def window(
        self, file_index: int, target_start: int, inputs: np.ndarray | None = None, targets: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Inputs (context + segment,) and targets (segment,) for one file and target start,
        written into ``inputs`` and ``targets`` when given (rows of a batch: no second copy)."""
        offset, length = self.split.spans[file_index]
        begin, end = target_start - self.context, target_start + self.segment
        window = np.empty(end - begin, dtype=np.int64) if inputs is None else inputs
        lo, hi = max(begin, 0), min(end, length)
        window[: lo - begin] = SILENCE_CODE
        window[lo - begin : hi - begin] = self.split.codes[offset + lo : offset + hi]
        window[hi - begin :] = SILENCE_CODE
        if targets is None:
            targets = np.empty(self.segment, dtype=np.int64)
        targets[:] = window[self.context :]
        targets[max(hi - target_start, 0) :] = IGNORE  # past the file's end: not a target
        targets[: max(-target_start, 0)] = IGNORE  # before the file's start (start_silence): not a target
        return window, targets

    def window_mels(self, file_index: int, start: int, length: int) -> tuple[np.ndarray, int]:
        """The mel frames (bands, n) that samples ``start .. start + length - 1`` of a file
        depend on (silence outside the file), and ``start``'s offset in its frame."""
        mels = self.split.mels
        assert mels is not None  # asked only of a split with mel frames (``windows``)
        offset, count = self.split.mel_spans[file_index]
        first, n = mel_window(start, length, self.split.hop)
        out = np.full((n, mels.shape[1]), SILENCE, np.float32)
        lo, hi = max(first, 0), min(first + n, count)
        if hi > lo:
            out[lo - first : hi - first] = mels[offset + lo : offset + hi]
        return out.T, start % self.split.hop

    def batch(self, batch_size: int) -> Batch:
        """Random windows: inputs (B, context + segment), targets (B, segment), and their
        conditioning when the data has labels or mels."""
        files = self.rng.choice(len(self.split.spans), size=batch_size, p=self.weights)
        starts = []
        from_start = self.rng.random(batch_size) < self.start_fraction
        for f, at_start in zip(files, from_start):
            length = self.split.spans[f][1]
            last = max(length - self.segment, 0)
            # Windows whose context reaches back past the file's start (into silence) teach the
            # model to begin a sound from silence, which is where generation starts. In long
            # files they are rare, so a share of windows is drawn from there on purpose.
            high = min(self.context, last) if at_start else last
            start = int(self.rng.integers(0, high + 1))  # drawn either way: the same RNG stream in both modes
            starts.append(-self.start_silence if at_start and self.start_silence else start)
        return self.windows([int(f) for f in files], starts)

    def windows(self, files: list[int], target_starts: list[int]) -> Batch:
        """The windows whose targets begin at ``target_starts`` in ``files``, with their
        conditioning when the data has labels or mels."""
        inputs = np.empty((len(files), self.context + self.segment), np.int64)  # (B, context + segment)
        targets = np.empty((len(files), self.segment), np.int64)  # (B, segment)
        for row, (f, t) in enumerate(zip(files, target_starts)):
            self.window(f, t, inputs[row], targets[row])  # read from the memmap straight into the batch
        batch = Batch(inputs, targets)
        if self.split.labels is not None:
            batch = batch._replace(labels=np.array([self.split.labels[f] for f in files], np.int64))
        if self.split.mels is not None:
            length = self.context + self.segment
            mels, offsets = zip(*(self.window_mels(f, t - self.context, length) for f, t in zip(files, target_starts)))
            batch = batch._replace(mels=np.stack(mels), offsets=np.array(offsets, np.int64))
        return batch

    def state(self) -> Mapping[str, Any]:
        return self.rng.bit_generator.state

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.rng.bit_generator.state = state
