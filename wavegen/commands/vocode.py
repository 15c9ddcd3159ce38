"""``wavegen vocode``."""

from __future__ import annotations

from pathlib import Path

import click

from ..generate.request import GenerationRequest
from ..outputs import writable_folder
from ..runs import pick_checkpoint
from .common import (
    ENGINE_CHOICE,
    PRECISION,
    QUIET,
    RUN_OR_CHECKPOINT,
    friendly_errors,
    log,
    options,
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
    # Checked before torch is imported, so that a mistake is answered at once.
    request = GenerationRequest(
        seed=seed, temperature=temperature, engine=engine, device=device, precision=precision, labels=labels
    )
    writable_folder(out)
    from ..synthesis.vocode import vocode as run_vocode

    run_vocode(pick_checkpoint(run, checkpoint), list(inputs), out, request, log, progress=not quiet)
