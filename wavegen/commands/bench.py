"""``wavegen bench``: ``sample`` (sampling speed), ``train`` (training speed), ``learn DATA``
(learning in equal budgets), ``startup`` (synth's start-up) and ``stream`` (live generation), each
with only its own options."""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path

import click

from ..limits import MAX_SECONDS, check_seconds, check_streams
from .common import DEVICE, PRECISION, PRECISIONS, QUIET, friendly_errors, options

logger = logging.getLogger(__name__)

MANY = functools.partial(click.option, multiple=True)  # a repeatable option: a tuple of its values
POSITIVE = click.IntRange(min=1)


def SECONDS(default: float, what: str, kind: click.ParamType | type = float):  # noqa: N802 (an option, as MANY)
    return click.option(
        "--seconds", type=kind, default=default, show_default=True, help=f"{what}, at most {MAX_SECONDS:g} s."
    )


# Every benchmark's options, before its own: the shape, the machine and the output.
SHARED = [
    click.option("--recipe", default="default", show_default=True, help="Recipe whose model shape is measured."),
    click.option(
        "--set",
        "overrides",
        multiple=True,
        metavar="KEY=VALUE",
        help="Change the shape, e.g. model.cycles=2 (train and learn: also train.* settings).",
    ),
    DEVICE,
    click.option("--threads", type=POSITIVE, help="CPU threads (default: every core available)."),
    click.option("--json", "as_json", is_flag=True, help="One JSON object per line instead of the table."),
    click.option("-q", "--quiet", is_flag=True, help=QUIET),
]


