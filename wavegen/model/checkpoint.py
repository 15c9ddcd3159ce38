"""Checkpoints: everything needed to resume training or to synthesise, in one file.

A checkpoint is a dict of tensors and plain Python values (no classes), saved with ``torch.save``
and loaded with ``weights_only=True``, which refuses to unpickle anything else: opening a
checkpoint from a stranger cannot run code. It carries the resolved config, so ``synth`` and
``info`` need nothing but the file. An exported model folder (``exported``) reads as a checkpoint
too (``read``, ``load_model``), its weights checked against its config.json.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any, NamedTuple

import torch

from ..audio.search import what_file
from ..config import LEGACY_MODEL, LEGACY_TRAIN, Config, validate
from ..errors import CheckpointError, ConfigError
from ..files import atomic_open
from ..runs import MODEL_CONFIG, MODEL_WEIGHTS
from .exported import check_shapes, read_folder
from .network import WaveNet

FORMAT = "wavegen-checkpoint"


VERSION = 1


def save(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (plus format tags) atomically: the previous file survives any crash,
    and a failed write (a full disk) is a ``WriteError`` naming ``path``."""
    payload = {"format": FORMAT, "version": VERSION, **payload}
    with atomic_open(Path(path), "wb") as handle:
        torch.save(payload, handle)


def not_a_checkpoint(path: Path) -> CheckpointError:
    """The error for a file that does not load as a checkpoint, saying what it is where that is
    recognisable (an audio file given as ``--checkpoint`` is the usual mix-up)."""
    kind = what_file(path)
    if kind is not None and kind != "a ZIP archive":  # (torch.save writes ZIP archives: a cut one is one)
        return CheckpointError(f"{path}: is {kind}, not a checkpoint (a run keeps them in RUN/checkpoints/)")
    return CheckpointError(f"{path}: not a wavegen checkpoint (corrupt or truncated)")


def load(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint without executing code from it; a bad file gives a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"unsupported GLOBAL (\S+)", str(exc), re.IGNORECASE)
        if found:  # a class or function reference: what a code-running pickle needs
            raise CheckpointError(
                f"{path}: refused to load, it asks to import {found.group(1)} (checkpoints hold only weights)"
            ) from None
        raise not_a_checkpoint(path) from None
    except Exception:  # torch raises many types for truncated or foreign files
        raise not_a_checkpoint(path) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a wavegen checkpoint (a PyTorch file of something else)")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {payload.get('version')} is not supported")
    return payload


def config_of(payload: dict[str, Any], path: Path | str = "checkpoint") -> Config:
    """The config a checkpoint carries, checked like a recipe (a crafted file can hold anything)."""
    try:
        raw = payload["config"]
        if isinstance(raw, dict) and isinstance(raw.get("model"), dict):  # written before these keys existed
            raw = {
                **raw,
                "model": {**LEGACY_MODEL, **raw["model"]},
                "train": {**LEGACY_TRAIN, **(raw.get("train") or {})},
            }
        config = Config.from_dict(raw, source=str(path))
        validate(config)
        return config
    except (KeyError, TypeError, AttributeError, ConfigError) as exc:
        raise CheckpointError(f"{path}: bad config in checkpoint ({exc})") from None


class Checkpoint(NamedTuple):
    """A checkpoint as read: the saved dict, and the config it carries, parsed and checked once
    (``config_of``)."""

    payload: dict[str, Any]
    config: Config


class Loaded(NamedTuple):
    """A checkpoint's model rebuilt from it alone, with the saved dict and its config (parsed
    once: callers use this one rather than parsing ``payload["config"]`` again)."""

    model: WaveNet
    payload: dict[str, Any]
    config: Config


def read(path: Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """``load`` and ``config_of`` in one: the payload and its checked config; ``path`` may be an
    exported model folder (``exported.read_folder``, on the CPU). Raises ``CheckpointError`` for
    an unreadable file or a bad config."""
    if Path(path).is_dir():
        payload = read_folder(path)
        return Checkpoint(payload, config_of(payload, Path(path) / MODEL_CONFIG))
    payload = load(path, map_location)
    return Checkpoint(payload, config_of(payload, path))


def load_model(path: Path, map_location: str | torch.device = "cpu") -> Loaded:
    """Rebuild the model from a checkpoint (or an exported model folder) alone (its config gives
    the shape), with the moving average of its weights when the run kept one (``train.ema``); the
    model is in eval mode. Raises ``CheckpointError`` for an unreadable file, a bad config or
    weights that do not fit (naming the first tensor that does not)."""
    payload, config = read(path, map_location)
    model = WaveNet(config.model)
    folder = Path(path).is_dir()
    where = f"{Path(path) / MODEL_WEIGHTS} (checked against {MODEL_CONFIG})" if folder else str(path)
    try:
        state = payload["ema"] if "ema" in payload else payload["model"]
        check_shapes(state, model.state_dict(), where)
        model.load_state_dict(state)
    except (KeyError, RuntimeError, AttributeError, TypeError) as exc:
        reason = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{path}: weights do not fit the model shape in its config ({reason})") from None
    return Loaded(model.eval(), payload, config)


def describe_checkpoint(path: Path, loaded: Loaded | None = None) -> dict:
    """What ``wavegen info`` shows: config, size, receptive field, training state (``loaded``:
    the checkpoint at ``path``, when the caller read it already)."""
    model, payload, _ = loaded if loaded is not None else load_model(path)
    config = payload["config"]  # as saved: what `info` shows
    rate = config["data"]["sample_rate"]
    rf = model.receptive_field
    return {
        "checkpoint": str(path),
        "step": payload.get("step"),
        "best_val_bits": payload.get("best_val_bits"),
        "parameters": model.parameter_count(),
        "receptive_field_samples": rf,
        "receptive_field_ms": round(1000 * rf / rate, 2),
        "dilations": model.dilations,
        "labels": list(model.config.labels),
        "weights": f"moving average (train.ema = {config['train'].get('ema')})" if "ema" in payload else "trained",
        "mel_context_frames": list(model.mel_context),
        **({"init_from": payload["init_from"]} if payload.get("init_from") else {}),
        "recipe": payload.get("recipe"),  # None: a run from before runs recorded it
        "config": config,
    }
