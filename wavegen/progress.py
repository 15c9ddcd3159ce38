"""Progress bars for the long steps: tqdm on stderr, with a rate and an ETA.

Every command passes ``enabled=not quiet``. An enabled bar is drawn when stderr is a terminal
and left out when stderr is a file or a pipe (a log or CI keeps its one-line messages instead
of thousands of redraws), as tqdm's ``disable=None`` does; in a Jupyter notebook it is a widget
(``tqdm.auto``). ``WAVEGEN_PROGRESS=always`` draws bars on any stderr, ``never`` on none
(``--quiet`` wins over both).
"""

from __future__ import annotations

import os
import sys

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


def in_notebook() -> bool:
    """True inside a Jupyter kernel: its stderr is no terminal, yet a widget bar shows there."""
    ipython = sys.modules.get("IPython")  # (never imported here: a kernel has it already)
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def bar(iterable=None, *, enabled: bool = True, **kwargs):
    """A tqdm bar on stderr (``kwargs`` as tqdm's: total, desc, unit, unit_scale, leave...).

    ``tqdm.auto``: a widget in a Jupyter notebook (where the text bar would print a new line per
    redraw), the text bar elsewhere."""
    from tqdm.auto import tqdm

    disable = disabled(enabled)
    if disable is None and in_notebook():
        disable = False
    return tqdm(iterable, disable=disable, file=sys.stderr, dynamic_ncols=True, **kwargs)