class BenchGroup(click.Group):
    """``bench`` with the older spellings of its subcommands: no subcommand runs ``sample``,
    ``--train`` is ``train``, ``--stream`` is ``stream`` and ``--learn DATA`` is ``learn DATA``.
    An option of another benchmark is refused naming the benchmark it belongs to."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = self.new_spelling(args)
        return super().parse_args(ctx, args)

    def new_spelling(self, args: list[str]) -> list[str]:
        """``args`` with a subcommand first: ``learn DATA`` for ``--learn DATA`` (the last one),
        else ``train`` for ``--train``, else ``stream`` for ``--stream``, else ``sample``. Option
        values stay (``--set --train``); a second spelling stays for its command to refuse."""
        params = [param for command in self.commands.values() for param in command.params]
        valued = {name for p in params if isinstance(p, click.Option) and not p.is_flag for name in p.opts}
        rest, data, flags, i = [], None, [], 0
        while i < len(args):
            arg, value = args[i], args[i + 1 : i + 2]
            if arg == "--learn":
                data, i = value, i + 1
            elif arg.startswith("--learn="):
                data = [arg.removeprefix("--learn=")]
            elif arg in ("--train", "--stream") and arg not in flags:
                flags.append(arg)
            else:
                rest += [arg, *value] if arg in valued else [arg]
                i += 1 if arg in valued else 0
            i += 1
        flags.sort(key=["--train", "--stream"].index)  # (--train first, as before --stream was one)
        if data is not None:  # (with --train too: learn refuses it as an option it does not have)
            return ["learn", *data, *rest, *flags]
        if flags:
            return [flags[0].removeprefix("--"), *rest, *flags[1:]]
        return ["sample", *rest]

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)  # in the order they are defined: sample, train, learn, startup, stream

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.NoSuchOption as exc:
            name = exc.option_name
            owners = [f"`bench {key}`" for key, cmd in self.commands.items() if any(name in p.opts for p in cmd.params)]
            if not owners or exc.ctx is None:
                raise
            message = f"{name} is an option of {' and '.join(owners)}, not of `bench {exc.ctx.info_name}`"
            raise click.NoSuchOption(name, message, ctx=exc.ctx) from None


@click.group(cls=BenchGroup, short_help="Measure sampling, training, learning, start-up or live generation.")
def bench() -> None:
    """Measure sampling speed, training speed, learning, synth's start-up or live generation on
    this machine, one row per configuration (a table, or JSON lines with --json).

    `wavegen bench [OPTIONS]` with no subcommand is `wavegen bench sample [OPTIONS]`; the
    spellings `bench --train ...`, `bench --stream ...` and `bench --learn DATA ...` work too, as
    `bench train ...`, `bench stream ...` and `bench learn DATA ...`.
    """


@bench.command("sample", short_help="Sampling speed of each engine, precision and batch.")
@options(SHARED)
@click.option(
    "--engine",
    "engines",
    multiple=True,
    type=click.Choice(["native", "persistent", "cuda-graph", "torch", "reference", "peer"]),
    help="Engines to run (repeatable; default: all). peer: r9y9/wavenet_vocoder's sampler on the same weights.",
)
@click.option(
    "--precision",
    "precisions",
    multiple=True,
    type=click.Choice(PRECISIONS),
    help="The native engine's weights: fp32, bf16 or int8 (repeatable; default: fp32), each row with its largest "
    "logit difference from fp32. Other engines run at fp32.",
)
@MANY("--batch", "batches", type=POSITIVE, help="Streams at once (repeatable; default: 1 and 32).")
@SECONDS(2.0, "Wall time per measurement", click.FloatRange(min=0.1))
@click.option(
    "--repeats", type=click.IntRange(min=1), default=3, show_default=True, help="Measurements per result (median)."
)
@click.option(
    "--cond",
    type=click.Choice(["none", "labels", "mels", "both"]),
    help="Condition the model: on 4 labels, on 80 log-mel bands (random), or both (default: as the recipe).",
)
@friendly_errors
def sample(recipe, overrides, device, threads, as_json, quiet, engines, precisions, batches, seconds, repeats, cond):
    """Sampling speed (random weights): one table row per engine, precision and batch size, after
    a line with the CPU and its fp32 matmul peak. With --json: JSON lines, each printed as soon as
    it is measured."""
    check_seconds(seconds, beyond="wall time per measurement")
    for batch in batches:
        check_streams(batch, "--batch", "measure smaller batches")
    config, dev, bar = setup(recipe, overrides, device, quiet)
    from ..bench import sampling, tables

    say = click.echo if as_json else None  # (the machine's JSON line, before the rows)
    asked = (engines, precisions, batches, seconds, repeats, threads, cond)
    show(sampling.run_asked(config, dev, *asked, say=say, bar=bar), tables.SAMPLING_COLUMNS, bar, as_json)


@bench.command("train", short_help="Training speed against a plain PyTorch WaveNet.")
@options(SHARED)
@MANY("--batch", "batches", type=POSITIVE, help="Windows per step (repeatable; default: the recipe's batch_size).")
@MANY("--segment", "segments", type=POSITIVE, help="Predicted samples per window (repeatable; default: the recipe's).")
@click.option("--steps", type=POSITIVE, default=5, show_default=True, help="Timed steps (median).")
@click.option("--compile", "compiled", is_flag=True, help="Run wavegen's model through torch.compile.")
@click.option("--recompute", is_flag=True, help="Activation checkpointing (recompute in backward).")
@friendly_errors
def train(recipe, overrides, device, threads, as_json, quiet, batches, segments, steps, compiled, recompute):
    """Training speed: forward, backward and Adam steps of wavegen's model against a plain
    nn.Conv1d WaveNet with the same weights, one row per implementation, batch and segment
    length (the recipe's shape without conditioning; --set train.precision=... sets the precision)."""
    config, dev, bar = setup(recipe, overrides, device, quiet)
    from ..bench import sampling, tables
    from ..bench import training as bench_train

    # the recipe's shape without conditioning (the plain model it is compared with has none)
    results = bench_train.run(
        sampling.conditioned(config.model, "none"),
        list(batches) or [config.train.batch_size],
        list(segments) or [config.train.segment_length],
        dev,
        steps,
        threads,
        compile=compiled,
        recompute=recompute,
        precision=config.train.precision,
        bar=bar,
    )
    show(results, tables.TRAINING_COLUMNS, bar, as_json)


@bench.command("learn", short_help="Learning: validation bits/sample in equal budgets.")
@click.argument("data", type=click.Path(path_type=Path))
@options(SHARED)
@click.option(
    "--variant",
    "variants",
    multiple=True,
    metavar="NAME[:KEY=VALUE,...]",
    help="A variant (repeatable): 'plain' (the field's standard WaveNet), 'default' (the recipe), "
    "or NAME:key=value,... on top of the recipe (default: plain and default).",
)
@click.option(
    "--minutes",
    multiple=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Wall-clock budget of training per variant (repeatable: scored at each mark).",
)
@MANY("--steps", type=POSITIVE, help="Step budget per variant (repeatable: scored at each).")
@MANY("--batch", "batches", type=POSITIVE, help="Batch size of every variant (one; as --set train.batch_size=N).")
@friendly_errors
def learn(data, recipe, overrides, device, threads, as_json, quiet, variants, minutes, steps, batches):
    """Learning: train variants of the recipe on prepared DATA for the same budget (--minutes or
    --steps) and score each on validation, bits/sample, at every mark."""
    from ..config import ConfigError, apply_overrides

    config, dev, bar = setup(recipe, overrides, device, quiet)
    from ..bench import learning as bench_learn
    from ..bench import machine, tables

    if not minutes and not steps:
        raise ConfigError("bench learn: give a budget, --minutes M or --steps N (repeatable)")
    if minutes and steps:
        raise ConfigError("bench learn: give --minutes or --steps, not both")
    if len(batches) > 1:
        raise ConfigError("bench learn: one --batch (or --set train.batch_size=N) for every variant")
    if batches:
        apply_overrides(config, [f"train.batch_size={batches[0]}"])
    parsed = [bench_learn.parse_variant(v) for v in variants or (bench_learn.PLAIN, bench_learn.DEFAULT)]
    if len({v.name for v in parsed}) != len(parsed):
        raise ConfigError("bench learn: variant names must differ")
    logger.info(f"cpu: {machine.cpu_name()}")
    results = bench_learn.run(
        config, data, parsed, minutes=list(minutes), steps=list(steps), device=dev, threads=threads, bar=bar
    )
    show(results, tables.LEARNING_COLUMNS, bar, as_json)


@bench.command("startup", short_help="Start-up of `wavegen synth`: cold (empty caches) and warm.")
@options(SHARED)
@SECONDS(2.0, "Audio each synth generates")
@click.option("--repeats", type=POSITIVE, default=3, show_default=True, help="Warm runs (median; the floor's too).")
@friendly_errors
def startup(recipe, overrides, device, threads, as_json, quiet, seconds, repeats):
    """Start-up: the wall time of `wavegen synth --seconds S` (a random checkpoint of the recipe's shape),
    cold (empty engine caches: it compiles its engine) and warm, beside `wavegen --version` (the floor).
    The caches are temporary folders, removed afterwards: yours are never touched."""
    check_seconds(seconds)
    config, _, bar = setup(recipe, overrides, device, quiet)  # (device: checked here)
    from ..bench import machine, tables
    from ..bench import startup as bench_startup

    logger.info(f"cpu: {machine.cpu_name()}")
    # synth gets --device as asked: with auto on a GPU machine it decides as a user's run does
    show(bench_startup.run(config, seconds, device, repeats, threads, bar=bar), tables.STARTUP_COLUMNS, bar, as_json)


@bench.command("stream", short_help="Live generation: time to first audio, real-time factor, a vocoder's latency.")
@options(SHARED)
@SECONDS(60.0, "Audio of the sustained (and live) run")
@PRECISION
@click.option("--chunk", type=POSITIVE, help="Samples per block (default: 4096, and one hop for a vocoder's live run).")
@friendly_errors
def stream(recipe, overrides, device, threads, as_json, quiet, seconds, precision, chunk):
    """Live generation (random weights, in this process): the time to the first block of audio with
    the engine built cold and warm, the real-time factor sustained over --seconds of audio and its
    worst block, and for a model with mel features (e.g. --recipe vocoder) the latency from a
    frame's arrival, at the rate a live analysis makes them, to its audio (look-ahead and compute)."""
    check_seconds(seconds)
    config, dev, bar = setup(recipe, overrides, device, quiet)
    from ..bench import machine, tables
    from ..bench import streaming as bench_stream

    logger.info(f"cpu: {machine.cpu_name()}")
    rows = bench_stream.run(config, seconds, precision, chunk, dev.type, threads, bar=bar)
    show(rows, tables.STREAMING_COLUMNS, bar, as_json)


def setup(recipe: str, overrides: tuple[str, ...], device: str, quiet: bool):
    """(the recipe with ``--set`` applied, the torch device, a progress bar whose total comes once known)."""
    from ..config import apply_overrides
    from ..devices import resolve_device
    from ..progress import bar as progress_bar
    from ..recipe import load_recipe

    config = apply_overrides(load_recipe(recipe), list(overrides))
    return config, resolve_device(device), progress_bar(enabled=not quiet, desc="bench", unit="config", delay=0.5)


def show(results, columns, bar, as_json: bool) -> None:
    """Print ``results`` as they come: a table with ``columns``, or JSON lines with ``--json``."""
    from tqdm import tqdm

    from ..bench import tables

    def echo(line):  # a row, with the bar (stderr, the same terminal) cleared and redrawn around it
        with tqdm.external_write_mode(file=sys.stdout):
            click.echo(line)

    with bar:
        if as_json:
            tables.print_results(results, echo)
        else:
            tables.print_table(results, columns, echo)
