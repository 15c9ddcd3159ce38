"""An exported model folder: the weights a model generates with (``model.safetensors``) and the
config that gives its shape (``config.json``), for sharing and for starting from.

Neither file can run code when read: safetensors holds tensors and a header of strings, and
JSON is data. The folder reads back as a checkpoint's payload (``read_folder``), so everything
that takes a checkpoint takes the folder: ``"ema"`` holds moving-average weights, ``"model"``
trained ones, as in a checkpoint, and ``step``, ``best_val_bits`` and ``init_from`` come from the
weights file's header.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch

from ..errors import CheckpointError
from ..files import atomic_open, atomic_write_text
from ..runs import MODEL_CONFIG, MODEL_WEIGHTS

FORMAT = "wavegen-model"
VERSION = "1"
ORIGIN = ("init_from", "recipe")  # where the model came from, when its run recorded it (text)


def write_folder(out: Path, payload: dict[str, Any]) -> None:
    """Write ``payload``'s generating weights (``"ema"`` when it has them, else ``"model"``) and
    its config into ``out``, each file atomically. Raises ``WriteError`` naming the file."""
    which = "ema" if "ema" in payload else "model"
    # own contiguous copies: safetensors refuses tensors that share memory
    tensors = {key: value.detach().to("cpu").contiguous().clone() for key, value in payload[which].items()}
    header = {"format": FORMAT, "version": VERSION, "weights": which, "step": str(payload.get("step", 0))}
    best = payload.get("best_val_bits")
    if isinstance(best, (int, float)) and math.isfinite(best):
        header["best_val_bits"] = repr(float(best))
    header |= {key: str(payload[key]) for key in ORIGIN if payload.get(key)}
    data = safetensors.torch.save(tensors, metadata=header)
    with atomic_open(Path(out) / MODEL_WEIGHTS, "wb") as handle:
        handle.write(data)
    atomic_write_text(Path(out) / MODEL_CONFIG, json.dumps(payload["config"], indent=2) + "\n")


def read_folder(folder: Path) -> dict[str, Any]:
    """An exported folder as a checkpoint's payload: ``{"config", "ema" or "model", "step",
    "best_val_bits"[, "init_from", "recipe"]}`` (tensors on the CPU). Raises ``CheckpointError`` naming the
    file for a missing, unreadable or foreign one; shapes are the caller's to check against the
    config (``checkpoint.load_model``)."""
    folder = Path(folder)
    weights, config_file = folder / MODEL_WEIGHTS, folder / MODEL_CONFIG
    for path in (weights, config_file):
        if not path.is_file():
            raise CheckpointError(
                f"{path}: not found (an exported model folder holds {MODEL_WEIGHTS} and {MODEL_CONFIG})"
            )
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{config_file}: not readable JSON ({str(exc).splitlines()[0]})") from None
    try:
        with safetensors.safe_open(str(weights), framework="pt") as handle:
            header = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as exc:  # safetensors raises its own types for truncated or foreign files
        raise CheckpointError(f"{weights}: not a readable safetensors file ({_first_line(exc)})") from None
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{weights}: not a wavegen model (its header has no format '{FORMAT}')")
    if header.get("version") != VERSION:
        raise CheckpointError(f"{weights}: model format version {header.get('version')} is not supported")
    try:
        step = int(header.get("step", "0"))
        best = float(header["best_val_bits"]) if "best_val_bits" in header else None
    except ValueError:
        raise CheckpointError(f"{weights}: bad step or score in its header") from None
    which = "ema" if header.get("weights") == "ema" else "model"
    payload: dict[str, Any] = {"config": config, which: tensors, "step": step, "best_val_bits": best}
    payload |= {key: header[key] for key in ORIGIN if header.get(key)}
    return payload


def check_shapes(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], where: str) -> None:
    """Refuse weights that do not fit the model a config builds, in one line naming the first
    missing, extra or misshapen tensor (``where``: the file, and the config it was checked
    against)."""
    missing = [key for key in expected if key not in state]
    extra = [key for key in state if key not in expected]
    if missing or extra:
        what = f"no {missing[0]}" if missing else f"an unknown {extra[0]}"
        more = len(missing) + len(extra) - 1
        raise CheckpointError(
            f"{where}: weights do not fit the model shape in its config (they have {what}"
            + (f" and {more} more differences)" if more else ")")
        )
    for key, value in expected.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise CheckpointError(
                f"{where}: weights do not fit the model shape in its config ({key} is {_shape(state[key])}, "
                f"the config makes it {_shape(value)})"
            )


def _shape(tensor: torch.Tensor) -> str:
    return "×".join(map(str, tensor.shape)) or "a scalar"


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
