"""What the tests share: synthetic signals and their measures, and small builders (fixtures
stay in conftest.py)."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
from typing import Iterator

import numpy as np
import pytest

from wavegen.generate.native.check import random_model  # noqa: F401  (the native check's, shared)


@contextlib.contextmanager
def messages_said() -> Iterator[list[str]]:
    """The one-line messages wavegen logs inside (INFO and above, what the command line prints),
    gathered in a list by a handler on the ``wavegen`` logger: for helpers that have no caplog."""
    said: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: said.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("wavegen")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield said
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


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


def native_or_skip():
    """The native module, or a skip saying why the engine cannot be built here."""
    from wavegen.generate import native

    try:
        native.load()
    except native.NativeUnavailable as exc:
        pytest.skip(f"native engine unavailable: {exc}")
    return native


# The real command line, run as a user runs it (a subprocess).
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def wavegen(*args, cwd, ok=True, env=None):
    proc = subprocess.run(
        [sys.executable, "-m", "wavegen", *args],
        cwd=cwd,
        env={**ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )
    if ok:
        assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def one_line_error(proc, text):
    """A failure is a non-zero exit with one 'Error:' line naming the problem, no traceback."""
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and text in errors[0], proc.stderr


def run_in_process(*args: str, cwd: os.PathLike):
    """``wavegen ARGS`` in ``cwd``, in this process (CliRunner): (exit status, stdout, stderr)."""
    from click.testing import CliRunner

    from wavegen.cli import main

    here = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    finally:
        os.chdir(here)
    return result.exit_code, result.stdout, result.stderr


def fake_sounddevice(pull: bool = False, frames: int = 512):
    """A stand-in for the ``sounddevice`` module (put it in ``sys.modules``): its
    ``OutputStream`` keeps what it was opened with in ``module.streams``; ``start`` starts
    playing, which with ``pull`` is a thread that calls the callback ``frames`` at a time, as
    PortAudio does, keeping every frame it got in ``stream.played``."""
    import threading
    import time
    import types

    import numpy as np

    module = types.ModuleType("sounddevice")
    module.streams = []

    class PortAudioError(Exception):
        pass

    class OutputStream:
        def __init__(self, samplerate, channels, dtype, callback, **kwargs):
            self.rate, self.channels, self.dtype, self.callback = samplerate, channels, dtype, callback
            self.played, self.state, self.thread, self.closed = [], "open", None, False
            module.streams.append(self)

        def pull(self, count=frames):
            out = np.full((count, self.channels), np.nan, np.float32)
            self.callback(out, count, None, None)
            self.played.append(out.copy())
            return out

        def start(self):
            self.state = "started"
            if pull:
                self.thread = threading.Thread(target=self._run, daemon=True)
                self.thread.start()

        def _run(self):
            while self.state == "started":
                self.pull()
                time.sleep(0.001)

        def _halt(self, state):
            self.state = state
            if self.thread is not None:
                self.thread.join()

        def stop(self):
            self._halt("stopped")

        def abort(self):
            self._halt("aborted")

        def close(self):
            self.closed = True

    module.PortAudioError, module.OutputStream = PortAudioError, OutputStream
    return module
