"""The ``wavegen`` command line: a thin layer that builds a config and calls the library.

Heavy modules (torch, librosa) are imported inside the commands so ``wavegen --help`` is instant.
Every ``WavegenError`` becomes a one-line ``Error: ...`` and exit status 1; click's usage errors
(an unknown option, a value out of range) are one line too, with status 2. A command checks its
own values (lengths, counts, output folders) before it imports torch, so mistakes are answered
at once.
"""
from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click

from .errors import TrainingInterrupted, WavegenError

# What --quiet promises in every command that has it: the bars go, the one-line messages stay.
# No library's warnings or notices show either way (noise.py; tests/test_any_script.py).
QUIET = ("No progress bars. The one-line messages stay (what was done, results, skipped files); "
         "errors always show.")

EXIT_SKIPPED = 3  # prepare: data was prepared, but some files were skipped (each named with its reason)

RUN_OR_CHECKPOINT = [
    click.option("--run", "run", type=click.Path(path_type=Path), help="Run folder (default: newest under runs/)."),
    click.option("--checkpoint", type=click.Path(path_type=Path), help="A checkpoint file instead of a run."),
]


def _options(options):
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


def quick_checks(seconds=None, n=None, temperature=None, out=None) -> None:
    """A generating command's own values, checked before torch is imported so that a mistake is
    answered at once (``synthesize`` and ``vocode`` check them again for their other callers)."""
    from .limits import check_seconds, check_streams, check_temperature
    from .outputs import writable_folder

    if seconds is not None:
        check_seconds(seconds)
    if n is not None:
        check_streams(n)
    if temperature is not None:
        check_temperature(temperature)
    if out is not None:
        writable_folder(out)


def _log(message: str) -> None:
    click.echo(message, err=True)


class OneLineGroup(click.Group):
    """click's own usage errors (an unknown option, a value out of range) as one ``Error:`` line
    like every other error, pointing at ``--help`` instead of printing the usage block. They keep
    click's exit status 2."""

    def make_context(self, *args, **kwargs):
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as exc:
            raise _one_line_usage(exc) from None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _one_line_usage(exc) from None


def _one_line_usage(exc: click.UsageError) -> click.UsageError:
    if isinstance(exc, getattr(click.exceptions, "NoArgsIsHelpError", ())):  # bare `wavegen`: the help
        return exc
    names, ctx = [], exc.ctx
    while ctx is not None and ctx.parent is not None:  # the root's name may be "python -m wavegen"
        names.insert(0, ctx.info_name)
        ctx = ctx.parent
    where = " ".join(["wavegen", *names])
    short = click.UsageError(one_line(f"{exc.format_message().rstrip('.')} (see `{where} --help`)"))
    short.exit_code = exc.exit_code  # no context: click prints no usage block and no hint
    return short


@click.group(cls=OneLineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="wavegen")
def main() -> None:
    """wavegen: train WaveNet models on your recordings and listen to what they generate.

    \b
      wavegen prepare dataset/      encode a folder of audio files
      wavegen train                 train (or resume) runs/default on it
      wavegen synth --seconds 2     write WAVs to samples/ from the newest run
      wavegen vocode speech.wav     resynthesise a recording with a vocoder (mel) model
      wavegen eval                  validation bits/sample (and resynthesis distance)
      wavegen report                an HTML page of the newest run and its samples
    """
    from .noise import quiet_libraries

    quiet_libraries()  # here, not on import: a program using wavegen as a library keeps its logging


@main.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=Path("prepared"), show_default=True,
              help="Folder for the prepared codes and manifest.")
@click.option("--recipe", default="default", show_default=True, help="Recipe whose [data] settings apply.")
@click.option("--sample-rate", type=click.IntRange(min=1000), help="Resample to this rate (default: the recipe's).")
@click.option("--val-fraction", type=click.FloatRange(0.0, 1.0, max_open=True), help="Tail of each file held out.")
@click.option("--trim-silence/--no-trim-silence", default=None, help="Trim leading/trailing silence (reported).")
@click.option("--labels", type=click.Choice(["none", "folders"]), default=None,
              help="folders: label each file by its first-level folder, DATASET/<label>/... (default: the recipe's).")
@click.option("--mels", type=click.IntRange(min=0), default=None,
              help="Store this many log-mel bands per frame for a vocoder (0: none; default: the recipe's).")
@click.option("--channel", metavar="mix|N", default=None,
              help="mix: average a file's channels to mono; N: keep channel N alone (0 = first/left), e.g. for "
                   "channels that cancel when mixed. Mono files are used as they are (default: the recipe's, mix).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a data.* setting, e.g. data.mel_hop=200.")
