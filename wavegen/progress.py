"""Progress bars for the long steps: tqdm on stderr, with a rate and an ETA.

Every command passes ``enabled=not quiet``. An enabled bar is drawn when stderr is a terminal
and left out when stderr is a file or a pipe (a log or CI keeps its one-line messages instead
of thousands of redraws), as tqdm's ``disable=None`` does. ``WAVEGEN_PROGRESS=always`` draws
bars on any stderr, ``never`` on none (``--quiet`` wins over both).
"""
from __future__ import annotations

import os

ENV = "WAVEGEN_PROGRESS"


def disabled(enabled: bool = True) -> bool | None:
    """tqdm's ``disable``: True (off), False (on) or None (on when stderr is a terminal)."""
    if not enabled:
        return True
    mode = os.environ.get(ENV, "auto").strip().lower()
    if mode in ("always", "1", "on", "yes", "true"):
        return False
    if mode in ("never", "0", "off", "no", "false"):
        return True
    return None


def bar(iterable=None, *, enabled: bool = True, **kwargs):
    """A tqdm bar on stderr (``kwargs`` as tqdm's: total, desc, unit, unit_scale, leave...)."""
    import sys

    from tqdm import tqdm

    return tqdm(iterable, disable=disabled(enabled), file=sys.stderr, dynamic_ncols=True, **kwargs)
