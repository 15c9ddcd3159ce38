"""Engine trials: timing engines against each other (``trial_rate``), and what this machine's
trials found, remembered between runs.

Where two engines could each be the fastest (the GPU's persistent engine and the CPU's native
engine, for up to 8 streams), ``choice`` times both. The winner depends on the machine (the
CPU, the cores this process may use, the GPU), the software (wavegen, torch) and the model's
shape and stream count, none of which a user changes between two runs of ``synth``; so it is
kept in ``trials.json`` in the cache folder (``wavegen.cache``) under a key of all of them,
and the next run with the same key builds the winner alone: no second engine built, no trial.
A changed machine, version or shape is a new key, timed afresh. Deleting the file forgets
every result.

The file also records the (GPU, shape) pairs whose persistent kernel has compiled, so that the
first compile is announced and later runs (which load Triton's cached kernel) say nothing.

A cache that cannot be read or written costs only time: a trial then runs as it would have.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import time
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from ..audio.features import SILENCE
from ..cache import cache_dir
from ..errors import WavegenError
from ..files import atomic_write_text
from ..model.conditioning import Conditioning
from ..model.network import WaveNet
from .engine import Engine
from .engines import generate

TRIAL_SAMPLES = 2048  # per stream, timed for each candidate after a warm-up of
WARM_UP_SAMPLES = 512  # (enough for the native engine to time its thread layouts: see tuning)
FILE = "trials.json"
VERSION = 1


def trial_rate(engine: Engine, device: torch.device, model: WaveNet, streams: int) -> float:
    """Samples/s summed over ``streams`` streams of ``TRIAL_SAMPLES`` each, after a warm-up of
    ``WARM_UP_SAMPLES`` (a first compile, the thread layouts); conditioned on silence where the
    model is."""
    seeds, cond = list(range(streams)), silent(engine.model, streams)
    generate(engine, WARM_UP_SAMPLES, seeds, conditioning=cond)
    tick = time.perf_counter()
    generate(engine, TRIAL_SAMPLES, seeds, conditioning=cond)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return streams * TRIAL_SAMPLES / (time.perf_counter() - tick)


def silent(model: WaveNet, streams: int) -> Conditioning | None:
    """Conditioning on the first label and on silent mel frames, where ``model`` is conditioned
    (what a trial and a first compile generate from)."""
    c = model.config
    labels = torch.zeros(streams, dtype=torch.long) if c.labels else None
    mels = torch.full((streams, c.mel_channels, 1), SILENCE) if c.mel_channels else None
    return None if labels is None and mels is None else Conditioning(model, labels, mels)


def path() -> Path | None:
    """The file, or None where there is no cache folder."""
    try:
        return cache_dir() / FILE
    except WavegenError:
        return None


@lru_cache(maxsize=1)
def machine() -> str:
    """This machine as the trials depend on it: CPU model and usable cores (or
    ``$WAVEGEN_THREADS``), the GPU, and the versions of wavegen and torch."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        cores = str(len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        cores = str(os.cpu_count() or 1)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    threads = os.environ.get("WAVEGEN_THREADS") or cores
    return f"{cpu} ×{threads} threads, {gpu}, wavegen {_version()}, torch {torch.__version__}"


def _version() -> str:
    try:
        return metadata.version("wavegen")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


def shape(model: WaveNet) -> str:
    """A short hash of the model's configuration (its shape and conditioning)."""
    fields = json.dumps(dataclasses.asdict(model.config), sort_keys=True, default=str)
    return hashlib.sha256(fields.encode()).hexdigest()[:12]


def trial_key(model: WaveNet, streams: int, candidates: list[str]) -> str:
    """The key of a trial of ``candidates`` (names such as "persistent on cuda") for
    ``streams`` streams of ``model`` on this machine."""
    return f"{machine()} | model {shape(model)} | {streams} streams | {', '.join(candidates)}"


def recall(key: str, part: str = "trials") -> Any:
    """What was remembered under ``key`` in ``part`` of the file, or None."""
    known = _read().get(part)
    return known.get(key) if isinstance(known, dict) else None


def remember(key: str, value: Any, part: str = "trials") -> None:
    """Keep ``value`` under ``key`` (the file rewritten whole and atomically; errors ignored)."""
    where = path()
    if where is None:
        return
    known = _read()
    if not isinstance(known.get(part), dict):
        known[part] = {}
    known[part][key] = value
    known["version"] = VERSION
    try:
        atomic_write_text(where, json.dumps(known, indent=1) + "\n")
    except (OSError, WavegenError):
        pass


def compiled_key(model: WaveNet) -> str:
    """The key under which a persistent kernel's first compile for ``model`` is remembered."""
    return f"{machine()} | model {shape(model)}"


def stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def _read() -> dict:
    where = path()
    try:
        known = json.loads(where.read_text()) if where is not None else {}
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) and known.get("version") == VERSION else {}
