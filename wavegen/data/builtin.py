"""The built-in dataset of ``wavegen demo``: melodies of harmonic tones, generated."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..audio.io import write_wav
from ..progress import bar


def make_dataset(
    folder: Path, files: int = 24, seconds: float = 4.0, sample_rate: int = 16000, seed: int = 0, progress: bool = False
) -> list[Path]:
    """Write ``files`` melody WAVs into ``folder`` (deterministic for a given seed)."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in bar(range(files), enabled=progress, desc="dataset", unit="file", leave=False):
        path = Path(folder) / f"melody-{i:02d}.wav"
        write_wav(path, melody(seconds, sample_rate, rng), sample_rate)
        paths.append(path)
    return paths


# A minor pentatonic, A3..A4: pitches whose periods (36-73 samples at 16 kHz) fit well inside
# the tiny recipe's 129-sample receptive field.
SCALE_HZ = [220.0, 261.63, 293.66, 329.63, 392.0, 440.0]


def melody(seconds: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A random walk over the scale: notes of 0.25-0.6 s with three harmonics and a soft decay."""
    total = int(seconds * sample_rate)
    out = np.zeros(total, dtype=np.float64)
    pos, note = 0, int(rng.integers(len(SCALE_HZ)))
    while pos < total:
        length = min(int(rng.uniform(0.25, 0.6) * sample_rate), total - pos)
        t = np.arange(length) / sample_rate
        f = SCALE_HZ[note]
        tone = sum(a * np.sin(2 * np.pi * h * f * t) for h, a in ((1, 1.0), (2, 0.4), (3, 0.2)))
        envelope = np.minimum(t / 0.01, 1.0) * np.exp(-1.5 * t)  # 10 ms attack, gentle decay
        out[pos : pos + length] = 0.35 * tone * envelope
        pos += length
        note = int(np.clip(note + rng.choice([-2, -1, 1, 2]), 0, len(SCALE_HZ) - 1))
    return out.astype(np.float32)
