"""Library chatter that is no concern of a wavegen user, turned down for the command line.

Where a library's warning had a cause in wavegen it is fixed there instead: titles in any
script (``plots``), mel settings with empty bands refused by ``prepare`` (``features``), the
benchmark's temporary folder closed and its progress bar kept within its total
(``bench_learn``), OMP_NUM_THREADS set before torchrun would announce it (``distributed``).
What is left is pure noise: messages the libraries log about their own set-up, not about
anything the user asked wavegen to do.

The command line alone calls ``quiet_libraries`` (``cli.main``): a program that imports wavegen
as a library keeps its own logging configuration. No ``warnings`` filter is installed: the
warnings that reach a terminal in normal use had causes, so wavegen's own warnings, and a user's
``-W``/``PYTHONWARNINGS``, behave as Python defines.
"""

from __future__ import annotations

import logging

# logger → why its messages below ERROR are noise on a wavegen user's terminal
NOISY_LOGGERS = {
    # "Matplotlib created a temporary cache directory ... it is highly recommended to set the
    # MPLCONFIGDIR" where the home folder cannot be written (a container), "building the font
    # cache", "findfont: ..." fallbacks: matplotlib's own set-up, and a figure is drawn anyway.
    "matplotlib": logging.ERROR,
    # "No CUDA runtime is found, using CUDA_HOME=..." when torch.compile builds its CPU kernels
    # (train.compile, bench --train --compile) on a machine with a CUDA toolkit but no GPU.
    "torch.utils.cpp_extension": logging.ERROR,
}


def quiet_libraries() -> None:
    """Raise the noisy libraries' loggers to ERROR: their errors still show, their notices not."""
    for name, level in NOISY_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
