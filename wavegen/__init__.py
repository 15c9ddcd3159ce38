"""wavegen: a WaveNet-style raw-audio generator (µ-law, causal dilated convolutions, fast sampling).

The Python API (``wavegen.api``), loaded on first use so that ``import wavegen`` stays light
(no torch, numpy or soundfile until a function needs them)::

    import wavegen

    wavegen.prepare("dataset", "prepared", recipe="tiny")      # -> manifest dict
    wavegen.fit("prepared", "runs/tiny", recipe="tiny", steps=30)  # `wavegen train`
    model = wavegen.load("runs/tiny")                           # its best checkpoint
    audio, rate = model.generate(seconds=1.0, n=2, seed=0)      # (2, 16000) float32, 16000

``wavegen.load_recipe(name)`` returns a ``wavegen.Config`` to change in Python before
``prepare``/``fit`` (``config.override("train.lr=3e-4")`` parses and checks as ``--set`` does).
Errors are ``wavegen.WavegenError`` subclasses, one line each.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

# name → (module, attribute): imported when first asked for (PEP 562)
_LAZY = {
    "Config": ("wavegen.config", "Config"),
    "load_recipe": ("wavegen.recipe", "load_recipe"),
    "WavegenError": ("wavegen.errors", "WavegenError"),
    "ConfigError": ("wavegen.errors", "ConfigError"),
    "DataError": ("wavegen.errors", "DataError"),
    "CheckpointError": ("wavegen.errors", "CheckpointError"),
    "Model": ("wavegen.api", "Model"),
    "Generation": ("wavegen.api", "Generation"),
    "load": ("wavegen.api", "load"),
    "prepare": ("wavegen.api", "prepare"),
    # not ``train``: that name is the training subpackage, which would replace a function once imported
    "fit": ("wavegen.api", "train"),
}

__all__ = [
    "CheckpointError",
    "Config",
    "ConfigError",
    "DataError",
    "Generation",
    "Model",
    "WavegenError",
    "fit",
    "load",
    "load_recipe",
    "prepare",
]
assert sorted(__all__) == sorted(_LAZY)  # one list for type checkers and linters, one for the lookup

if TYPE_CHECKING:
    from .api import Generation, Model, load, prepare
    from .api import train as fit
    from .config import Config
    from .errors import CheckpointError, ConfigError, DataError, WavegenError
    from .recipe import load_recipe


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'wavegen' has no attribute {name!r}")
    import importlib

    module, attribute = _LAZY[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # once: later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
