"""Sampling benchmark: samples/s of each engine on a model shape, with random weights.

``wavegen bench`` prints one table row per (engine, precision, batch), or with ``--json`` one
JSON object per line so results can be collected and compared (``tables``); speeds should be
compared as ratios within one run (shared machines are noisy).

``cond`` measures a conditioned model of the same shape: labels (4 of them, stream i gets
label i mod 4), log-mel features (80 bands, random values, one frame per 256 samples) or both.
Its results also give the time the engine's ``reset`` took (the parallel pass over the past,
per stream when conditioned) and the rate of the generation loop alone.

The native engine is measured at each precision asked for (fp32, bf16, int8: ``quantized``),
the others at fp32. Every row says how far the engine's logits are from the fp32 reference
engine's (``max_logit_diff_vs_fp32``: what a lower precision costs) and from the reference at
its own precision (``max_logit_diff``), and whether it draws that reference's codes. ``peer``
is r9y9/wavenet_vocoder's sampler on the same weights (``peer``). Native rows also give their
arithmetic rate (``machine.flops_per_sample`` × samples/s) and its fraction of the fp32 matmul
peak measured in the same run (``machine.sgemm_gflops``).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from typing import Iterator, Sequence

import torch

from ..config import Config, ModelConfig
from ..errors import ConfigError, EngineUnavailable
from ..generate.choice import make_engine
from ..generate.engines import generate
from ..generate.quantized import at_precision
from ..generate.reference import ReferenceEngine
from ..model.conditioning import Conditioning
from ..model.network import WaveNet
from .machine import announce_peak, flops_per_sample
from .peer import PeerSampler, PeerUnavailable

logger = logging.getLogger(__name__)

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


def max_logit_diff(engine, reference, model: WaveNet, steps: int = 64) -> float:
    """Largest |logit| difference between two engines built on ``model``, teacher-forced over
    the same ``steps`` random codes (and the same random conditioning)."""
    codes = torch.randint(0, 256, (2, steps), generator=torch.Generator().manual_seed(0))
    cond = random_conditioning(model, 2, steps)
    engine.reset(2, None, cond), reference.reset(2, None, cond)
    worst = 0.0
    for n in range(steps):
        worst = max(worst, (engine.logits().cpu() - reference.logits().cpu()).abs().max().item())
        engine.append(codes[:, n].to(reference.device)), reference.append(codes[:, n].to(reference.device))
    return worst


def same_codes_as_reference(engine, model: WaveNet, device: torch.device, steps: int = 64, reference=None) -> bool:
    """Whether the engine's own generation loop draws exactly the codes of the reference engine
    on ``reference`` (default: ``model``; at a lower precision, ``at_precision``'s network)."""
    seeds = [11, 12]
    cond = random_conditioning(model, 2, steps)
    ref = generate(ReferenceEngine(model if reference is None else reference, device), steps, seeds, conditioning=cond)
    return bool(torch.equal(generate(engine, steps, seeds, conditioning=cond), ref))


def build(name: str, model: WaveNet, device: torch.device, precision: str = "fp32"):
    """An engine of ``make_engine``'s, or ``peer``, the peer's sampler."""
    return PeerSampler(model, device) if name == "peer" else make_engine(name, model, device, precision=precision)


def checks(name: str, engine, model: WaveNet, device: torch.device, precision: str) -> dict:
    """How far ``engine``'s logits are from the reference engine's, at fp32 and at its own
    precision, and whether it draws the reference's codes at its precision (None for the peer,
    which draws its own way)."""
    if name == "reference":
        return {"max_logit_diff": 0.0, "max_logit_diff_vs_fp32": 0.0, "same_codes_as_reference": True}
    vs_fp32 = max_logit_diff(engine, ReferenceEngine(model, device), model)
    lowered = None if precision == "fp32" else at_precision(model, precision)
    exact = vs_fp32 if lowered is None else max_logit_diff(engine, ReferenceEngine(lowered, device), model)
    same = None if name == "peer" else same_codes_as_reference(engine, model, device, reference=lowered)
    return {"max_logit_diff": exact, "max_logit_diff_vs_fp32": vs_fp32, "same_codes_as_reference": same}


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
        if isinstance(engine, PeerSampler):  # its own loop: softmax and a categorical draw per step
            engine.sample(count, seeds, conditioning=cond)
        else:
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
    precisions: Sequence[str] = ("fp32",),
    peak_gflops: float | None = None,
) -> Iterator[dict]:
    """Yield one result per engine, precision and batch size: the median of ``repeats`` timed
    runs, each generating for about ``seconds`` of wall time (the length found by doubling a
    short run). ``cond`` conditions the model (see ``conditioned``). The native engine runs at
    each of ``precisions``, every other engine at fp32 alone. ``peak_gflops`` (the fp32 matmul
    peak, ``machine.sgemm_gflops``) adds native rows' arithmetic GFLOP/s and its fraction of the
    peak. ``bar`` (a tqdm) counts the results.

    An engine that cannot run here yields ``{"engine": name, "precision": p, "error": why}`` instead.
    """
    if threads and device.type == "cpu":
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = WaveNet(conditioned(config, cond)).to(device).eval()
    kind = COND_KINDS[bool(model.config.labels) + 2 * bool(model.config.mel_channels)]
    measured = [(name, p) for name in engines for p in (precisions if name == "native" else ["fp32"])]
    if bar is not None:
        bar.reset(total=len(measured) * len(batches))
    for name, precision in measured:
        try:
            engine = build(name, model, device, precision)
        except (EngineUnavailable, PeerUnavailable, ConfigError) as exc:
            if bar is not None:
                bar.update(len(batches))
            yield {"engine": name, "precision": precision, "error": str(exc)}
            continue
        if threads and hasattr(engine, "set_threads"):
            engine.set_threads(threads)
        checked = checks(name, engine, model, device, precision)
        # A graph engine generates whole replays: measure it on multiples of one replay.
        unit = getattr(engine, "steps_per_replay", 8)
        for batch in batches:
            count, runs = _measure(engine, unit, list(range(batch)), seconds, repeats, device, model)
            if bar is not None:
                bar.update(1)
            row = {"engine": name, "batch": batch, "device": device.type, "cond": kind, "precision": precision}
            speeds = _speeds(batch, count, runs, sample_rate)
            yield {**row, **speeds, **checked, **_native(engine, model, speeds["samples_per_s"], peak_gflops)}


