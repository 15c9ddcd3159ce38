"""``wavegen bench``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .common import PRECISIONS, QUIET, friendly_errors, log


@click.command()
@click.option("--recipe", default="default", show_default=True, help="Recipe whose model shape is measured.")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Change the shape, e.g. model.cycles=2 (with --train also train.precision).",
)
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
@click.option(
    "--batch",
    "batches",
    multiple=True,
    type=click.IntRange(min=1),
    help="Streams at once (repeatable; default: 1 and 32, with --train the recipe's batch_size).",
)
@click.option(
    "--seconds", type=click.FloatRange(min=0.1), default=2.0, show_default=True, help="Wall time per measurement."
)
@click.option(
    "--repeats", type=click.IntRange(min=1), default=3, show_default=True, help="Measurements per result (median)."
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads (default: every core available).")
@click.option(
    "--cond",
    type=click.Choice(["none", "labels", "mels", "both"]),
    help="Condition the model: on 4 labels, on 80 log-mel bands (random), or both (default: as the recipe).",
)
@click.option(
    "--train",
    "training",
    is_flag=True,
    help="Measure training steps instead (forward+backward+Adam), against a plain nn.Conv1d WaveNet.",
)
@click.option(
    "--segment",
    "segments",
    multiple=True,
    type=click.IntRange(min=1),
    help="--train: predicted samples per window (repeatable; default: the recipe's).",
)
@click.option(
    "--learn",
    "learn_data",
    type=click.Path(path_type=Path),
    metavar="DATA",
    help="Measure learning instead: train variants on prepared DATA for the same budget, score validation.",
)
@click.option(
    "--variant",
    "variants",
    multiple=True,
    metavar="NAME[:KEY=VALUE,...]",
    help="--learn: a variant (repeatable): 'plain' (the field's standard WaveNet), 'default' (the recipe), "
    "or NAME:key=value,... on top of the recipe (default: plain and default).",
)
@click.option(
    "--minutes",
    multiple=True,
    type=click.FloatRange(min=0, min_open=True),
    help="--learn: wall-clock budget of training per variant (repeatable: scored at each mark).",
)
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    multiple=True,
    help="--train: timed steps (median). --learn: step budget per variant (repeatable) (default: 5 with --train).",
)
@click.option("--compile", "compiled", is_flag=True, help="--train: run wavegen's model through torch.compile.")
@click.option("--recompute", is_flag=True, help="--train: activation checkpointing (recompute in backward).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line instead of the table.")
@click.option("-q", "--quiet", is_flag=True, help=QUIET)
@friendly_errors
def bench(
    recipe,
    overrides,
    engines,
    precisions,
    batches,
    seconds,
    repeats,
    device,
    threads,
    cond,
    training,
    segments,
    learn_data,
    variants,
    minutes,
    steps,
    compiled,
    recompute,
    as_json,
    quiet,
):
    """Measure sampling speed (random weights): one table row per engine, precision and batch size,
    after a line with the CPU and its fp32 matmul peak.

    With --train: training speed, one row per implementation, batch and segment length.
    With --learn DATA: validation bits/sample each variant reaches in the same training budget.
    With --json: the same results as JSON lines, each printed as soon as it is measured."""
    from ..config import apply_overrides
    from ..limits import check_seconds, check_streams
    from ..recipe import load_recipe

    check_seconds(seconds, beyond="wall time per measurement")
    if not training:
        for batch in batches:
            check_streams(batch, "--batch", "measure smaller batches")
    config = apply_overrides(load_recipe(recipe), list(overrides))
    from ..bench import machine, tables
    from ..bench import sampling as benchmark
    from ..devices import resolve_device
    from ..progress import bar as progress_bar

    dev = resolve_device(device)
    bar = progress_bar(enabled=not quiet, desc="bench", unit="config", delay=0.5)  # its total: once known

    def show(results, columns):
        from tqdm import tqdm

        def echo(line):  # a row, with the bar (stderr, the same terminal) cleared and redrawn around it
            with tqdm.external_write_mode(file=sys.stdout):
                click.echo(line)

        with bar:
            if as_json:
                tables.print_results(results, echo)
            else:
                tables.print_table(results, columns, echo)

    from ..config import ConfigError

    if learn_data is not None:
        from ..bench import learning as bench_learn

        if training or engines or cond or segments or compiled or recompute or precisions:
            raise ConfigError(
                "bench --learn trains variants: --train, --engine, --precision, --cond, --segment, --compile and "
                "--recompute are for the speed benchmarks (set the shape with --set)"
            )
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
        click.echo(f"cpu: {machine.cpu_name()}", err=True)
        results = bench_learn.run(
            config, learn_data, parsed, minutes=list(minutes), steps=list(steps), device=dev, threads=threads, bar=bar
        )
        show(results, tables.LEARNING_COLUMNS)
        return
    if variants or minutes:
        raise ConfigError("--variant and --minutes are for bench --learn DATA")
    if training:
        from ..bench import training as bench_train

        if engines or cond or precisions:
            raise ConfigError(
                "bench --train measures training steps: --engine and --cond are for sampling, and so is "
                "--precision (--set train.precision=... sets training's)"
            )
        # the recipe's shape without conditioning (the plain model it is compared with has none)
        results = bench_train.run(
            benchmark.conditioned(config.model, "none"),
            list(batches) or [config.train.batch_size],
            list(segments) or [config.train.segment_length],
            dev,
            steps[-1] if steps else 5,
            threads,
            compile=compiled,
            recompute=recompute,
            precision=config.train.precision,
            bar=bar,
        )
        show(results, tables.TRAINING_COLUMNS)
        return
    results = sampling_results(config, dev, engines, precisions, batches, seconds, repeats, threads, cond, as_json, bar)
    show(results, tables.SAMPLING_COLUMNS)


def sampling_results(config, dev, engines, precisions, batches, seconds, repeats, threads, cond, as_json, bar):
    """The sampling benchmark's results (an iterator), after the machine's line, and a note when
    a lower precision is asked of engines that have none."""
    from ..bench import sampling as benchmark

    gpu = ["persistent", "cuda-graph"] if dev.type == "cuda" else ["native"]
    engines = list(engines) or [*gpu, "peer", "torch", "reference"]
    peak = machine_line(threads, as_json)
    precisions = list(dict.fromkeys(precisions)) or ["fp32"]
    lower, others = [p for p in precisions if p != "fp32"], [e for e in engines if e != "native"]
    if lower and others:  # said once, not as a row per engine
        verb = "runs" if len(others) == 1 else "run"
        log(f"--precision {', '.join(lower)}: the native engine's alone; {', '.join(others)} {verb} at fp32")
    return benchmark.run(
        config.model,
        engines,
        list(batches) or [1, 32],
        seconds,
        config.data.sample_rate,
        dev,
        repeats,
        threads,
        cond,
        bar=bar,
        precisions=precisions,
        peak_gflops=peak,
    )


def machine_line(threads: int | None, as_json: bool) -> float:
    """Measure the CPU's fp32 matmul peak with the bench's threads and say it first: a line on
    stderr, and with ``--json`` a JSON line before the results. Returns it in GFLOP/s."""
    import torch

    from ..bench.machine import cpu_name, sgemm_gflops

    size, used = 2048, threads or torch.get_num_threads()
    peak = sgemm_gflops(size, threads=used)
    threads_used = f"{used} thread{'s' if used != 1 else ''}"
    log(f"cpu: {cpu_name()}; fp32 matmul peak {peak:,.1f} GFLOP/s (torch.mm {size}², {threads_used})")
    if as_json:
        click.echo(json.dumps({"cpu": cpu_name(), "sgemm_gflops": round(peak, 1), "sgemm_size": size, "threads": used}))
    return peak
