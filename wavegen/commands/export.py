"""``wavegen export``."""

from __future__ import annotations

from pathlib import Path

import click

from .common import friendly_errors


@click.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@friendly_errors
def export(source, out):
    """Write a model to share or start from: OUT/model.safetensors, OUT/config.json and a model card.

    SOURCE is a run folder (its best checkpoint, else its latest), a checkpoint file or an
    exported folder. The weights are those the model generates with (the moving average when
    the run kept one); the optimizer, RNG and schedule state stay in the checkpoint. OUT may be
    new, empty or an earlier export (replaced). Use it as --checkpoint OUT/ anywhere, with
    wavegen.load("OUT/"), or as train --init-from OUT/."""
    from ..outputs import writable_folder
    from ..runs import pick_checkpoint

    writable_folder(out, "OUT")  # before torch is imported: answered at once
    checkpoint = pick_checkpoint(checkpoint=source) if source.is_file() else pick_checkpoint(run=source)
    from ..model.export import export_model

    export_model(checkpoint, out)
