"""The built-in demo: generated melodies of harmonic tones → prepare → train (tiny) → synth → report.

It needs no user data and nothing from the network, so a fresh install can hear what wavegen
does within a few minutes on a CPU. The samples and the page about them (``wavegen report``)
go into ``out``: ``samples/index.html`` beside the WAVs, the page committed in the repository.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from .audio import write_wav
from .config import apply_overrides, load_recipe
from .limits import check_samples, check_seconds, check_streams
from .outputs import leaves_no_empty_folder, writable_folder

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


def make_dataset(folder: Path, files: int = 24, seconds: float = 4.0, sample_rate: int = 16000, seed: int = 0,
                 progress: bool = False) -> list[Path]:
    """Write ``files`` melody WAVs into ``folder`` (deterministic for a given seed)."""
    from .progress import bar

    rng = np.random.default_rng(seed)
    paths = []
    for i in bar(range(files), enabled=progress, desc="dataset", unit="file", leave=False):
        path = Path(folder) / f"melody-{i:02d}.wav"
        write_wav(path, melody(seconds, sample_rate, rng), sample_rate)
        paths.append(path)
    return paths


@leaves_no_empty_folder("workdir", "out")
def run_demo(
    workdir: Path = Path("demo"),
    out: Path = Path("samples"),
    steps: int = 2000,
    seconds: float = 2.0,
    n: int = 2,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> list[Path]:
    """The whole pipeline on the built-in dataset; returns the WAV files written. The page about
    the run and its samples is ``out/index.html`` (it shows the WAVs where they are)."""
    from .data import prepare
    from .report import build_report
    from .synth import pick_checkpoint, synthesize
    from .train import train

    start = time.perf_counter()
    workdir = Path(workdir)
    config = apply_overrides(load_recipe("tiny"), [f"train.steps={steps}"])
    # What synth would refuse at the end is refused now, not after minutes of training.
    check_seconds(seconds)
    check_streams(n)
    check_samples(n, round(seconds * config.data.sample_rate), config.data.sample_rate)
    writable_folder(workdir, "--workdir")
    writable_folder(out)
    dataset = workdir / "dataset"
    make_dataset(dataset, sample_rate=config.data.sample_rate, progress=progress)
    log(f"[1/4] wrote the built-in dataset (melodies of harmonic tones) to {dataset}")
    log("[2/4] prepare")
    prepare(dataset, workdir / "prepared", config.data, log=log, progress=progress)
    log(f"[3/4] train the tiny recipe for {steps} steps")
    run = workdir / "melodies"
    train(config, workdir / "prepared", run, device="auto", log=log, progress=progress)
    log("[4/4] synth")
    result = synthesize(pick_checkpoint(run), out, seconds=seconds, n=n, seed=0, log=log, progress=progress)
    page = build_report(run, [Path(out)], out, log=log)
    log(f"demo finished in {time.perf_counter() - start:.0f} s; listen to: "
        + ", ".join(str(p) for p in result.files) + f", or open {page.index} in a browser")
    return result.files
