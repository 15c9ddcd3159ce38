"""``wavegen export``: a checkpoint into a folder to share and start from.

A checkpoint is for resuming: the optimizer's moments, every RNG state and the schedule come with
the weights. An export keeps what generating needs (the weights the model generates with, the
config that gives its shape) and a model card that says what the model is and how to use it::

    OUT/model.safetensors   the generating weights (the moving average when the run kept one)
    OUT/config.json         the run's resolved config, as the checkpoint carries it
    OUT/README.md           the model card

``wavegen synth --checkpoint OUT/``, ``wavegen.load("OUT/")`` and ``train --init-from OUT/`` take
the folder (``exported``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..files import all_or_none, atomic_write_text
from ..outputs import leaves_no_empty_folder
from ..owned import is_exported_model
from ..runs import MODEL_CARD, MODEL_CONFIG, MODEL_WEIGHTS
from .checkpoint import describe_checkpoint, load_model
from .exported import write_folder

logger = logging.getLogger(__name__)

EXPORTED = (MODEL_WEIGHTS, MODEL_CONFIG, MODEL_CARD)


@dataclass
class ExportResult:
    folder: Path
    files: list[Path]
    bytes: int  # the export's size, every file together
    source_bytes: int  # the checkpoint's (or the exported folder's) size


def check_out(out: Path) -> None:
    """Refuse an output that is a file, or a folder holding anything but an earlier export's
    files (those are replaced; an earlier export is known by its weights' header, not by its
    file names), before any work is done. Raises ``ConfigError``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder; give a new or empty folder to export to")
    if out.is_dir():
        other = sorted(p.name for p in out.iterdir() if p.name not in EXPORTED and not _leftover(p.name))
        if not other and not is_exported_model(out):  # a README.md and config.json of the user's own
            other = sorted(p.name for p in out.iterdir() if p.name in EXPORTED)
        if other:
            more = f" and {len(other) - 1} more" if len(other) > 1 else ""
            raise ConfigError(
                f"{out}: not empty and not an earlier export (it holds {other[0]}{more}); "
                "give a new or empty folder to export to"
            )


def _leftover(name: str) -> bool:
    """A temporary file of an interrupted write (``files.atomic_open``'s ``.NAME.XXXX.tmp``)."""
    return name.endswith(".tmp") and any(name.startswith(f".{kept}.") for kept in EXPORTED)


@leaves_no_empty_folder("out")
def export_model(source: Path, out: Path) -> ExportResult:
    """Write the model at ``source`` (a checkpoint file or an exported folder) into ``out``:
    weights, config and model card, each file atomically. Raises ``CheckpointError`` for an
    unreadable source, ``ConfigError`` for an ``out`` that ``check_out`` refuses, ``WriteError``
    for a file that cannot be written."""
    check_out(out)
    loaded = load_model(source)
    facts = describe_checkpoint(source, loaded)
    with all_or_none():  # weights, config and card replace an earlier export together, or not at all
        write_folder(out, loaded.payload)
        atomic_write_text(Path(out) / MODEL_CARD, model_card(facts, Path(out).resolve().name or "model"))
    files = [Path(out) / name for name in EXPORTED]
    size = sum(path.stat().st_size for path in files)
    source_size = _size(Path(source))
    logger.info(
        f"exported {source} (step {facts['step']}, {facts['weights'].split(' (')[0]} weights) to {out}: "
        f"{_bytes(size)}, {100 * size / max(source_size, 1):.1f} % of the checkpoint's {_bytes(source_size)}"
    )
    return ExportResult(Path(out), files, size, source_size)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    return os.path.getsize(path)


