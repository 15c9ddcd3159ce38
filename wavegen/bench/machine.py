"""What a benchmark's numbers are measured against: the processor, its fp32 matrix-multiply peak
measured in the same run, and the arithmetic one generated sample costs.

A sampling engine's samples/s says little across machines; samples/s × the arithmetic per sample,
as a fraction of what ``torch.mm`` reaches on large matrices on the same cores at the same
moment, says how much of the machine an engine uses (one sample at a time is matrix-vector
work, bound by memory and latency, so a fraction well below 1 is expected).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Callable

import torch

from ..model.network import WaveNet
from ..train import precision as precisions

logger = logging.getLogger(__name__)


def cpu_name() -> str:
    """The processor's model name, and whether it multiplies bf16 natively (speeds depend on it)."""
    name = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            name = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), name)
    except OSError:
        pass
    return f"{name} ({'native bf16' if precisions.native_bf16(torch.device('cpu')) else 'no native bf16'})"


def sgemm_gflops(size: int = 2048, repeats: int = 5, threads: int | None = None) -> float:
    """The CPU's fp32 matrix-multiply rate in GFLOP/s: ``torch.mm`` of two random (size, size)
    float32 matrices (2·size³ floating-point operations), the median of ``repeats`` timed
    products after one untimed, on ``threads`` threads (default: torch's current setting; the
    setting is restored)."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        generator = torch.Generator().manual_seed(0)
        a, b = (torch.randn(size, size, generator=generator) for _ in range(2))
        out = torch.empty(size, size)
        torch.mm(a, b, out=out)  # warm-up: threads started, pages touched
        took = []
        for _ in range(repeats):
            tick = time.perf_counter()
            torch.mm(a, b, out=out)
            took.append(time.perf_counter() - tick)
    finally:
        torch.set_num_threads(before)
    return 2 * size**3 / sorted(took)[len(took) // 2] / 1e9


def flops_per_sample(model: WaveNet) -> int:
    """Floating-point operations one generated sample costs a cached engine: 2 per multiply-add
    of every residual layer (its dilated convolution, k·R → 2G, and its residual and skip 1×1s,
    G → R + S) and of the head (S → S → classes). The input layer (a table lookup), biases,
    activations, the conditioning terms and the draw are left out: they are a few percent of a
    layer. An int8 engine's integer multiply-adds count the same way."""
    c = model.config
    layer = 2 * c.gate_channels * c.kernel_size * c.residual_channels + c.gate_channels * (
        c.residual_channels + c.skip_channels
    )
    head = c.skip_channels * (c.skip_channels + c.classes)
    return 2 * (len(model.blocks) * layer + head)


def announce_peak(threads: int | None, say: Callable[[str], None] | None = None) -> float:
    """Measure the CPU's fp32 matmul peak with the bench's threads and say it first: a message,
    and to ``say`` (``bench --json``'s output) a JSON line before the results. Returns
    it in GFLOP/s."""
    size, used = 2048, threads or torch.get_num_threads()
    peak = sgemm_gflops(size, threads=used)
    threads_used = f"{used} thread{'s' if used != 1 else ''}"
    logger.info(f"cpu: {cpu_name()}; fp32 matmul peak {peak:,.1f} GFLOP/s (torch.mm {size}², {threads_used})")
    if say is not None:
        say(json.dumps({"cpu": cpu_name(), "sgemm_gflops": round(peak, 1), "sgemm_size": size, "threads": used}))
    return peak
