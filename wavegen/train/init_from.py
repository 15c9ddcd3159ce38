"""A new run that starts from a trained model's weights (``train --init-from``): fine-tuning on
other data, or going on with other training settings, from a run, a checkpoint or an exported
model folder.

Only the weights come from the source (those it generates with: the moving average when its run
kept one). The optimizer, the schedule, the RNGs and the step start afresh, at step 0. The model's
settings are the source's: a ``--recipe`` or ``--set`` that would change them is refused (the
weights would not fit, or would mean something else), and the data must carry what the model
conditions on (its rate, labels and mel analysis). The data and training settings come from
``--recipe`` when one is given, else from the source's own run; ``--set`` applies on top as usual.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import NamedTuple

import torch

from ..audio.features import MelSettings, check_same_analysis
from ..config import Config
from ..data.prepared import PreparedData
from ..errors import ConfigError
from ..model import checkpoint as ckpt
from ..runs import pick_checkpoint
from .trainer import Trainer

logger = logging.getLogger(__name__)

FITTED = ("labels", "mel_channels", "mel_hop")  # model settings that come from the data (checked there)


class Source(NamedTuple):
    """The model a new run starts from."""

    given: Path  # as named on the command line (what the run records)
    checkpoint: Path  # the checkpoint or exported folder read
    state: dict[str, torch.Tensor]  # its weights (a WaveNet state dict, on the CPU)
    config: Config  # its run's settings
    step: int  # the step it was trained to


def read_source(given: Path, run: Path, resuming: bool) -> Source:
    """The model at ``given`` (a run folder: its best checkpoint, else its latest; a checkpoint;
    an exported folder), refused for a run that resumes (it has weights of its own). Raises
    ``ConfigError`` or ``CheckpointError`` with one line."""
    given = Path(given)
    if resuming:
        raise ConfigError(
            f"--init-from {given}: run {run} has a checkpoint and resumes from it; "
            f"start a new run from {given} with --run NEW_DIR"
        )
    path = pick_checkpoint(checkpoint=given) if given.is_file() else pick_checkpoint(run=given)
    model, payload, config = ckpt.load_model(path)
    return Source(given, path, model.state_dict(), config, int(payload.get("step") or 0))


def base_config(source: Source, recipe: Config | None, what: str) -> Config:
    """The new run's settings before ``--set``: ``recipe``'s data and training settings (the
    source's own when None) with the source's model. A recipe of another model shape is
    refused (``what`` names it)."""
    if recipe is None:
        logger.info(
            f"using the data and training settings {source.checkpoint} was trained with (--recipe R for others)"
        )
        return Config.from_dict(source.config.to_dict())
    differ = _differences(source.config, recipe)
    if differ:
        key, mine, theirs = differ[0]
        raise ConfigError(
            f"--init-from {source.given}: {what} makes another model (model.{key} = {theirs}, the model's is "
            f"{mine}); the model comes from --init-from: drop --recipe, or give one of the model's shape"
        )
    return Config(model=dataclasses.replace(source.config.model), data=recipe.data, train=recipe.train)


def check(source: Source, config: Config, data: PreparedData, data_dir: Path) -> None:
    """Refuse a ``--set`` that changed the model's settings from the source's, and data the model
    cannot train on (``check_data``); then say where the run starts from."""
    check_model(source, config)
    check_data(source, data, data_dir)
    logger.info(describe(source))


def check_model(source: Source, config: Config) -> None:
    """Refuse a ``--set`` that changed the model's settings from the source's."""
    differ = _differences(source.config, config)
    if differ:
        key, mine, theirs = differ[0]
        raise ConfigError(
            f"--set model.{key}={theirs}: the model comes from --init-from {source.given} (model.{key} = {mine}); "
            "drop it, or train a new model without --init-from"
        )


def _differences(source: Config, other: Config) -> list[tuple[str, object, object]]:
    mine, theirs = dataclasses.asdict(source.model), dataclasses.asdict(other.model)
    return [(key, mine[key], theirs[key]) for key in mine if key not in FITTED and mine[key] != theirs[key]]


def check_data(source: Source, data: PreparedData, data_dir: Path) -> None:
    """Refuse prepared data the source model cannot train on: another sample rate, other
    labels (the embeddings are the source's, one per label in order), other mel features."""
    model, rate = source.config.model, source.config.data.sample_rate
    if data.sample_rate != rate:
        raise ConfigError(
            f"{data_dir}: prepared at {data.sample_rate} Hz but the model in {source.given} works at {rate} Hz; "
            f"prepare the data again with --set data.sample_rate={rate}"
        )
    mel = data.mel or {}
    wanted = (list(model.labels), model.mel_channels, model.mel_hop)
    have = (list(data.labels), int(mel.get("bands", 0)), int(mel.get("hop", 0)))
    if have != wanted:
        raise ConfigError(
            f"{data_dir}: the data has {_said(*have)} but the model in {source.given} conditions on "
            f"{_said(*wanted)}; prepare the data the same way (the same label folders, the same --mels)"
        )
    if mel:
        trained = MelSettings.from_data(source.config.data, bands=model.mel_channels)
        check_same_analysis(mel, trained, data_dir, f"the model in {source.given}")


def _said(labels: list[str], bands: int, hop: int) -> str:
    said = f"labels [{', '.join(labels)}]" if labels else "no labels"
    return said + (f", {bands} mel bands every {hop} samples" if bands else ", no mels")


def start_from(trainer: Trainer, source: Source) -> None:
    """Put the source's weights in a new run's model and its moving average (which starts from
    them with no updates counted), and record where they came from in the run's checkpoints."""
    trainer.model.load_state_dict(source.state)
    if trainer.ema is not None:
        trainer.ema.load(source.state, 0)
    trainer.init_from = str(source.given)


def describe(source: Source) -> str:
    """The line that says where a new run starts from."""
    return (
        f"starting from the weights of {source.checkpoint} (trained to step {source.step}); the optimizer, "
        "the schedule and the steps start afresh"
    )
