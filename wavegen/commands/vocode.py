"""``wavegen vocode``."""

from __future__ import annotations

from pathlib import Path

import click

from .common import (
    ENGINE_CHOICE,
    PRECISION,
    QUIET,
    RUN_OR_CHECKPOINT,
    friendly_errors,
    log,
    options,
    quick_checks,
)


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@options(RUN_OR_CHECKPOINT)
@click.option("-o", "--out", type=click.Path(path_type=Path), default=Path("samples"), show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Input i uses seed + i.")
@click.option("--temperature", type=float, default=1.0, show_default=True, help="Softmax temperature (> 0).")
@click.option(
    "--label", "labels", multiple=True, metavar="NAME", help="Label, for a labelled vocoder (one, or one per input)."
)
@click.option("--engine", type=ENGINE_CHOICE, default="auto", show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@PRECISION
@click.option("-q", "--quiet", is_flag=True, help=QUIET)
@friendly_errors
def vocode(inputs, run, checkpoint, out, seed, temperature, labels, engine, device, precision, quiet):
    """Resynthesise recordings from their log-mel features with a vocoder model."""
    quick_checks(temperature=temperature, out=out)
    from ..generate.synth import pick_checkpoint
    from ..generate.vocode import vocode as run_vocode

    run_vocode(
        pick_checkpoint(run, checkpoint),
        list(inputs),
        out,
        seed,
        temperature,
        engine,
        device,
        labels=labels,
        log=log,
        progress=not quiet,
        precision=precision,
    )
