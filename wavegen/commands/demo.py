"""The built-in demo: generated melodies of harmonic tones → prepare → train (tiny) → synth → report.

It needs no user data and nothing from the network, so a fresh install can hear what wavegen
does within a few minutes on a CPU. The samples and the page about them (``wavegen report``)
go into ``out``: ``samples/index.html`` beside the WAVs, the page committed in the repository.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import click

from ..config import apply_overrides
from ..generate.request import GenerationRequest
from ..limits import MAX_SECONDS, MAX_STREAMS, check_samples
from ..outputs import leaves_no_empty_folder, writable_folder
from ..recipe import load_recipe
from ..runs import pick_checkpoint
from .common import QUIET, SAMPLES_OUT, friendly_errors

logger = logging.getLogger(__name__)


def demo_request(seconds: float, n: int) -> GenerationRequest:
    """What synth would refuse at the end of the demo, refused now, not after minutes of
    training (``ConfigError``)."""
    request = GenerationRequest(seconds=seconds, n=n, seed=0)
    rate = load_recipe("tiny").data.sample_rate
    check_samples(n, round(seconds * rate), rate)
    return request


@leaves_no_empty_folder("workdir", "out")
def run_demo(
    workdir: Path = Path("demo"),
    out: Path = Path("samples"),
    steps: int = 2000,
    seconds: float = 2.0,
    n: int = 2,
    progress: bool = True,
) -> list[Path]:
    """The whole pipeline on the built-in dataset; returns the WAV files written. The page about
    the run and its samples is ``out/index.html`` (it shows the WAVs where they are)."""
    from ..data.builtin import make_dataset
    from ..data.prepare import prepare
    from ..report.page import build_report
    from ..synthesis.synth import synthesize
    from ..train.loop import train

    start = time.perf_counter()
    workdir = Path(workdir)
    config = apply_overrides(load_recipe("tiny"), [f"train.steps={steps}"])
    request = demo_request(seconds, n)
    writable_folder(workdir, "--workdir")
    writable_folder(out)
    dataset = workdir / "dataset"
    make_dataset(dataset, sample_rate=config.data.sample_rate, progress=progress)
    logger.info(f"[1/4] wrote the built-in dataset (melodies of harmonic tones) to {dataset}")
    logger.info("[2/4] prepare")
    prepare(dataset, workdir / "prepared", config.data, progress=progress)
    logger.info(f"[3/4] train the tiny recipe for {steps} steps")
    run = workdir / "melodies"
    train(config, workdir / "prepared", run, device="auto", progress=progress)
    logger.info("[4/4] synth")
    # The samples and their page are committed in the repository: nothing in them may change
    # when the demo runs again on the same machine (no dates, no timings; the speed is logged).
    result = synthesize(pick_checkpoint(run), out, request, progress=progress, timings=False)
    page = build_report(run, [Path(out)], out, timings=False)
    logger.info(
        f"demo finished in {time.perf_counter() - start:.0f} s; listen to: "
        + ", ".join(str(p) for p in result.files)
        + f", or open {page.index} in a browser"
    )
    return result.files


@click.command()
@click.option(
    "--workdir",
    type=click.Path(path_type=Path),
    default=Path("demo"),
    show_default=True,
    help="Where the built-in dataset, prepared data and run go.",
)
@SAMPLES_OUT("Folder for the WAVs and the page about them (index.html).")
@click.option("--steps", type=click.IntRange(min=1), default=2000, show_default=True, help="Training steps.")
@click.option(
    "--seconds", type=float, default=2.0, show_default=True, help=f"Length of each sample, at most {MAX_SECONDS:g} s."
)
@click.option(
    "-n",
    "--n",
    "n",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help=f"Samples generated, 1 to {MAX_STREAMS}.",
)
@click.option("-q", "--quiet", is_flag=True, help=QUIET)
@friendly_errors
def demo(workdir, out, steps, seconds, n, quiet):
    """Run the whole pipeline on a built-in dataset of generated melodies (no data needed)."""

    run_demo(workdir, out, steps, seconds, n, progress=not quiet)
