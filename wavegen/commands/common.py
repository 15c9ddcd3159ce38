"""What every command shares: one-line errors, early checks, the messages' verbosity, common options."""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path

import click
from click.core import ParameterSource

from ..errors import OutOfRange, TrainingInterrupted, WavegenError
from ..generate.request import ENGINES, PRECISIONS
from ..interrupts import exit_status, raise_swallowed, signals_handled, stop_line
from ..messages import NAME, setup

# What --quiet promises in every command that has it: the bars go, the one-line messages stay.
# No library's warnings or notices show either way (noise.py; tests/test_any_script.py).
QUIET = "No progress bars. The one-line messages stay (what was done, results, skipped files); errors always show."

EXIT_SKIPPED = 3  # prepare: data was prepared, but some files were skipped (each named with its reason)

DEVICE = click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="auto: the GPU when there is one, else the CPU.",
)

RUN_OR_CHECKPOINT = [
    click.option("--run", "run", type=click.Path(path_type=Path), help="Run folder (default: newest under runs/)."),
    click.option(
        "--checkpoint",
        type=click.Path(path_type=Path),
        help="A checkpoint file, or a folder `wavegen export` wrote, instead of a run.",
    ),
]


def options(options):
    def wrap(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn

    return wrap


def command_line(ctx: click.Context, **values) -> list[str]:
    """The arguments that give ``ctx``'s command its parsed values again (``values`` replacing
    some; None and () are "not given"), derived from the command's own parameters so that
    none is forgotten: each option in its longest spelling, ``--name=value`` (a value starting
    with ``-`` stays a value), once per item when repeatable; flags by name; arguments last, after ``--``."""
    values, options, arguments = {**ctx.params, **values}, [], []
    for param in ctx.command.params:
        value = values.get(param.name)
        if isinstance(param, click.Argument):
            given = (value or ()) if param.multiple or param.nargs != 1 else [value]  # None: not given
            arguments += [str(v) for v in given if v is not None]
            continue
        assert isinstance(param, click.Option)  # a command's parameters are its arguments and options
        name = max(param.opts, key=len)
        if param.count:
            options += [name] * (value or 0)
        elif param.is_flag:  # on by name; off as --no-NAME where it has one, else by leaving it out
            on = value is True if param.is_bool_flag else value == param.flag_value
            if on or param.secondary_opts:
                options.append(name if on else max(param.secondary_opts, key=len))
        elif value is not None:
            for item in value if param.multiple else [value]:
                parts = [str(part) for part in (item if param.nargs != 1 else [item])]
                options += [f"{name}={parts[0]}", *parts[1:]] if name.startswith("--") else [name, *parts]
    return options + (["--", *arguments] if arguments else [])


def one_line(message: str) -> str:
    """A message on one line: names from data (a label, a file name) may hold line breaks, and
    library messages (torch's) may span several lines."""
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


def friendly_errors(fn):
    """Turn expected failures into one-line messages instead of tracebacks, and Ctrl-C (SIGINT)
    and SIGTERM into one line saying what stays (``interrupts``), with exit status 130 / 143."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with signals_handled():
            try:
                result = fn(*args, **kwargs)
                raise_swallowed()  # a Ctrl-C that a library's callback swallowed still stops it
                return result
            except OutOfRange as exc:  # a usage error (status 2) in every command, as click's range checks
                raise click.UsageError(one_line(str(exc))) from None
            except TrainingInterrupted as exc:
                if str(exc):  # in a distributed run only rank 0 has something to say
                    click.echo(str(exc), err=True)
                sys.exit(exit_status())
            except WavegenError as exc:
                if not str(exc):  # another training process's failure: rank 0 has said it
                    sys.exit(1)
                raise click.ClickException(one_line(str(exc))) from None
            except OSError as exc:  # permissions, a full disk, a file where a folder should be...
                where = f"{exc.filename}: " if exc.filename else ""
                raise click.ClickException(one_line(f"{where}{exc.strerror or exc}")) from None
            except KeyboardInterrupt:
                click.echo(one_line(stop_line()), err=True)
                sys.exit(exit_status())

    return wrapper


def _more_verbose(ctx: click.Context, param: click.Parameter, value: int) -> int:
    if value:  # (the group's -v has set up the messages already; a command's adds to it)
        setup(value + (ctx.find_root().params.get("verbose") or 0))
    return value


VERBOSITY_HELP = "Say more: the debug messages too (engine details, paths). Messages go to stderr."
# -v after a command's name as well as before it (wavegen train -v, wavegen -v train)
VERBOSE = click.option("-v", "--verbose", count=True, expose_value=False, callback=_more_verbose, help=VERBOSITY_HELP)


def verbosity() -> int:
    """The ``-v`` count in force (0: INFO messages; 1: DEBUG too), for a command that runs wavegen again."""
    return int(logging.getLogger(NAME).getEffectiveLevel() <= logging.DEBUG)


def SAMPLES_OUT(help: str):  # noqa: N802 (an option, as DEVICE)
    """``-o/--out``, the folder generated WAVs go to (default ``samples``), as synth, vocode and demo take it."""
    return click.option(
        "-o", "--out", type=click.Path(path_type=Path), default=Path("samples"), show_default=True, help=help
    )


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


LIVE = [  # how live audio is heard (synth, vocode --stream)
    click.option(
        "--format",
        "fmt",
        type=click.Choice(["wav", "raw"]),
        help="With --out -: wav (default), or raw 16-bit little-endian PCM, channels interleaved.",
    ),
    click.option(
        "--play",
        is_flag=True,
        help="Play on the default output device as it is made, and write nothing "
        "(needs the sounddevice package: pip install sounddevice).",
    ),
]


def live_sink(out: Path, fmt: str | None, play: bool) -> str | None:
    """Where live audio goes ("wav", "raw" or "play"), None for files; a usage error for
    options that do not go together, or --play where nothing can play."""
    streaming = str(out) == "-"
    if fmt is not None and not streaming:
        raise click.UsageError("--format is for --out - (a stream on standard output)")
    if play:
        if click.get_current_context().get_parameter_source("out") != ParameterSource.DEFAULT:
            raise click.UsageError("--play writes nothing: leave out --out")
        from ..audio.live_out import load_sounddevice
        from ..errors import PlayerUnavailable

        try:  # before the model loads
            load_sounddevice()
        except PlayerUnavailable as exc:
            raise click.UsageError(str(exc)) from None
        return "play"
    if streaming and sys.stdout.isatty():
        raise click.UsageError("--out - writes audio to standard output: pipe it into a player (| aplay) or a file")
    return (fmt or "wav") if streaming else None
