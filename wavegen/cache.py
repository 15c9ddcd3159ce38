"""Where wavegen keeps what it makes once per machine: built engines and trial results."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import EngineUnavailable


def cache_dir() -> Path:
    """``$WAVEGEN_CACHE``, else ``$XDG_CACHE_HOME/wavegen``, else ``~/.cache/wavegen``. Raises
    ``EngineUnavailable`` where there is no home folder and neither variable is set."""
    if os.environ.get("WAVEGEN_CACHE"):
        return Path(os.environ["WAVEGEN_CACHE"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "wavegen"
    try:
        return Path.home() / ".cache" / "wavegen"
    except RuntimeError:  # no home directory to be found
        raise EngineUnavailable("no cache folder (set WAVEGEN_CACHE)") from None
