"""``wavegen prepare``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..config_ranges import MAX_MEL_BANDS, MAX_SAMPLE_RATE
from ..interrupts import note_kept
from .common import EXIT_SKIPPED, QUIET, friendly_errors


@click.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--out",
    type=click.Path(path_type=Path),
    default=Path("prepared"),
    show_default=True,
    help="Folder for the prepared codes and manifest.",
)
@click.option("--recipe", default="default", show_default=True, help="Recipe whose [data] settings apply.")
@click.option(
    "--sample-rate", type=click.IntRange(1000, MAX_SAMPLE_RATE), help="Resample to this rate (default: the recipe's)."
)
@click.option(
    "--val-fraction",
    type=click.FloatRange(0.0, 1.0, max_open=True),
    help="Tail of each file held out for validation (default: the recipe's).",
)
@click.option(
    "--trim-silence/--no-trim-silence",
    default=None,
    help="Trim leading/trailing silence, reported (default: the recipe's).",
)
@click.option(
    "--labels",
    type=click.Choice(["none", "folders"]),
    default=None,
    help="folders: label each file by its first-level folder, DATASET/<label>/... (sets data.label_source; "
    "default: the recipe's).",
)
@click.option(
    "--mels",
    type=click.IntRange(0, MAX_MEL_BANDS),
    default=None,
    help="Store this many log-mel bands per frame for a vocoder (sets data.mel_bands; 0: none; default: the recipe's).",
)
@click.option(
    "--channel",
    metavar="mix|N",
    default=None,
    help="mix: average a file's channels to mono; N: keep channel N alone (0 = first/left), e.g. for "
    "channels that cancel when mixed. Mono files are used as they are (default: the recipe's).",
)
@click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a data.* setting, e.g. data.mel_hop=200."
)
@click.option("-q", "--quiet", is_flag=True, help=QUIET)
@friendly_errors
def prepare(dataset, out, recipe, sample_rate, val_fraction, trim_silence, labels, mels, channel, overrides, quiet):
    """Encode every audio file under DATASET (recursively) for training.

    Audio is found by extension or, for other names, by content. Every other file is named
    too: audio that cannot be used (unreadable, damaged, NaN samples, silent, channels that
    cancel, shorter than the recipe's receptive field) is skipped with its reason; files that
    are not audio (a README, images), hidden ones (.DS_Store, .git/) and the --out folder are
    ignored, named in a line per reason. Nothing is written when nothing can be prepared.
    Exit status: 0 when every audio file was prepared (ignored files do not count), 3 when some
    were skipped, 1 when nothing usable was found.
    """
    from ..config import Config, ConfigError, apply_overrides, validate
    from ..outputs import writable_folder
    from ..recipe import load_recipe

    for item in overrides:
        if not item.strip().startswith("data."):
            raise ConfigError(f"--set {item}: prepare only takes data.* settings")
    full = apply_overrides(load_recipe(recipe), list(overrides))
    config = full.data
    if sample_rate is not None:
        config.sample_rate = sample_rate
    if val_fraction is not None:
        config.val_fraction = val_fraction
    if trim_silence is not None:
        config.trim_silence = trim_silence
    if labels is not None:
        config.label_source = labels
    if mels is not None:
        config.mel_bands = mels
    if channel is not None:
        config.channel = channel.strip()
    validate(Config(data=config))
    writable_folder(out)
    from ..data.prepare import has_problems
    from ..data.prepare import prepare as run_prepare
    from ..data.reasons import short_reason  # (torch: after the checks above, which answer at once)
    from ..model.network import receptive_field

    # a file shorter than the model's context would give it nothing but padding to learn from
    shortest = receptive_field(full.model)
    why = short_reason(recipe, shortest)
    earlier = (out / "manifest.json").exists()  # (a new set replaces it only once complete)
    note_kept(f"{out} is as it was" if earlier else f"nothing was written to {out}")
    manifest = run_prepare(dataset, out, config, progress=not quiet, min_samples=shortest, min_reason=why)
    if has_problems(manifest):  # files that are not audio (a README beside the recordings) are normal
        sys.exit(EXIT_SKIPPED)
