"""Shared fixtures: small generated audio, so the tests run anywhere without downloads."""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from wavegen.audio.io import write_wav

from helpers import tone

# Without a GPU, the persistent engine's Triton kernel runs under Triton's interpreter on the CPU
# (tests/generate/test_persistent.py); Triton reads the variable when it is first imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Tiny models: one thread is faster than two on a busy 2-core machine, and keeps runs repeatable.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _own_trials(tmp_path_factory, monkeypatch):
    """Engine trials remembered in a file of the test's own (``generate.trials``): a test's
    stand-in engines never decide a later test's engine, nor reach the user's cache."""
    from wavegen.generate import trials

    where = tmp_path_factory.mktemp("cache") / trials.FILE
    monkeypatch.setattr(trials, "path", lambda: where)


class Said(Sequence):
    """The one-line messages wavegen logged while the test ran (its ``wavegen`` loggers, INFO and
    above: what the command line prints), read from pytest's caplog as they come: a sequence of
    strings, equal to a list of them; ``clear()`` forgets those so far."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog

    def _lines(self) -> list[str]:
        return [r.getMessage() for r in self.caplog.records if r.name.split(".")[0] == "wavegen"]

    def __getitem__(self, index):
        return self._lines()[index]

    def __len__(self) -> int:
        return len(self._lines())

    def __eq__(self, other) -> bool:
        return self._lines() == list(other)

    def __repr__(self) -> str:
        return repr(self._lines())

    def clear(self) -> None:
        self.caplog.clear()


@pytest.fixture
def said(caplog) -> Said:
    """What wavegen says during the test (``Said``), at INFO and above as the command line shows it."""
    caplog.set_level(logging.INFO, logger="wavegen")
    return Said(caplog)


@pytest.fixture
def tone_dataset(tmp_path: Path) -> Path:
    """A folder with one 5 s 440 Hz tone at 16 kHz."""
    folder = tmp_path / "dataset"
    write_wav(folder / "a440.wav", tone(440, 5.0), 16000)
    return folder


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


@pytest.fixture
def recorded_native(monkeypatch):
    """The native engine, recording (device type, precision) of every one built: what is tested
    with it is which engine is asked for, at which precision, and what is said and written."""
    from helpers import native_or_skip

    native = native_or_skip()
    built = []

    class Recorded(native.NativeEngine):
        def __init__(self, model, device="cpu", threads=None, precision="fp32"):
            built.append((torch.device(device).type, precision))
            super().__init__(model, device, threads, precision)

    monkeypatch.setattr(native, "NativeEngine", Recorded)
    return built
