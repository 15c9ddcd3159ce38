"""wavegen's one-line messages: every module logs through ``logging.getLogger(__name__)``, so
all of them sit under the ``wavegen`` logger, at INFO for what the command line prints, DEBUG
for detail (``-v``) and WARNING for what is wrong while the work goes on.

A program using wavegen as a library routes them as any logging: without configuration
Python's last-resort handler prints WARNING and above to stderr, and INFO is silent until
``logging.basicConfig(level=logging.INFO)`` or a handler on ``logging.getLogger("wavegen")``.
The command line alone calls ``setup``: one handler on the ``wavegen`` logger writing the
message alone to stderr, as the commands always have.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator

import click

NAME = "wavegen"  # the package's logger, parent of every module's
SILENT = logging.CRITICAL + 1  # above every level: a logger set here says nothing


class _Stderr(logging.Handler):
    """The message alone on the stderr of the moment (click's, so ``CliRunner`` captures it), as
    ``click.echo(message, err=True)`` wrote every message before."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            click.echo(self.format(record), err=True)
        except Exception:  # (logging's rule: a failed message never stops the work)
            self.handleError(record)


def setup(verbosity: int = 0) -> logging.Handler:
    """The command line's messages: one handler on the ``wavegen`` logger (a second call replaces
    the first's, so a process that runs several commands prints each message once), level INFO,
    or DEBUG when ``verbosity`` > 0. The logger still propagates: a handler on the root (pytest's
    caplog, a program's own) sees the records too. Returns the handler."""
    logger = logging.getLogger(NAME)
    for old in [h for h in logger.handlers if isinstance(h, _Stderr)]:
        logger.removeHandler(old)
    handler = _Stderr()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbosity > 0 else logging.INFO)
    return handler


@contextmanager
def silenced(silent: bool = True) -> Iterator[None]:
    """Nothing from wavegen's loggers while inside (when ``silent``): a distributed run's processes
    other than rank 0, which would repeat its every message. The level is restored after."""
    logger = logging.getLogger(NAME)
    before = logger.level
    if silent:
        logger.setLevel(SILENT)
    try:
        yield
    finally:
        logger.setLevel(before)
