"""The C++ held to the Python references, in seconds: ``python -m wavegen.generate.native.check``.

On tiny random models of two shapes (one that fills the kernels' vectors and panels, one that
fills none), unconditioned and conditioned on labels and mels, at every precision and a few
batch sizes and thread layouts, it compares the engine with its reference:

- its teacher-forced logits after a history: fp32 within 1e-4 of the network's parallel forward
  pass, bf16 within 1e-4 of ``quantized.bf16_model``'s, int8 bit for bit ``int8.Int8WaveNet``'s;
- the codes it generates from silence: exactly those the reference draws from its own logits
  with the same uniforms (teacher-forced on the engine's codes, one parallel pass).

Every mismatch is one line on stderr and the exit status is then 1. ``--sanitize`` runs the same
on a build with ``-O1 -g`` and AddressSanitizer + UndefinedBehaviorSanitizer (``SANITIZE_FLAGS``;
a variant in the cache's ``sanitize/`` folder, never replacing the normal library). The check
then runs again as a child process with the compiler's libasan in ``LD_PRELOAD`` (ASan must be
the first library loaded, and Python is not built with it) and ``ASAN_OPTIONS=detect_leaks=0``
(Python's own allocations at exit are not leaks of the engine); a finding aborts it with the
sanitizer's report.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from ...config import ModelConfig
from ...messages import setup
from ...model.conditioning import Conditioning
from ...model.network import WaveNet
from ..engine import sample_codes, stream_uniforms
from ..int8 import Int8WaveNet
from ..quantized import bf16_model
from ..state import silence
from .abi import load, open_library
from .engine import NativeEngine
from .toolchain import NativeUnavailable, build, find_compiler

logger = logging.getLogger(__name__)

SANITIZE_FLAGS = ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
COND: dict[str, Any] = dict(labels=["a", "b", "c"], mel_channels=5, mel_hop=16, cond_channels=12)
SHAPES = {
    "k2": ModelConfig(cycles=2, layers_per_cycle=5, residual_channels=16, gate_channels=16, skip_channels=32),
    # Sizes that fill no vector or panel, a one-tap input layer, a four-tap kernel.
    "odd": ModelConfig(
        cycles=1,
        layers_per_cycle=3,
        kernel_size=4,
        input_kernel_size=1,
        residual_channels=5,
        gate_channels=7,
        skip_channels=9,
    ),
}
PRECISIONS = ["fp32", "bf16", "int8"]
# Batch size -> (threads, threads per group): one stream split over two threads; three streams on
# single-thread groups (past taps computed a block of steps ahead); eight streams in one group.
LAYOUTS = {1: (2, 2), 3: (2, 1), 8: (2, 2)}
HISTORY, FORCED, GENERATED, FRAMES = 20, 24, 128, 6  # samples; mel frames (96 samples, then silence)
TOLERANCE = {"fp32": 1e-4, "bf16": 1e-4, "int8": 0.0}


class Case(NamedTuple):
    shape: str
    conditioned: bool
    precision: str
    batch: int

    def __str__(self) -> str:
        kind = "labels+mels" if self.conditioned else "unconditioned"
        return f"{self.precision} {self.shape} {kind} batch {self.batch}"


def cases() -> list[Case]:
    """Every combination of shape, conditioning, precision and batch size the check runs."""
    return [Case(s, c, p, b) for s in SHAPES for c in (False, True) for p in PRECISIONS for b in LAYOUTS]


def tiny_model(shape: str, conditioned: bool, seed: int = 0) -> WaveNet:
    """``random_model`` of one of ``SHAPES``, conditioned on ``COND`` or not."""
    config = SHAPES[shape]
    return random_model(dataclasses.replace(config, **COND) if conditioned else config, seed)


def random_model(config: ModelConfig, seed: int = 0) -> WaveNet:
    """A model of ``config`` with random weights whose softmax is peaky, as a trained one's is (a
    mismatch between engines then shows up as different codes): every weight the engines read
    N(0, 0.3), through weight norm and the folded scales, whatever the parameterisation."""
    torch.manual_seed(seed)
    model = WaveNet(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
        for module in model.modules():
            for name in list(getattr(module, "parametrizations", {}) or {}):
                setattr(module, name, torch.randn(getattr(module, name).shape) * 0.3)
    return model.eval()


def conditioning_for(model: WaveNet, batch: int) -> Conditioning | None:
    """Labels 0, 1, 2, 0, … and random mel frames per stream, or None for a model without."""
    if model.conditioner is None:
        return None
    mels = torch.randn(batch, model.config.mel_channels, FRAMES, generator=torch.Generator().manual_seed(batch))
    return Conditioning(model, torch.arange(batch) % len(model.config.labels), mels * 2 - 4)


def reference_for(model: WaveNet, precision: str):
    """The Python network the engine at ``precision`` must agree with."""
    if precision == "int8":
        return Int8WaveNet(model)
    return bf16_model(model) if precision == "bf16" else model


def _reference_logits(reference, engine, conditioning, codes: torch.Tensor, output_from: int) -> torch.Tensor:
    """The reference's logits (B, C, N) for positions ``output_from ..`` of ``codes`` (B, T),
    time 0 at ``output_from`` (what came before is the past)."""
    cond = None
    if conditioning is not None:
        start, count = -output_from, codes.shape[1]
        if isinstance(reference, Int8WaveNet):  # the terms as the int8 arithmetic reads them
            cond = engine.engine_terms(conditioning, start, count)
        else:
            cond = conditioning.terms(start, count)
    with torch.no_grad():
        return reference(codes, output_from=output_from, cond=cond).float()


def _logits_mismatch(engine, reference, conditioning, case: Case) -> str | None:
    gen = torch.Generator().manual_seed(case.batch)
    history = torch.randint(0, 256, (case.batch, HISTORY), generator=gen)
    future = torch.randint(0, 256, (case.batch, FORCED), generator=gen)
    engine.reset(case.batch, history, conditioning)
    steps = []
    for n in range(FORCED):
        steps.append(engine.logits())
        engine.append(future[:, n])
    stepped = torch.stack(steps, dim=2)  # (B, C, N)
    past = engine.rf + HISTORY
    codes = torch.cat([silence(case.batch, engine.rf), history, future], dim=1)
    expected = _reference_logits(reference, engine, conditioning, codes, past)
    error = (stepped - expected).abs().max().item()
    if error > TOLERANCE[case.precision]:
        return f"teacher-forced logits differ from the reference by {error:.3g}"
    return None


def _codes_mismatch(engine, reference, conditioning, case: Case) -> str | None:
    seeds, temperature = [100 + i for i in range(case.batch)], 0.9
    engine.reset(case.batch, None, conditioning)
    out = torch.empty(case.batch, GENERATED, dtype=torch.uint8)
    engine.sample_steps(out, 0, GENERATED, seeds, np.full(case.batch, temperature))
    codes = torch.cat([silence(case.batch, engine.rf), out.long()], dim=1)
    logits = _reference_logits(reference, engine, conditioning, codes, engine.rf)  # (B, C, N)
    uniforms = torch.from_numpy(stream_uniforms(seeds, 0, GENERATED))  # (B, N)
    temperatures = torch.full((case.batch,), temperature, dtype=torch.float64)
    drawn = torch.stack([sample_codes(logits[:, :, n], temperatures, uniforms[:, n]) for n in range(GENERATED)], 1)
    different = (drawn != out.long()).nonzero()
    if len(different):
        stream, n = different[0].tolist()
        return f"generated codes differ from the reference's draws (stream {stream}, sample {n} first)"
    if len(set(out[0].tolist())) <= 4:  # stuck on a few values: the comparison would mean little
        return f"generated codes take only {len(set(out[0].tolist()))} values"
    return None


def check_case(lib: ctypes.CDLL, case: Case) -> str | None:
    """One line saying what differs in ``case``, or None when the engine agrees."""
    model = tiny_model(case.shape, case.conditioned)
    conditioning = conditioning_for(model, case.batch)
    threads, group = LAYOUTS[case.batch]
    engine = NativeEngine(model, threads=threads, precision=case.precision, lib=lib)
    engine.set_threads(threads, group)
    reference = reference_for(model, case.precision)
    for compare in (_logits_mismatch, _codes_mismatch):
        found = compare(engine, reference, conditioning, case)
        if found:
            return f"{case}: {found}"
    return None


def run(lib: ctypes.CDLL, which: list[Case] | None = None) -> list[str]:
    """Check every case (default: ``cases()``) on ``lib``; the mismatches, one line each."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the references are tiny: the cores are the engine's threads'
    try:
        found = [check_case(lib, case) for case in (cases() if which is None else which)]
    finally:
        torch.set_num_threads(threads)
    return [line for line in found if line]


