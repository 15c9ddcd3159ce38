"""``wavegen models``."""

from __future__ import annotations

import click

from .common import friendly_errors


@click.command(short_help="List the trained models that ship with wavegen (synth --model NAME).")
@friendly_errors
def models() -> None:
    """List the trained models that ship with wavegen: use one with `wavegen synth --model NAME`
    or `wavegen.load("NAME")`, no download and no training needed."""
    from ..pretrained import SHIPPED, WEIGHTS, names, summary

    for name in names():
        size = (SHIPPED / name / WEIGHTS).stat().st_size / 1e3
        click.echo(f"{name}  ({size:,.0f} kB)  {summary(name)}")
    if not names():
        click.echo("no models ship with this installation", err=True)
