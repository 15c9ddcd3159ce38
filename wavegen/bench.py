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


def same_codes_as_reference(engine_name: str, model: WaveNet, device: torch.device, steps: int = 64) -> bool:
    """Whether the engine's own generation loop draws exactly the reference's codes."""
    seeds = [11, 12]
    fast = generate(make_engine(engine_name, model, device), steps, seeds)
    return bool(torch.equal(fast, generate(ReferenceEngine(model, device), steps, seeds)))


def run(
    config: ModelConfig,
    engines: list[str],
    batches: list[int],
    seconds: float = 2.0,
    sample_rate: int = 16000,
    device: torch.device = torch.device("cpu"),
    repeats: int = 3,
) -> Iterator[dict]:
    """Yield one result per engine and batch size: the median of ``repeats`` timed runs, each
    generating for about ``seconds`` of wall time (calibrated on shorter runs first)."""
    torch.manual_seed(0)
    model = WaveNet(config).to(device).eval()
    for name in engines:
        engine = make_engine(name, model, device)
        diff = 0.0 if name == "reference" else max_logit_diff(name, model, device)
        same = True if name == "reference" else same_codes_as_reference(name, model, device)
        for batch in batches:
            seeds = list(range(batch))
            # Double the length until a run takes a quarter of the budget. The first run only
            # warms up (a graph engine records its graph then), and graph engines generate
            # whole replays, so their lengths are multiples of one replay.
            count, runs = getattr(engine, "steps_per_replay", 16), 0
            while True:
                tick = time.perf_counter()
                generate(engine, count, seeds)
                elapsed, runs = time.perf_counter() - tick, runs + 1
                if runs == 1:
                    continue
                if elapsed >= seconds / 4 or count >= 1 << 22:
                    break
                count *= 2
            unit = getattr(engine, "steps_per_replay", 1)
            count = max(unit, int(count * seconds / elapsed) // unit * unit)
            rates = []
            for _ in range(repeats):
                tick = time.perf_counter()
                generate(engine, count, seeds)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                rates.append(batch * count / (time.perf_counter() - tick))
            rate = sorted(rates)[len(rates) // 2]
            yield {
                "engine": name, "batch": batch, "device": device.type, "samples": count,
                "samples_per_s": round(rate, 1),
                "real_time_factor": round(rate / sample_rate, 4),
                "max_logit_diff": diff,
                "same_codes_as_reference": same,
            }


def print_results(results: Iterator[dict], echo: Callable[[str], None] = print) -> list[dict]:
    collected = []
    for result in results:
        echo(json.dumps(result))
        collected.append(result)
    return collected