def _speeds(batch: int, count: int, runs: list[tuple[float, float]], sample_rate: int) -> dict:
    """The rates of ``runs`` (seconds, of which reset) of ``count`` samples per stream: medians."""
    rate = _median([batch * count / took for took, _ in runs])
    return {
        "samples": count,
        "samples_per_s": round(rate, 1),
        "real_time_factor": round(rate / sample_rate, 4),
        "reset_s": round(_median([reset for _, reset in runs]), 4),
        "loop_samples_per_s": round(_median([batch * count / (took - reset) for took, reset in runs]), 1),
    }


def _native(engine, model: WaveNet, rate: float, peak_gflops: float | None) -> dict:
    """A native row's extras: threads allowed and the layout last used (threads, threads per
    group), the arithmetic rate at ``rate`` samples/s in GFLOP/s and its fraction of the peak."""
    if engine.name != "native":
        return {}
    flops = flops_per_sample(model)
    gflops = rate * flops / 1e9
    extras = {"threads": engine.threads, "layout": list(engine.layout), "flops_per_sample": flops}
    extras["arithmetic_gflops"] = float(f"{gflops:.4g}")  # (4 figures: tiny models make small numbers)
    if peak_gflops:
        extras["sgemm_fraction"] = float(f"{gflops / peak_gflops:.4g}")
    return extras


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


def run_asked(
    config: Config, dev: torch.device, engines, precisions, batches, seconds, repeats, threads, cond, *, say, bar
) -> Iterator[dict]:
    """``bench sample``'s results (``run``) for the options as given (empty: the defaults), after
    the machine's line (``machine.announce_peak``; ``say``: its JSON line too) and a note
    when a lower precision is asked of engines that have none."""
    gpu = ["persistent", "cuda-graph"] if dev.type == "cuda" else ["native"]
    engines = list(engines) or [*gpu, "peer", "torch", "reference"]
    peak = announce_peak(threads, say)
    precisions = list(dict.fromkeys(precisions)) or ["fp32"]
    lower, others = [p for p in precisions if p != "fp32"], [e for e in engines if e != "native"]
    if lower and others:  # said once, not as a row per engine
        verb = "runs" if len(others) == 1 else "run"
        logger.info(f"--precision {', '.join(lower)}: the native engine's alone; {', '.join(others)} {verb} at fp32")
    batches, rate = list(batches) or [1, 32], config.data.sample_rate
    measure = functools.partial(run, bar=bar, precisions=precisions, peak_gflops=peak)
    return measure(config.model, engines, batches, seconds, rate, dev, repeats, threads, cond)
