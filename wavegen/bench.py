"""Sampling benchmark: samples/s of each engine on a model shape, with random weights.

Prints one JSON object per (engine, batch) so results can be collected and compared; speeds
should be compared as ratios within one run (shared machines are noisy).
"""
from __future__ import annotations

import json
import time
from typing import Callable, Iterator

import torch

from .config import ModelConfig
from .model import WaveNet
from .sampling import ReferenceEngine, generate, make_engine


def max_logit_diff(engine_name: str, model: WaveNet, device: torch.device, steps: int = 64) -> float:
    """Largest |logit| difference from the reference engine, teacher-forced over ``steps``."""
    fast, ref = make_engine(engine_name, model, device), ReferenceEngine(model, device)
    codes = torch.randint(0, 256, (2, steps), generator=torch.Generator().manual_seed(0))
    fast.reset(2), ref.reset(2)
    worst = 0.0
    for n in range(steps):
        worst = max(worst, (fast.logits() - ref.logits()).abs().max().item())
        fast.append(codes[:, n].to(device)), ref.append(codes[:, n].to(device))
    return worst


def same_codes_as_reference(engine, model: WaveNet, device: torch.device, steps: int = 64) -> bool:
    """Whether the engine's own generation loop draws exactly the reference's codes."""
    seeds = [11, 12]
    ref = generate(ReferenceEngine(model, device), steps, seeds)
    return bool(torch.equal(generate(engine, steps, seeds), ref))


def _timed(engine, count: int, seeds: list[int], device: torch.device) -> float:
    tick = time.perf_counter()
    generate(engine, count, seeds)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - tick


def run(
    config: ModelConfig,
    engines: list[str],
    batches: list[int],
    seconds: float = 2.0,
    sample_rate: int = 16000,
    device: torch.device = torch.device("cpu"),
    repeats: int = 3,
    threads: int | None = None,
) -> Iterator[dict]:
    """Yield one result per engine and batch size: the median of ``repeats`` timed runs, each
    generating for about ``seconds`` of wall time (the length found by doubling a short run).

    An engine that cannot run here yields ``{"engine": name, "error": why}`` instead.
    """
    from .native import NativeUnavailable
    from .sampling_cuda import EngineUnavailable

    if threads and device.type == "cpu":
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = WaveNet(config).to(device).eval()
    for name in engines:
        try:
            engine = make_engine(name, model, device)
        except (NativeUnavailable, EngineUnavailable) as exc:
            yield {"engine": name, "error": str(exc)}
            continue
        if threads and hasattr(engine, "set_threads"):
            engine.set_threads(threads)
        diff = 0.0 if name == "reference" else max_logit_diff(name, model, device)
        same = True if name == "reference" else same_codes_as_reference(engine, model, device)
        # A graph engine generates whole replays: measure it on multiples of one replay.
        unit = getattr(engine, "steps_per_replay", 8)
        for batch in batches:
            seeds = list(range(batch))
            _timed(engine, unit, seeds, device)  # warm-up: caches, threads, graph capture
            count = unit
            while (took := _timed(engine, count, seeds, device)) < seconds / 4:
                count *= 2
            count = max(unit, round(count * seconds / took / unit) * unit)
            rates = [batch * count / _timed(engine, count, seeds, device) for _ in range(repeats)]
            rate = sorted(rates)[len(rates) // 2]
            yield {
                "engine": name, "batch": batch, "device": device.type, "samples": count,
                "samples_per_s": round(rate, 1),
                "real_time_factor": round(rate / sample_rate, 4),
                "max_logit_diff": diff,
                "same_codes_as_reference": same,
                # the native engine: threads allowed; the layout last used (threads, threads per group)
                **({"threads": engine.threads, "layout": list(engine.layout)} if name == "native" else {}),
            }


def print_results(results: Iterator[dict], echo: Callable[[str], None] = print) -> list[dict]:
    collected = []
    for result in results:
        echo(json.dumps(result))
        collected.append(result)
    return collected
