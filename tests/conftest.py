"""Shared fixtures: small generated audio, so the tests run anywhere without downloads."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from wavegen.audio import write_wav

# Tiny models: one thread is faster than two on a busy 2-core machine, and keeps runs repeatable.
torch.set_num_threads(1)


def tone(freq: float, seconds: float, rate: int = 16000, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def spectrum_peak(audio: np.ndarray, rate: int) -> tuple[float, float]:
    """(dominant frequency above 20 Hz, spectral flatness): a sine has flatness ~0, noise ~0.56."""
    x = audio - audio.mean()
    power = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    power[freqs < 20] = 0
    flatness = np.exp(np.mean(np.log(power[freqs >= 20] + 1e-20))) / np.mean(power[freqs >= 20])
    return float(freqs[power.argmax()]), float(flatness)


@pytest.fixture
def tone_dataset(tmp_path: Path) -> Path:
    """A folder with one 5 s 440 Hz tone at 16 kHz."""
    folder = tmp_path / "dataset"
    write_wav(folder / "a440.wav", tone(440, 5.0), 16000)
    return folder
