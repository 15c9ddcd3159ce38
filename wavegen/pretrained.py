"""Models that ship inside the package, by name, so that a user can hear one right after
installing: ``wavegen synth --model tones``, ``wavegen.load("tones")``, ``wavegen models``.

Each is an exported model folder (``model.safetensors``, ``config.json``, a ``README.md`` model
card: ``wavegen export``) under ``wavegen/shipped-models/NAME/``: a folder name that is no Python
identifier, which packaging then takes for data, not for a package. Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

from .errors import CheckpointError

SHIPPED = Path(__file__).resolve().parent / "shipped-models"
WEIGHTS = "model.safetensors"


def names() -> list[str]:
    """The shipped models' names, sorted."""
    if not SHIPPED.is_dir():
        return []
    return sorted(p.name for p in SHIPPED.iterdir() if (p / WEIGHTS).is_file())


def find(name: str) -> Path:
    """The folder of the shipped model ``name``; ``CheckpointError`` naming the ones there are."""
    if name in names():
        return SHIPPED / name
    there = ", ".join(names()) or "none"
    raise CheckpointError(f"--model {name}: no such model ships with wavegen (there are: {there}; `wavegen models`)")


def is_name(source: str | Path) -> bool:
    """Whether ``source`` names a shipped model rather than a path (a path that exists wins)."""
    return str(source) in names() and not Path(source).exists()


def summary(name: str) -> str:
    """The first line of the model card after its title: what the model is."""
    card = SHIPPED / name / "README.md"
    try:
        lines = [line.strip() for line in card.read_text(encoding="utf-8").splitlines()]
    except OSError:
        return ""
    return next((line for line in lines if line and not line.startswith("#")), "")