@click.option("--quiet", is_flag=True, help=QUIET)
@friendly_errors
def prepare(dataset, out, recipe, sample_rate, val_fraction, trim_silence, labels, mels, channel, overrides, quiet):
    """Encode every audio file under DATASET (recursively) for training.

    Audio is found by extension or, for other names, by content. Every other file is named
    too: audio that cannot be used (unreadable, damaged, NaN samples, silent, channels that
    cancel, shorter than the recipe's receptive field) is skipped with its reason; files that
    are not audio (a README, images), hidden ones (.DS_Store, .git/) and the --out folder are
    ignored, named in a line per reason. Nothing is written when nothing can be prepared.
    Exit status: 0 when every audio file was prepared (ignored files do not count), 3 when some
    were skipped, 1 when nothing usable was found.
    """
    from .config import Config, ConfigError, apply_overrides, load_recipe, validate
    from .outputs import writable_folder

    for item in overrides:
        if not item.strip().startswith("data."):
            raise ConfigError(f"--set {item}: prepare only takes data.* settings")
    full = apply_overrides(load_recipe(recipe), list(overrides))
    config = full.data
    if sample_rate is not None:
        config.sample_rate = sample_rate
    if val_fraction is not None:
        config.val_fraction = val_fraction
    if trim_silence is not None:
        config.trim_silence = trim_silence
    if labels is not None:
        config.labels = labels
    if mels is not None:
        config.mels = mels
    if channel is not None:
        config.channel = channel.strip()
    validate(Config(data=config))
    writable_folder(out)
    from .data import has_problems, prepare as run_prepare
    from .model import receptive_field  # (torch: after the checks above, which answer at once)

    # a file shorter than the model's context would give it nothing but padding to learn from
    manifest = run_prepare(dataset, out, config, log=_log, progress=not quiet,
                           min_samples=receptive_field(full.model))
    if has_problems(manifest):  # files that are not audio (a README beside the recordings) are normal
        sys.exit(EXIT_SKIPPED)


@main.command()
@click.option("--data", type=click.Path(path_type=Path), default=Path("prepared"), show_default=True,
              help="Prepared data folder.")
@click.option("--run", "--run-dir", "run", type=click.Path(path_type=Path),
              help="Run folder (default: runs/RECIPE); resumed if it exists. Under torchrun spell it --run-dir "
                   "(torchrun takes --run for its own --run-path).")
@click.option("--recipe", help="Recipe name in recipes/ or a .toml path (default: 'default', or the run's own).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a setting, e.g. train.lr=3e-4.")
@click.option("--steps", type=click.IntRange(min=1), help="Train until this step (same as --set train.steps=N).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--nproc", type=click.IntRange(min=1), metavar="N",
              help="Train in N processes on this machine (one per GPU) through torchrun; batch_size is per process.")
@click.option("--quiet", is_flag=True, help=QUIET)
@friendly_errors
def train(data, run, recipe, overrides, steps, device, nproc, quiet):
    """Train a model on prepared data, or resume the run if it has a checkpoint.

    Under torchrun (``torchrun --nproc-per-node N -m wavegen train ...``) every process runs this
    command and they train one model together; ``--nproc N`` starts torchrun for one machine.
    """
    from .config import ConfigError
    from .outputs import writable_folder

    for item in overrides:  # train sets these from the prepared data: an override would be lost
        key = item.partition("=")[0].strip()
        if key in ("model.labels", "model.mel_channels", "model.mel_hop"):
            raise ConfigError(f"--set {item}: a model conditions on what its data carries; prepare the data "
                              "with --labels folders or --mels N instead")
        if key.startswith("data."):
            raise ConfigError(f"--set {item}: data settings are prepare's (a run takes them from its prepared data); "
                              f"give it to `wavegen prepare DATASET --set {item.strip()}`")
    run = run or Path("runs") / Path(recipe or "default").stem
    writable_folder(run, "--run")
    from . import distributed
    from .train import resolve_config, resolve_device, train as run_train

    launching = nproc is not None and nproc > 1
    speaks = not launching and distributed.from_env()[1] == 0  # what the config says, once: by rank 0
    config, _, changes = resolve_config(run, recipe, list(overrides), steps, log=_log if speaks else lambda _: None)
    if launching:  # this command again, in nproc processes under torchrun
        from .data import PreparedData

        PreparedData(data)  # a missing folder: one error line here, not one from every process
        args = ["-m", "wavegen", "train", "--data", str(data), "--run-dir", str(run), "--device", device]
        args += (["--recipe", recipe] if recipe else []) + [part for item in overrides for part in ("--set", item)]
        args += (["--steps", str(steps)] if steps else []) + (["--quiet"] if quiet else [])
        sys.exit(distributed.launch(nproc, resolve_device(device), args))
    world = distributed.start(resolve_device(device))
    try:
        run_train(config, data, run, device=device, log=_log, progress=not quiet, world=world, changes=changes)
    finally:
        world.close()


