"""``wavegen vocode``."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from click.core import ParameterSource

from ..generate.request import GenerationRequest
from ..outputs import writable_folder
from ..runs import pick_checkpoint
from .common import (
    DEVICE,
    ENGINE_CHOICE,
    LIVE,
    PRECISION,
    QUIET,
    RUN_OR_CHECKPOINT,
    SAMPLES_OUT,
    friendly_errors,
    live_sink,
    options,
)


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@options(RUN_OR_CHECKPOINT)
@SAMPLES_OUT("Folder for the WAVs (one per INPUT); '-': a WAV on standard output, with --stream.")
@click.option("--seed", type=int, default=0, show_default=True, help="Input i uses seed + i.")
@click.option("--temperature", type=float, default=1.0, show_default=True, help="Softmax temperature (> 0).")
@click.option(
    "--label", "labels", multiple=True, metavar="NAME", help="Label, for a labelled vocoder (one, or one per input)."
)
@click.option(
    "--stream",
    is_flag=True,
    help="Write the audio as it is made from one INPUT read as it comes: '-' (standard input: a WAV "
    "stream, or raw float32 log-mel frames of the model's bands), a .npy of frames, or an audio file; "
    "to standard output as a WAV (--out -) unless --play.",
)
@options(LIVE)
@click.option(
    "--engine",
    type=ENGINE_CHOICE,
    default="auto",
    show_default=True,
    help="auto: the fastest that runs here; engines and their speeds: docs/engines.md.",
)
@DEVICE
@PRECISION
@click.option("-q", "--quiet", is_flag=True, help=QUIET)
@friendly_errors
def vocode(
    inputs, run, checkpoint, out, seed, temperature, labels, stream, fmt, play, engine, device, precision, quiet
):
    """Resynthesise recordings from their log-mel features with a vocoder model, or, with
    --stream, turn features or audio into sound as they arrive."""
    # Checked before torch is imported, so that a mistake is answered at once.
    request = GenerationRequest(
        seed=seed, temperature=temperature, engine=engine, device=device, precision=precision, labels=labels
    )
    if stream and not play and click.get_current_context().get_parameter_source("out") == ParameterSource.DEFAULT:
        out = Path("-")  # --stream writes to standard output unless told otherwise
    to = live_sink(out, fmt, play)
    if stream and to is None:
        raise click.UsageError("--stream writes to standard output (--out -) or the device (--play), not a folder")
    if to is not None:
        if len(inputs) != 1:
            raise click.UsageError(f"a stream takes one INPUT, not {len(inputs)}")
        from ..synthesis.live import vocode_live

        target = None if to == "play" else sys.stdout.buffer
        vocode_live(pick_checkpoint(run, checkpoint), inputs[0], request, to, target, sys.stdin.buffer)
        return
    if any(str(path) == "-" for path in inputs):
        raise click.UsageError("INPUT '-' (standard input) is read with --stream")
    writable_folder(out)
    from ..synthesis.vocode import vocode as run_vocode

    run_vocode(pick_checkpoint(run, checkpoint), list(inputs), out, request, progress=not quiet)
