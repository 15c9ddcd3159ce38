"""``wavegen eval``: score a trained model on prepared data (``train.evaluate``)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..limits import MAX_SECONDS
from ..runs import pick_checkpoint
from .common import (
    DEVICE,
    ENGINE_CHOICE,
    PRECISIONS,
    QUIET,
    RUN_OR_CHECKPOINT,
    friendly_errors,
    options,
)


@click.command(name="eval")
@options(RUN_OR_CHECKPOINT)
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    default=Path("prepared"),
    show_default=True,
    help="Prepared data whose validation part is scored.",
)
@click.option(
    "--seconds",
    type=click.FloatRange(min=0.01),
    default=2.0,
    show_default=True,
    help=f"Vocoder models: seconds resynthesised per validation file, at most {MAX_SECONDS:g}.",
)
@click.option(
    "--files",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Vocoder models: validation files resynthesised.",
)
@click.option(
    "--max-seconds",
    type=click.FloatRange(min=0.01),
    default=600.0,
    show_default=True,
    help="Validation audio scored at most (from the first held-out file on).",
)
@click.option(
    "--engine",
    type=ENGINE_CHOICE,
    default="auto",
    show_default=True,
    help="Vocoder models: the engine that resynthesises (auto: the fastest that runs here).",
)
@DEVICE
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default="fp32",
    show_default=True,
    help="Score the model as the native CPU engine computes it with bf16 or int8 weights (vocoders also "
    "resynthesise with them): what the precision costs in bits/sample. fp32 is exact.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Also print the results as one JSON object on stdout (the report lines stay on stderr).",
)
@click.option("-q", "--quiet", is_flag=True, help=QUIET)
@friendly_errors
def evaluate_command(run, checkpoint, data, seconds, files, max_seconds, engine, device, precision, as_json, quiet):
    """Score a model: validation bits per sample; for vocoders, the resynthesis log-mel distance."""
    from ..limits import check_eval_lengths

    check_eval_lengths(seconds, max_seconds)  # before torch is imported: answered at once
    from ..train.evaluate import evaluate as run_evaluate

    report = run_evaluate(
        pick_checkpoint(run, checkpoint),
        data,
        seconds,
        files,
        max_seconds,
        engine,
        device,
        progress=not quiet,
        precision=precision,
    )
    if as_json:
        click.echo(json.dumps(report))
