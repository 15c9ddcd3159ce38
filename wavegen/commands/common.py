"""What every command shares: one-line errors, early checks, the log, common options."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from ..errors import TrainingInterrupted, WavegenError
from ..generate.request import ENGINES, PRECISIONS

# What --quiet promises in every command that has it: the bars go, the one-line messages stay.
# No library's warnings or notices show either way (noise.py; tests/test_any_script.py).
QUIET = "No progress bars. The one-line messages stay (what was done, results, skipped files); errors always show."

EXIT_SKIPPED = 3  # prepare: data was prepared, but some files were skipped (each named with its reason)

RUN_OR_CHECKPOINT = [
    click.option("--run", "run", type=click.Path(path_type=Path), help="Run folder (default: newest under runs/)."),
    click.option("--checkpoint", type=click.Path(path_type=Path), help="A checkpoint file instead of a run."),
]


def options(options):
    def wrap(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn

    return wrap


def one_line(message: str) -> str:
    """A message on one line: names from data (a label, a file name) may hold line breaks, and
    library messages (torch's) may span several lines."""
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


def friendly_errors(fn):
    """Turn expected failures into one-line messages instead of tracebacks."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TrainingInterrupted as exc:
            if str(exc):  # in a distributed run only rank 0 has something to say
                click.echo(str(exc), err=True)
            sys.exit(130)
        except WavegenError as exc:
            if not str(exc):  # another training process's failure: rank 0 has said it
                sys.exit(1)
            raise click.ClickException(one_line(str(exc))) from None
        except OSError as exc:  # permissions, a full disk, a file where a folder should be...
            where = f"{exc.filename}: " if exc.filename else ""
            raise click.ClickException(one_line(f"{where}{exc.strerror or exc}")) from None
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper


def log(message: str) -> None:
    click.echo(message, err=True)


ENGINE_CHOICE = click.Choice(["auto", *ENGINES])
PRECISION = click.option(
    "--precision",
    type=click.Choice(("auto", *PRECISIONS)),
    default="auto",
    show_default=True,
    help="The weights in the engine: auto is int8 in the native CPU engine (1.4-3.6x faster, 0.001 bits/sample "
    "or less from fp32 where measured) and fp32 elsewhere; bf16 and int8 run in the native engine only; "
    "fp32 is the network as trained.",
)
