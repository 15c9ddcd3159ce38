"""``wavegen synth``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..generate.request import GenerationRequest
from ..limits import MAX_SECONDS, MAX_STREAMS
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
@options(RUN_OR_CHECKPOINT)
@click.option("--model", "shipped", metavar="NAME", help="A model that ships with wavegen (see `wavegen models`).")
@click.option(
    "--seconds",
    type=float,
    help=f"Length of each output in seconds, at most {MAX_SECONDS:g} (default: 2; with --mel, the features' length).",
)
@click.option(
    "-n",
    "--n",
    "n",
    type=int,
    help=f"Number of streams generated together, 1 to {MAX_STREAMS} (default: 1, or one per label).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Stream i uses seed + i.")
@click.option("--temperature", type=float, default=1.0, show_default=True, help="Softmax temperature (> 0).")
@SAMPLES_OUT(
    "Folder for the WAVs; '-': one WAV on standard output as it is made (channel i = stream i), "
    "for a player: --out - | aplay."
)
@options(LIVE)
@click.option(
    "--engine",
    type=ENGINE_CHOICE,
    default="auto",
    show_default=True,
    help="auto: the fastest that runs here (native on a CPU; on a GPU persistent for up to 8 streams, "
    "cuda-graph for more; with --device auto, native on the CPU when a trial finds it faster).",
)
@DEVICE
@PRECISION
@click.option("--prime", type=click.Path(path_type=Path), help="Continue the end of this recording instead of silence.")
@click.option(
    "--label",
    "labels",
    multiple=True,
    metavar="NAME",
    help="Label to generate (labelled models; repeatable: one per stream; default: each label in turn).",
)
@click.option(
    "--mel", type=click.Path(path_type=Path), help="Log-mel features (.npy, frames × bands) for a vocoder model."
)
@click.option("-q", "--quiet", is_flag=True, help=QUIET)
@friendly_errors
def synth(
    run,
    checkpoint,
    shipped,
    seconds,
    n,
    seed,
    temperature,
    out,
    fmt,
    play,
    engine,
    device,
    precision,
    prime,
    labels,
    mel,
    quiet,
):
    """Generate audio from a trained model and write 16-bit WAV files, or stream it (--out -, --play)."""
    # Checked before torch is imported, so that a mistake is answered at once.
    request = GenerationRequest(seconds, n, seed, temperature, engine, device, precision, labels, prime, mel)
    if shipped is not None:
        if run is not None or checkpoint is not None:
            raise click.UsageError("--model names a shipped model: give it, --run or --checkpoint, not several")
        from ..pretrained import find

        checkpoint = find(shipped)
    to = live_sink(out, fmt, play)
    if to is not None:
        from ..synthesis.live import synthesize_live

        synthesize_live(pick_checkpoint(run, checkpoint), request, to, None if play else sys.stdout.buffer)
        return
    writable_folder(out)
    from ..synthesis.synth import synthesize

    synthesize(pick_checkpoint(run, checkpoint), out, request, progress=not quiet)
