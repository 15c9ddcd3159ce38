"""Sampling benchmark: samples/s of each engine on a model shape, with random weights.

``wavegen bench`` prints one table row per (engine, batch), or with ``--json`` one JSON object
per line so results can be collected and compared; speeds should be compared as ratios within
one run (shared machines are noisy).

``cond`` measures a conditioned model of the same shape: labels (4 of them, stream i gets
label i mod 4), log-mel features (80 bands, random values, one frame per 256 samples) or both.
Its results also give the time the engine's ``reset`` took (the parallel pass over the past,
per stream when conditioned) and the rate of the generation loop alone.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Callable, Iterator

import torch

from ..config import ModelConfig
from ..generate.engines import generate, make_engine
from ..generate.reference import ReferenceEngine
from ..model.conditioning import Conditioning
from ..model.network import WaveNet

COND_KINDS = ("none", "labels", "mels", "both")


def conditioned(config: ModelConfig, kind: str | None) -> ModelConfig:
    """The model shape conditioned as ``kind`` says (None: as the config is)."""
    if kind is None:
        return config
    if kind not in COND_KINDS:
        raise ValueError(f"unknown conditioning {kind!r} (choose from {', '.join(COND_KINDS)})")
    labels, mels = kind in ("labels", "both"), kind in ("mels", "both")
    return dataclasses.replace(
        config,
        labels=(config.labels or [f"label{i}" for i in range(4)]) if labels else [],
        mel_channels=(config.mel_channels or 80) if mels else 0,
        mel_hop=(config.mel_hop or 256) if mels else 0,
    )


def random_conditioning(model: WaveNet, batch: int, samples: int, seed: int = 0) -> Conditioning | None:
    """Labels i mod (number of labels) and random log-mel features for ``samples`` samples
    (None for an unconditioned model)."""
    c = model.config
    if not model.conditioned:
        return None
    labels = torch.arange(batch) % len(c.labels) if c.labels else None
    mels = None
    if c.mel_channels:
        frames = samples // c.mel_hop + 1
        mels = torch.randn(batch, c.mel_channels, frames, generator=torch.Generator().manual_seed(seed)) * 2 - 4
    return Conditioning(model, labels, mels)


def max_logit_diff(engine_name: str, model: WaveNet, device: torch.device, steps: int = 64) -> float:
    """Largest |logit| difference from the reference engine, teacher-forced over ``steps``."""
    fast, ref = make_engine(engine_name, model, device), ReferenceEngine(model, device)
    codes = torch.randint(0, 256, (2, steps), generator=torch.Generator().manual_seed(0))
    cond = random_conditioning(model, 2, steps)
    fast.reset(2, None, cond), ref.reset(2, None, cond)
    worst = 0.0
    for n in range(steps):
        worst = max(worst, (fast.logits() - ref.logits()).abs().max().item())
        fast.append(codes[:, n].to(device)), ref.append(codes[:, n].to(device))
    return worst


def same_codes_as_reference(engine, model: WaveNet, device: torch.device, steps: int = 64) -> bool:
    """Whether the engine's own generation loop draws exactly the reference's codes."""
    seeds = [11, 12]
    cond = random_conditioning(model, 2, steps)
    ref = generate(ReferenceEngine(model, device), steps, seeds, conditioning=cond)
    return bool(torch.equal(generate(engine, steps, seeds, conditioning=cond), ref))


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def _timed(engine, count: int, seeds: list[int], device: torch.device, model: WaveNet) -> tuple[float, float]:
    """Seconds of one ``generate`` of ``count`` samples per stream, and of its ``reset`` alone."""
    cond = random_conditioning(model, len(seeds), count)
    reset, spent = engine.reset, []

    def timed_reset(*args, **kwargs) -> None:
        tick = time.perf_counter()
        reset(*args, **kwargs)
        if device.type == "cuda":
            torch.cuda.synchronize()
        spent.append(time.perf_counter() - tick)

    engine.reset = timed_reset  # this call only: the instance attribute hides the method
    try:
        tick = time.perf_counter()
        generate(engine, count, seeds, conditioning=cond)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - tick, sum(spent)
    finally:
        del engine.reset


def run(
    config: ModelConfig,
    engines: list[str],
    batches: list[int],
    seconds: float = 2.0,
    sample_rate: int = 16000,
    device: torch.device = torch.device("cpu"),
    repeats: int = 3,
    threads: int | None = None,
    cond: str | None = None,
    bar=None,
) -> Iterator[dict]:
    """Yield one result per engine and batch size: the median of ``repeats`` timed runs, each
    generating for about ``seconds`` of wall time (the length found by doubling a short run).
    ``cond`` conditions the model (see ``conditioned``). ``bar`` (a tqdm) counts the results.

    An engine that cannot run here yields ``{"engine": name, "error": why}`` instead.
    """
    from ..generate.cuda_graph import EngineUnavailable
    from ..generate.native import NativeUnavailable

    if threads and device.type == "cpu":
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = WaveNet(conditioned(config, cond)).to(device).eval()
    kind = COND_KINDS[bool(model.config.labels) + 2 * bool(model.config.mel_channels)]
    if bar is not None:
        bar.reset(total=len(engines) * len(batches))
    for name in engines:
        try:
            engine = make_engine(name, model, device)
        except (NativeUnavailable, EngineUnavailable) as exc:
            if bar is not None:
                bar.update(len(batches))
            yield {"engine": name, "error": str(exc)}
            continue
        if threads and hasattr(engine, "set_threads"):
            engine.set_threads(threads)
        diff = 0.0 if name == "reference" else max_logit_diff(name, model, device)
        same = True if name == "reference" else same_codes_as_reference(engine, model, device)
        # A graph engine generates whole replays: measure it on multiples of one replay.
        unit = getattr(engine, "steps_per_replay", 8)
        for batch in batches:
            count, runs = _measure(engine, unit, list(range(batch)), seconds, repeats, device, model)
            rate = _median([batch * count / took for took, _ in runs])
            if bar is not None:
                bar.update(1)
            yield {
                "engine": name,
                "batch": batch,
                "device": device.type,
                "cond": kind,
                "samples": count,
                "samples_per_s": round(rate, 1),
                "real_time_factor": round(rate / sample_rate, 4),
                "reset_s": round(_median([reset for _, reset in runs]), 4),
                "loop_samples_per_s": round(_median([batch * count / (took - reset) for took, reset in runs]), 1),
                "max_logit_diff": diff,
                "same_codes_as_reference": same,
                # the native engine: threads allowed; the layout last used (threads, threads per group)
                **({"threads": engine.threads, "layout": list(engine.layout)} if name == "native" else {}),
            }


def _measure(
    engine, unit: int, seeds: list[int], seconds: float, repeats: int, device: torch.device, model: WaveNet
) -> tuple[int, list[tuple[float, float]]]:
    """The length (a multiple of ``unit`` samples) that takes about ``seconds`` to generate,
    found by doubling a short run, and ``repeats`` timed runs of it: (seconds, of which reset)."""
    _timed(engine, unit, seeds, device, model)  # warm-up: caches, threads, graph capture
    count = unit
    while True:  # sized by the loop alone: a conditioned reset can take seconds
        took, reset = _timed(engine, count, seeds, device, model)
        if took - reset >= seconds / 4:
            break
        count *= 2
    count = max(unit, round(count * seconds / (took - reset) / unit) * unit)
    return count, [_timed(engine, count, seeds, device, model) for _ in range(repeats)]


def print_results(results: Iterator[dict], echo: Callable[[str], None] = print) -> list[dict]:
    """One JSON object per line, each as soon as it is measured (``bench --json``)."""
    collected = []
    for result in results:
        echo(json.dumps(result))
        collected.append(result)
    return collected


def _number(spec: str) -> Callable[[object], str]:
    return lambda value: format(value, spec)


# (header, key, width, format): a result without the key shows "-"
SAMPLING_COLUMNS = [
    ("engine", "engine", 10, str),
    ("batch", "batch", 5, str),
    ("device", "device", 6, str),
    ("cond", "cond", 6, str),
    ("samples/s", "samples_per_s", 11, _number(",.0f")),
    ("× real time", "real_time_factor", 11, _number(".3f")),
    ("reset s", "reset_s", 7, _number(".3f")),
    ("loop samples/s", "loop_samples_per_s", 14, _number(",.0f")),
    ("max logit diff", "max_logit_diff", 14, _number(".1e")),
    ("same codes", "same_codes_as_reference", 10, lambda same: "yes" if same else "NO"),
    ("threads", "threads", 7, str),
]


TRAINING_COLUMNS = [
    ("impl", "impl", 16, str),
    ("device", "device", 6, str),
    ("precision", "precision", 9, str),
    ("allocator", "allocator", 13, str),
    ("batch", "batch", 5, str),
    ("segment", "segment", 7, str),
    ("step s", "step_s", 8, _number(".4f")),
    ("samples/s", "samples_per_s", 11, _number(",.0f")),
    ("peak MB", "peak_memory_mb", 8, _number(",.1f")),
    ("× plain", "speedup_vs_plain", 7, _number(".2f")),
    ("× plain same prec.", "speedup_vs_plain_same_precision", 18, _number(".2f")),
    ("× plain default", "speedup_vs_plain_default", 15, _number(".2f")),
]


LEARNING_COLUMNS = [
    ("variant", "variant", 12, str),
    ("budget", "budget", 9, str),
    ("steps", "steps", 6, str),
    ("step s", "step_s", 7, _number(".3f")),
    ("samples/s", "samples_per_s", 10, _number(",.0f")),
    ("train bits", "train_bits", 10, _number(".3f")),
    ("val bits", "val_bits", 8, _number(".3f")),
    ("precision", "precision", 9, str),
    ("settings", "settings", 8, str),
]


def print_table(results: Iterator[dict], columns: list[tuple], echo: Callable[[str], None] = print) -> list[dict]:
    """A header, then one aligned row per result as soon as it is measured (``bench``'s
    default output). Text columns are left-aligned, numbers right-aligned; a result with an
    ``error`` (an engine that cannot run here) shows it after the first column."""
    widths = [max(len(header), width) for header, _, width, _ in columns]

    def line(cells: list[str], numeric: list[bool]) -> str:
        return "  ".join(
            cell.rjust(w) if right else cell.ljust(w) for cell, w, right in zip(cells, widths, numeric)
        ).rstrip()

    numeric = [fmt is not str or key in ("batch", "segment", "threads", "steps") for _, key, _, fmt in columns]
    echo(line([header for header, *_ in columns], numeric))
    collected = []
    for result in results:
        if "error" in result:
            first = columns[0][1]
            echo(f"{str(result.get(first, '')).ljust(widths[0])}  error: {result['error']}")
        else:
            echo(line(["-" if result.get(key) is None else fmt(result[key]) for _, key, _, fmt in columns], numeric))
        collected.append(result)
    return collected