@main.command()
@_options(RUN_OR_CHECKPOINT)
@click.option("--seconds", type=float, help="Length of each output (default 2; with --mel, the features' length).")
@click.option("--n", "n", type=int, help="Number of streams generated together (default 1, or one per label).")
@click.option("--seed", type=int, default=0, show_default=True, help="Stream i uses seed + i.")
@click.option("--temperature", type=float, default=1.0, show_default=True, help="Softmax temperature (> 0).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("samples"), show_default=True)
@click.option("--engine", type=click.Choice(["auto", "native", "cuda-graph", "torch", "reference"]), default="auto",
              show_default=True, help="auto: the fastest that runs here (native on a CPU, cuda-graph on a GPU).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--prime", type=click.Path(path_type=Path), help="Continue the end of this recording instead of silence.")
@click.option("--label", "labels", multiple=True, metavar="NAME",
              help="Label to generate (labelled models; repeatable: one per stream; default: each label in turn).")
@click.option("--mel", type=click.Path(path_type=Path), help="Log-mel features (.npy, frames × bands) for a vocoder model.")
@click.option("--quiet", is_flag=True, help=QUIET)
@friendly_errors
def synth(run, checkpoint, seconds, n, seed, temperature, out, engine, device, prime, labels, mel, quiet):
    """Generate audio from a trained model and write 16-bit WAV files."""
    quick_checks(seconds=seconds, n=n, temperature=temperature, out=out)
    from .synth import pick_checkpoint, synthesize

    synthesize(pick_checkpoint(run, checkpoint), out, seconds, n, seed, temperature, engine, device,
               prime=prime, labels=labels, mel=mel, log=_log, progress=not quiet)


ENGINE_CHOICE = click.Choice(["auto", "native", "cuda-graph", "torch", "reference"])


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@_options(RUN_OR_CHECKPOINT)
@click.option("--out", type=click.Path(path_type=Path), default=Path("samples"), show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Input i uses seed + i.")
@click.option("--temperature", type=float, default=1.0, show_default=True, help="Softmax temperature (> 0).")
@click.option("--label", "labels", multiple=True, metavar="NAME", help="Label, for a labelled vocoder (one, or one per input).")
@click.option("--engine", type=ENGINE_CHOICE, default="auto", show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--quiet", is_flag=True, help=QUIET)
@friendly_errors
def vocode(inputs, run, checkpoint, out, seed, temperature, labels, engine, device, quiet):
    """Resynthesise recordings from their log-mel features with a vocoder model."""
    quick_checks(temperature=temperature, out=out)
    from .synth import pick_checkpoint
    from .vocode import vocode as run_vocode

    run_vocode(pick_checkpoint(run, checkpoint), list(inputs), out, seed, temperature, engine, device,
               labels=labels, log=_log, progress=not quiet)


@main.command(name="eval")
@_options(RUN_OR_CHECKPOINT)
@click.option("--data", type=click.Path(path_type=Path), default=Path("prepared"), show_default=True,
              help="Prepared data whose validation part is scored.")
@click.option("--seconds", type=click.FloatRange(min=0.01), default=2.0, show_default=True,
              help="Vocoder models: seconds resynthesised per validation file.")
@click.option("--files", type=click.IntRange(min=1), default=4, show_default=True,
              help="Vocoder models: validation files resynthesised.")
@click.option("--max-seconds", type=click.FloatRange(min=0.01), default=600.0, show_default=True,
              help="Validation audio scored at most (from the first held-out file on).")
@click.option("--engine", type=ENGINE_CHOICE, default="auto", show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True,
              help="Also print the results as one JSON object on stdout (the report lines stay on stderr).")
@click.option("--quiet", is_flag=True, help=QUIET)
@friendly_errors
def evaluate(run, checkpoint, data, seconds, files, max_seconds, engine, device, as_json, quiet):
    """Score a model: validation bits per sample; for vocoders, the resynthesis log-mel distance."""
    from .limits import check_eval_lengths

    check_eval_lengths(seconds, max_seconds)  # before torch is imported: answered at once
    from .evaluate import evaluate as run_evaluate
    from .synth import pick_checkpoint

    report = run_evaluate(pick_checkpoint(run, checkpoint), data, seconds, files, max_seconds, engine, device,
                          log=_log, progress=not quiet)
    if as_json:
        click.echo(json.dumps(report))


@main.command()
@_options(RUN_OR_CHECKPOINT)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the text.")
@friendly_errors
def info(run, checkpoint, as_json):
    """Show a model's config, parameter count and receptive field."""
    from .synth import describe_checkpoint, pick_checkpoint

    facts = describe_checkpoint(pick_checkpoint(run, checkpoint))
    if as_json:
        click.echo(json.dumps(facts))
        return
    best = facts["best_val_bits"]
    click.echo(f"checkpoint       {facts['checkpoint']} (step {facts['step']}"
               + (f", best validation {best:.3f} bits/sample)" if best is not None else ")"))
    click.echo(f"parameters       {facts['parameters']:,} ({facts['weights']} weights)")
    click.echo(f"receptive field  {facts['receptive_field_samples']} samples "
               f"({facts['receptive_field_ms']} ms at {facts['config']['data']['sample_rate']} Hz)")
    if facts["labels"]:
        click.echo(f"labels           {', '.join(facts['labels'])}")
    before, after = facts["mel_context_frames"]
    if before:
        model = facts["config"]["model"]
        hop, rate = model["mel_hop"], facts["config"]["data"]["sample_rate"]
        click.echo(f"conditioning     {model['mel_channels']}-band log-mels every {hop} samples; a sample in frame f "
                   f"depends on mel frames f-{before}..f+{after} ({1000 * before * hop / rate:.0f} ms back, "
                   f"{1000 * after * hop / rate:.0f} ms ahead)")
    for section, values in facts["config"].items():
        click.echo(f"[{section}]")
        for key, value in values.items():
            click.echo(f"  {key} = {value}")


@main.command()
@click.option("--run", "run", type=click.Path(path_type=Path), help="Run folder (default: newest under runs/).")
@click.option("--samples", "sample_dirs", multiple=True, type=click.Path(path_type=Path), metavar="DIR",
              help="Folder of samples to look in (repeatable; default: RUN/samples and samples/).")
@click.option("--out", type=click.Path(path_type=Path), help="Folder for the page (default: RUN/report).")
@friendly_errors
def report(run, sample_dirs, out):
    """Write a static HTML page about a run: config, curves, validation, every sample with a player.

    The folder holds index.html and every file it shows (relative links, no network): open it
    from disk, zip it or commit it."""
    from .report import build_report

    build_report(run, list(sample_dirs), out, log=_log)


@main.command()
@click.option("--workdir", type=click.Path(path_type=Path), default=Path("demo"), show_default=True,
              help="Where the built-in dataset, prepared data and run go.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("samples"), show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=2000, show_default=True)
@click.option("--seconds", type=float, default=2.0, show_default=True)
@click.option("--n", "n", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--quiet", is_flag=True, help=QUIET)
@friendly_errors
def demo(workdir, out, steps, seconds, n, quiet):
    """Run the whole pipeline on a built-in dataset of generated melodies (no data needed)."""
    from .demo import run_demo

    run_demo(workdir, out, steps, seconds, n, log=_log, progress=not quiet)


@main.command()
@click.option("--recipe", default="default", show_default=True, help="Recipe whose model shape is measured.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Change the shape, e.g. model.cycles=2 (with --train also train.precision).")
@click.option("--engine", "engines", multiple=True, type=click.Choice(["native", "cuda-graph", "torch", "reference"]),
              help="Engines to run (repeatable; default: all).")
@click.option("--batch", "batches", multiple=True, type=click.IntRange(min=1), help="Streams at once (repeatable; default 1 and 32).")
@click.option("--seconds", type=click.FloatRange(min=0.1), default=2.0, show_default=True, help="Wall time per measurement.")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True, help="Measurements per result (median).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads (default: every core available).")
@click.option("--cond", type=click.Choice(["none", "labels", "mels", "both"]),
              help="Condition the model: on 4 labels, on 80 log-mel bands (random), or both (default: as the recipe).")
@click.option("--train", "training", is_flag=True,
              help="Measure training steps instead (forward+backward+Adam), against a plain nn.Conv1d WaveNet.")
@click.option("--segment", "segments", multiple=True, type=click.IntRange(min=1),
              help="--train: predicted samples per window (repeatable; default: the recipe's).")
@click.option("--learn", "learn_data", type=click.Path(path_type=Path), metavar="DATA",
              help="Measure learning instead: train variants on prepared DATA for the same budget, score validation.")
@click.option("--variant", "variants", multiple=True, metavar="NAME[:KEY=VALUE,...]",
              help="--learn: a variant (repeatable): 'plain' (the field's standard WaveNet), 'default' (the recipe), "
                   "or NAME:key=value,... on top of the recipe (default: plain and default).")
@click.option("--minutes", multiple=True, type=click.FloatRange(min=0, min_open=True),
              help="--learn: wall-clock budget of training per variant (repeatable: scored at each mark).")
@click.option("--steps", type=click.IntRange(min=1), multiple=True,
              help="--train: timed steps (median; default 5). --learn: step budget per variant (repeatable).")
@click.option("--compile", "compiled", is_flag=True, help="--train: run wavegen's model through torch.compile.")
@click.option("--recompute", is_flag=True, help="--train: activation checkpointing (recompute in backward).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line instead of the table.")
@click.option("--quiet", is_flag=True, help=QUIET)
@friendly_errors
def bench(recipe, overrides, engines, batches, seconds, repeats, device, threads, cond, training, segments,
          learn_data, variants, minutes, steps, compiled, recompute, as_json, quiet):
    """Measure sampling speed (random weights): one table row per engine and batch size.

    With --train: training speed, one row per implementation, batch and segment length.
    With --learn DATA: validation bits/sample each variant reaches in the same training budget.
    With --json: the same results as JSON lines, each printed as soon as it is measured."""
    from .config import apply_overrides, load_recipe
    from .limits import check_seconds, check_streams

    check_seconds(seconds, beyond="wall time per measurement")
    if not training:
        for batch in batches:
            check_streams(batch, "--batch", "measure smaller batches")
    config = apply_overrides(load_recipe(recipe), list(overrides))
    from . import bench as benchmark
    from .progress import bar as progress_bar
    from .train import resolve_device

    dev = resolve_device(device)
    bar = progress_bar(enabled=not quiet, desc="bench", unit="config", delay=0.5)  # its total: once known

    def show(results, columns):
        from tqdm import tqdm

        def echo(line):  # a row, with the bar (stderr, the same terminal) cleared and redrawn around it
            with tqdm.external_write_mode(file=sys.stdout):
                click.echo(line)

        with bar:
            if as_json:
                benchmark.print_results(results, echo)
            else:
                benchmark.print_table(results, columns, echo)

    from .config import ConfigError

    if learn_data is not None:
        from . import bench_learn

        if training or engines or cond or segments or compiled or recompute:
            raise ConfigError("bench --learn trains variants: --train, --engine, --cond, --segment, --compile and "
                              "--recompute are for the speed benchmarks (set the shape with --set)")
        if not minutes and not steps:
            raise ConfigError("bench --learn: give a budget, --minutes M or --steps N (repeatable)")
        if minutes and steps:
            raise ConfigError("bench --learn: give --minutes or --steps, not both")
        if len(batches) > 1:
            raise ConfigError("bench --learn: one --batch (or --set train.batch_size=N) for every variant")
        if batches:
            apply_overrides(config, [f"train.batch_size={batches[0]}"])
        parsed = [bench_learn.parse_variant(v) for v in variants or (bench_learn.PLAIN, bench_learn.DEFAULT)]
        if len({v.name for v in parsed}) != len(parsed):
            raise ConfigError("bench --learn: variant names must differ")
        click.echo(f"cpu: {bench_learn.cpu_name()}", err=True)
        results = bench_learn.run(config, learn_data, parsed, minutes=list(minutes), steps=list(steps),
                                  device=dev, threads=threads, bar=bar)
        show(results, benchmark.LEARNING_COLUMNS)
        return
    if variants or minutes:
        raise ConfigError("--variant and --minutes are for bench --learn DATA")
    if training:
        from . import bench_train

        if engines or cond:
            raise ConfigError("bench --train measures training steps: --engine and --cond are for sampling")
        # the recipe's shape without conditioning (the plain model it is compared with has none)
        results = bench_train.run(benchmark.conditioned(config.model, "none"), list(batches) or [config.train.batch_size],
                                  list(segments) or [config.train.segment_length], dev, steps[-1] if steps else 5, threads,
                                  compile=compiled, recompute=recompute, precision=config.train.precision, bar=bar)
        show(results, benchmark.TRAINING_COLUMNS)
        return
    default_engines = ["cuda-graph" if dev.type == "cuda" else "native", "torch", "reference"]
    results = benchmark.run(config.model, list(engines) or default_engines, list(batches) or [1, 32],
                            seconds, config.data.sample_rate, dev, repeats, threads, cond, bar=bar)
    show(results, benchmark.SAMPLING_COLUMNS)


if __name__ == "__main__":  # pragma: no cover
    main()
