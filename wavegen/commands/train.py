"""``wavegen train``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .common import DEVICE, QUIET, command_line, friendly_errors, verbosity


@click.command()
@click.option(
    "--data", type=click.Path(path_type=Path), default=Path("prepared"), show_default=True, help="Prepared data folder."
)
@click.option(
    "--run",
    "--run-dir",
    "run",
    type=click.Path(path_type=Path),
    help="Run folder; resumed if it exists. Under torchrun spell it --run-dir (torchrun takes --run for "
    "its own --run-path) (default: runs/RECIPE).",
)
@click.option("--recipe", help="Recipe name in recipes/ or a .toml path (default: 'default', or the run's own).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a setting, e.g. train.lr=3e-4.")
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    help="Train until this step, as --set train.steps=N (default: the recipe's or the run's).",
)
@click.option(
    "--init-from",
    type=click.Path(path_type=Path),
    metavar="RUN|CHECKPOINT|FOLDER",
    help="Start a new run from this model's weights and model settings (fresh optimizer, schedule, step 0); "
    "data and training settings from --recipe, else from that model's run.",
)
@DEVICE
@click.option(
    "--nproc",
    type=click.IntRange(min=1),
    metavar="N",
    help="Train in N processes on this machine (one per GPU) through torchrun; batch_size is per process.",
)
@click.option("-q", "--quiet", is_flag=True, help=QUIET)
@friendly_errors
def train(data, run, recipe, overrides, steps, init_from, device, nproc, quiet):
    """Train a model on prepared data, or resume the run if it has a checkpoint.

    Under torchrun (torchrun --nproc-per-node N -m wavegen train ...) every process runs this
    command and they train one model together; --nproc N starts torchrun for one machine.
    """
    from ..outputs import writable_folder
    from ..run_config import check_train_overrides

    check_train_overrides(list(overrides))  # before torch is imported: answered at once
    run = run or Path("runs") / Path(recipe or "default").stem
    writable_folder(run, "--run")
    from ..devices import resolve_device
    from ..messages import silenced
    from ..train import distributed
    from ..train.loop import train as run_train
    from ..train.settings import resolve_config

    launching = nproc is not None and nproc > 1
    speaks = not launching and distributed.from_env()[1] == 0  # what the config says, once: by rank 0
    with silenced(not speaks):
        resolved = resolve_config(run, data, recipe, list(overrides), steps, init_from=init_from)
    if launching:  # this command again, in nproc processes under torchrun (each resolves the config)
        # every option as given, from train's own parameters (--run as --run-dir, torchrun's --run
        # being its --run-path), with the run folder resolved and no --nproc; -v as in force here
        ctx = click.get_current_context()
        args = ["-m", "wavegen", "train", *command_line(ctx, run=run, nproc=None, verbose=verbosity())]
        sys.exit(distributed.launch(nproc, resolve_device(device), args))
    world = distributed.start(resolve_device(device))
    try:
        run_train(
            resolved.config,
            data,
            run,
            device=device,
            progress=not quiet,
            world=world,
            **resolved.found(),
        )
    finally:
        world.close()