def _bytes(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


def model_card(facts: dict[str, Any], name: str) -> str:
    """The model card (Markdown) of a model that ``describe_checkpoint`` described, exported to
    a folder called ``name``: what it is, how it was trained, on what, and how to use it."""
    config = facts["config"]
    model, data, train = config["model"], config["data"], config["train"]
    rate = data["sample_rate"]
    rows = [
        ("sample rate", f"{rate} Hz, µ-law codes (256 classes)"),
        ("network", _shape(model)),
        ("parameters", f"{facts['parameters']:,}"),
        ("receptive field", f"{facts['receptive_field_samples']} samples ({facts['receptive_field_ms']} ms)"),
        ("conditioning", _conditioning(model, data)),
        ("weights", facts["weights"]),
        ("training", _training(facts["step"], train)),
        (
            "best validation",
            f"{facts['best_val_bits']:.4f} bits/sample" if facts["best_val_bits"] is not None else "not measured",
        ),
        ("data", _data(data)),
    ]
    if facts.get("recipe"):
        rows.append(("recipe", f"`{facts['recipe']}`"))
    if facts.get("init_from"):
        rows.append(("started from", f"`{facts['init_from']}`"))
    rows.append(("exported with", f"wavegen {_version()}"))
    table = "\n".join(f"| {key} | {value} |" for key, value in rows)
    return (
        f"# {name}\n\nA WaveNet model of raw audio, trained with wavegen: it generates {rate} Hz audio one "
        f"sample at a time.\n\n| | |\n|---|---|\n{table}\n\n## Use\n\n```sh\n{_commands(model, name)}\n```\n\n"
        f'```python\nimport wavegen\n\nmodel = wavegen.load("{name}/")\n'
        f"audio, rate = model.generate({_generate_args(model)})  # (1, samples) float32, {rate} Hz\n```\n\n"
        f"## Files\n\n- `{MODEL_WEIGHTS}`: the weights (safetensors: tensors only, nothing runs when it is read)\n"
        f"- `{MODEL_CONFIG}`: every setting of the run that trained it (the model's shape among them)\n"
        f"- `{MODEL_CARD}`: this card\n"
    )


def _shape(model: dict) -> str:
    top = 2 ** (model["layers_per_cycle"] - 1)
    cycles = f"{model['cycles']} cycle{'s' if model['cycles'] != 1 else ''}"
    return (
        f"{cycles} × {model['layers_per_cycle']} gated layers (dilations 1..{top}, kernel {model['kernel_size']}); "
        f"residual {model['residual_channels']}, gate {model['gate_channels']}, skip {model['skip_channels']} channels"
    )


def _conditioning(model: dict, data: dict) -> str:
    parts = [f"labels {', '.join(f'`{label}`' for label in model['labels'])}"] if model["labels"] else []
    if model["mel_channels"]:
        fmax = data.get("mel_fmax") or data["sample_rate"] / 2
        parts.append(
            f"{model['mel_channels']}-band log-mels every {model['mel_hop']} samples "
            f"(n_fft {data.get('mel_n_fft')}, {data.get('mel_fmin', 0):g}–{fmax:g} Hz)"
        )
    return "; ".join(parts) or "none (unconditional)"


def _training(step: Any, train: dict) -> str:
    return (
        f"step {step} of {train['steps']}; batch {train['batch_size']} × {train['segment_length']} samples, "
        f"lr {train['lr']:g}, seed {train['seed']}"
    )


def _data(data: dict) -> str:
    held = f"{100 * data['val_fraction']:g} % of every file held out for validation"
    trim = "silence trimmed" if data.get("trim_silence") else "silence kept"
    return f"prepared at {data['sample_rate']} Hz, channels: {data.get('channel', 'mix')}, {trim}, {held}"


def _commands(model: dict, name: str) -> str:
    label = f" --label {model['labels'][0]}" if model["labels"] else ""
    if model["mel_channels"]:
        first = f"wavegen vocode speech.wav --checkpoint {name}/{label}   # resynthesise a recording"
    else:
        first = f"wavegen synth --checkpoint {name}/ --seconds 2{label}"
    return (
        f"{first}\nwavegen info --checkpoint {name}/\n"
        f"wavegen train --init-from {name}/ --data prepared/ --run runs/mine   # a new run from these weights"
    )


def _generate_args(model: dict) -> str:
    label = f', labels="{model["labels"][0]}"' if model["labels"] else ""
    return ('mel="speech.npy"' if model["mel_channels"] else "seconds=2") + label  # (speech.npy: log-mel frames)


def _version() -> str:
    try:
        return metadata.version("wavegen")
    except metadata.PackageNotFoundError:  # a source tree that is not installed
        return "unknown"
