"""``wavegen report``."""

from __future__ import annotations

from pathlib import Path

import click

from .common import friendly_errors


@click.command()
@click.option("--run", "run", type=click.Path(path_type=Path), help="Run folder (default: newest under runs/).")
@click.option(
    "--samples",
    "sample_dirs",
    multiple=True,
    type=click.Path(path_type=Path),
    metavar="DIR",
    help="Folder of samples to look in (repeatable; default: RUN/samples and samples/).",
)
@click.option("-o", "--out", type=click.Path(path_type=Path), help="Folder for the page (default: RUN/report).")
@friendly_errors
def report(run, sample_dirs, out):
    """Write a static HTML page about a run: config, curves, validation, every sample with a player.

    The folder holds index.html and every file it shows (relative links, no network): open it
    from disk, zip it or commit it."""
    from ..report.page import build_report

    build_report(run, list(sample_dirs), out)
