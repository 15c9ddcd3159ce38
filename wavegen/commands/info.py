"""``wavegen info``."""

from __future__ import annotations

import json

import click
import tomli_w

from ..runs import pick_checkpoint
from .common import RUN_OR_CHECKPOINT, friendly_errors, options


@click.command()
@options(RUN_OR_CHECKPOINT)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the text.")
@friendly_errors
def info(run, checkpoint, as_json):
    """Show a model's config, parameter count and receptive field."""
    from ..model.checkpoint import describe_checkpoint

    facts = describe_checkpoint(pick_checkpoint(run, checkpoint))
    if as_json:
        click.echo(json.dumps(facts))
        return
    best = facts["best_val_bits"]
    click.echo(
        f"checkpoint       {facts['checkpoint']} (step {facts['step']}"
        + (f", best validation {best:.3f} bits/sample)" if best is not None else ")")
    )
    click.echo(f"recipe           {facts['recipe'] or 'unknown (an older run)'}")
    click.echo(f"parameters       {facts['parameters']:,} ({facts['weights']} weights)")
    click.echo(
        f"receptive field  {facts['receptive_field_samples']} samples "
        f"({facts['receptive_field_ms']} ms at {facts['config']['data']['sample_rate']} Hz)"
    )
    if facts["labels"]:
        click.echo(f"labels           {', '.join(facts['labels'])}")
    before, after = facts["mel_context_frames"]
    if before:
        model = facts["config"]["model"]
        hop, rate = model["mel_hop"], facts["config"]["data"]["sample_rate"]
        click.echo(
            f"conditioning     {model['mel_channels']}-band log-mels every {hop} samples; a sample in frame f "
            f"depends on mel frames f-{before}..f+{after} ({1000 * before * hop / rate:.0f} ms back, "
            f"{1000 * after * hop / rate:.0f} ms ahead)"
        )
    # TOML, as a recipe writes it: any part of it can be pasted into one (None has no TOML form)
    click.echo(tomli_w.dumps(_without_none(facts["config"])).rstrip("\n"))


def _without_none(table: dict) -> dict:
    return {k: _without_none(v) if isinstance(v, dict) else v for k, v in table.items() if v is not None}
