"""``wavegen config``: the settings a recipe resolves to, and what every setting means."""

from __future__ import annotations

import click

from .common import friendly_errors


@click.group()
def config() -> None:
    """Show the settings a recipe resolves to, or the reference of every setting."""


@config.command()
@click.option("--recipe", help="Recipe name in recipes/ or a .toml path (default: 'default', as train's).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a setting, e.g. train.lr=3e-4.")
@friendly_errors
def show(recipe, overrides):
    """Print the resolved settings as TOML: what a new `train` run starts from, before it fits
    them to the prepared data. Saved to a file, the output is a recipe."""
    from ..config_reference import show as resolved

    click.echo(resolved(recipe, overrides), nl=False)


@config.command()
@friendly_errors
def reference():
    """Print every setting with its type, default, allowed values and meaning (Markdown: the
    page docs/settings.md)."""
    from ..config_reference import reference as page

    click.echo(page(), nl=False)
