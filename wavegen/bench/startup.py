"""Start-up benchmark: how long ``wavegen synth`` takes from the command to its exit, as a user
runs it, on a fresh machine (cold) and after (warm).

Each run is ``python -m wavegen synth --checkpoint CK --seconds S`` in a subprocess, timed from
just before it starts to its exit (``time.perf_counter``), with a checkpoint of the recipe's
shape and random weights. The cold run finds empty caches: ``WAVEGEN_CACHE`` (the native
engine's build) and ``TRITON_CACHE_DIR`` (the GPU kernel's) point at new empty folders, so it
compiles what a first run on a new machine compiles. The warm runs reuse those folders. The
operating system's file cache is not emptied: "cold" is wavegen's caches, not the disk's.
The floor is ``python -m wavegen --version``: Python and the command line, without torch.

Everything lives in one temporary folder, removed afterwards: the user's own caches are never
read or written.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np

from ..config import Config
from ..errors import WavegenError
from ..model import checkpoint as ckpt

BUILDING = "building the native engine"  # the toolchain's line when it compiles (toolchain._compile)
FLOOR = [sys.executable, "-m", "wavegen", "--version"]


class Run(NamedTuple):
    """One ``synth``: its wall time in seconds, its sample's record (engine, precision, device)
    and whether it compiled the native engine."""

    seconds: float
    record: dict
    built_native: bool


def run(
    config: Config, seconds: float, device: str, repeats: int = 3, threads: int | None = None, bar=None
) -> Iterator[dict]:
    """Yield the floor, the cold start and the warm start of ``synth`` generating ``seconds`` of
    audio on ``device`` ("auto", "cpu" or "cuda", given to synth as it is) with ``config``'s model shape: one row each, with
    the wall time in seconds (the median of ``repeats`` runs for floor and warm, the one cold
    run), the engine, precision and device the sample's record names, and whether the run
    compiled the native engine. ``threads`` sets ``$WAVEGEN_THREADS`` and ``$OMP_NUM_THREADS``.
    ``bar`` (a tqdm) counts the runs. A synth that fails raises ``WavegenError`` with its last
    line on stderr."""
    if bar is not None:
        bar.reset(total=1 + 2 * repeats)
    with tempfile.TemporaryDirectory(prefix="wavegen-startup-") as folder:
        root = Path(folder)
        config = as_trained(config)
        checkpoint = write_checkpoint(config, root / "model.pt")
        env = environment(root, threads)
        command = [*synth_command(checkpoint, seconds, device), *mel_option(config, seconds, root), "--out"]
        yield _floor(repeats, env, bar)
        for start, count in (("cold", 1), ("warm", repeats)):
            runs = [_synth(start, command, root, env, bar) for _ in range(count)]
            yield _row(start, runs, seconds)


def as_trained(config: Config) -> Config:
    """``config`` with the model conditioned on the mel features its data settings store, as
    training on such data makes it (a recipe leaves that to the data)."""
    d = config.data
    if not d.mel_bands or config.model.mel_channels:
        return config
    model = dataclasses.replace(config.model, mel_channels=d.mel_bands, mel_hop=d.mel_hop)
    return dataclasses.replace(config, model=model)


def write_checkpoint(config: Config, path: Path) -> Path:
    """A checkpoint of ``config`` with random weights (the native check's ``random_model``) that
    ``synth --checkpoint`` reads: the file written at ``path``."""
    from ..generate.native.check import random_model  # (a Python function: nothing is built)

    ckpt.save(path, {"config": config.to_dict(), "model": random_model(config.model).state_dict(), "step": 0})
    return path


def synth_command(checkpoint: Path, seconds: float, device: str) -> list[str]:
    """The command line of one timed ``synth`` (its ``--out`` folder follows)."""
    synth = [sys.executable, "-m", "wavegen", "synth", "--checkpoint", str(checkpoint)]
    return [*synth, "--seconds", str(seconds), "--device", device, "--quiet"]


def mel_option(config: Config, seconds: float, root: Path) -> list[str]:
    """``--mel FILE`` with random log-mel features (frames, bands) for ``seconds`` of audio when
    the shape is conditioned on mels (synth needs them), else nothing."""
    bands, hop = config.model.mel_channels, config.model.mel_hop
    if not bands:
        return []
    frames = math.ceil(seconds * config.data.sample_rate / hop) + 1
    path = root / "mel.npy"
    np.save(path, np.random.default_rng(0).normal(-4, 2, (frames, bands)).astype(np.float32))
    return ["--mel", str(path)]


def environment(root: Path, threads: int | None) -> dict[str, str]:
    """This process's environment with the caches in new empty folders under ``root``."""
    caches = {"WAVEGEN_CACHE": root / "wavegen-cache", "TRITON_CACHE_DIR": root / "triton-cache"}
    for folder in caches.values():
        folder.mkdir()
    env = {**os.environ, **{name: str(folder) for name, folder in caches.items()}}
    if threads:
        env["WAVEGEN_THREADS"] = env["OMP_NUM_THREADS"] = str(threads)
    return env


def _floor(count: int, env: dict[str, str], bar) -> dict:
    """The floor's row: the median of ``count`` runs of ``python -m wavegen --version``."""
    took = []
    for _ in range(count):
        seconds, done = _timed(FLOOR, env)
        if done.returncode != 0:
            raise WavegenError(f"bench startup: `wavegen --version` exited with status {done.returncode}")
        took.append(seconds)
        _count(bar)
    row = {"start": "floor", "seconds": round(statistics.median(took), 3), "audio_seconds": None}
    return {**row, "engine": None, "precision": None, "device": None, "built_native": False, "runs": count}


def _row(start: str, runs: list[Run], audio_seconds: float) -> dict:
    """The row of ``runs``: the median time, the first run's record, built_native if any compiled."""
    record = runs[0].record
    return {
        "start": start,
        "seconds": round(statistics.median(r.seconds for r in runs), 3),
        "audio_seconds": audio_seconds,
        "engine": record.get("engine"),
        "precision": record.get("precision"),
        "device": record.get("device"),
        "built_native": any(r.built_native for r in runs),
        "runs": len(runs),
    }


def _synth(start: str, command: list[str], root: Path, env: dict[str, str], bar) -> Run:
    """One timed synth, writing into a new ``--out`` folder under ``root``; a failure is a
    ``WavegenError`` with its last line on stderr."""
    out = Path(tempfile.mkdtemp(prefix=f"{start}-", dir=root)) / "samples"
    took, done = _timed([*command, str(out)], env)
    _count(bar)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        last = lines[-1].removeprefix("Error: ") if lines else "no message"
        raise WavegenError(f"bench startup: the {start} `wavegen synth` exited with status {done.returncode}: {last}")
    records = sorted(out.glob("*.json"))
    if not records:
        raise WavegenError(f"bench startup: the {start} `wavegen synth` wrote no sample record")
    return Run(took, json.loads(records[0].read_text(encoding="utf-8")), BUILDING in done.stderr)


def _timed(command: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    """Run ``command``: (seconds from just before it starts to its exit, what it did)."""
    start = time.perf_counter()
    done = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    return time.perf_counter() - start, done


def _count(bar) -> None:
    if bar is not None:
        bar.update(1)
