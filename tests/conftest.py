"""Shared fixtures: small generated audio, so the tests run anywhere without downloads."""
from __future__ import annotations

import errno
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from wavegen.audio.io import write_wav

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


def glide(knots_hz: list[float], seconds_per_knot: float, rate: int = 16000, amplitude: float = 0.5) -> np.ndarray:
    """A tone whose pitch moves log-linearly from knot to knot, with continuous phase."""
    n = int(seconds_per_knot * (len(knots_hz) - 1) * rate)
    at = np.linspace(0, n, len(knots_hz))
    freq = np.exp(np.interp(np.arange(n), at, np.log(knots_hz)))
    return (amplitude * np.sin(2 * np.pi * np.cumsum(freq) / rate)).astype(np.float32)


def pitch_track(audio: np.ndarray, rate: int = 16000, n_fft: int = 1024, hop: int = 256) -> np.ndarray:
    """Dominant frequency above 100 Hz of every spectrogram frame (Hann window, the peak bin
    refined by a parabola through its log-magnitude neighbours)."""
    window, track = np.hanning(n_fft), []
    for start in range(0, len(audio) - n_fft + 1, hop):
        power = np.abs(np.fft.rfft(audio[start : start + n_fft] * window))
        power[: int(100 * n_fft / rate)] = 0
        k = int(power.argmax())
        a, b, c = np.log(power[k - 1 : k + 2] + 1e-12)
        track.append((k + 0.5 * (a - c) / (a - 2 * b + c)) * rate / n_fft)
    return np.array(track)


class _FillingFile:
    """A file on a disk with ``disk.room`` bytes left: a write past it stores what fits and
    raises ENOSPC, as the kernel does."""

    def __init__(self, raw, disk):
        self._raw, self._disk = raw, disk

    def write(self, data):
        size = len(data.encode()) if isinstance(data, str) else memoryview(data).nbytes
        room = self._disk.room
        if room is not None and size > room:
            if room and not isinstance(data, str):
                self._raw.write(memoryview(data).cast("B")[:room])
            self._disk.room, self._disk.refused = 0, self._disk.refused + 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if room is not None:
            self._disk.room -= size
        return self._raw.write(data)

    def __getattr__(self, name):
        return getattr(self._raw, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._raw.__exit__(*exc)


@pytest.fixture
def full_disk(monkeypatch):
    """Files written through ``files.atomic_open`` (checkpoints, WAVs, config.toml, prepared
    data) land on a disk that fills up: set ``.room`` to the bytes left (None: no limit);
    ``.refused`` counts the writes that failed. Runs anywhere, unlike a real small filesystem."""
    from wavegen import files

    disk = SimpleNamespace(room=None, refused=0)

    class FillingOS:  # os for wavegen.files alone, with fdopen on the filling disk
        def __getattr__(self, name):
            return getattr(os, name)

        def fdopen(self, fd, *args, **kwargs):
            return _FillingFile(os.fdopen(fd, *args, **kwargs), disk)

    monkeypatch.setattr(files, "os", FillingOS())
    return disk