def _sanitized_child(path: Path) -> int:
    """Run the check on the sanitizer build ``path`` in a child process that loads libasan first."""
    runtime = subprocess.run([find_compiler(), "-print-file-name=libasan.so"], capture_output=True, text=True)
    libasan = runtime.stdout.strip()
    if runtime.returncode or not os.path.isabs(libasan):  # the compiler prints the bare name when it has none
        logger.error("native check: the compiler has no libasan.so for --sanitize")
        return 1
    preload = " ".join(filter(None, [libasan, os.environ.get("LD_PRELOAD", "")]))
    options = ":".join(filter(None, ["detect_leaks=0", os.environ.get("ASAN_OPTIONS", "")]))
    env = {**os.environ, "LD_PRELOAD": preload, "ASAN_OPTIONS": options, "UBSAN_OPTIONS": "print_stacktrace=1"}
    command = [sys.executable, "-m", "wavegen.generate.native.check", "--library", str(path)]
    return subprocess.run(command, env=env).returncode


def main(argv: list[str] | None = None) -> int:
    """The command line: 0 when every case agrees, 1 on any mismatch (or no library)."""
    parser = argparse.ArgumentParser(prog="python -m wavegen.generate.native.check", description=__doc__.split("\n")[0])
    parser.add_argument("--sanitize", action="store_true", help="build with ASan + UBSan and check that build")
    parser.add_argument("--library", type=Path, help="check this built library (no build)")
    args = parser.parse_args(argv)
    setup()  # its messages (a build, every mismatch) on stderr, as the commands' are
    tick = time.perf_counter()
    try:
        if args.sanitize:
            return _sanitized_child(build(extra=SANITIZE_FLAGS, variant="sanitize"))
        lib = open_library(args.library) if args.library else load()
    except NativeUnavailable as exc:
        logger.error(f"native check: {exc}")
        return 1
    mismatches = run(lib)
    for line in mismatches:
        logger.error(f"native check: {line}")
    if not mismatches:
        kind = lib.wg_dot_kind().decode()
        print(f"native check: {len(cases())} cases agree ({kind} integer kernel, {time.perf_counter() - tick:.1f} s)")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
