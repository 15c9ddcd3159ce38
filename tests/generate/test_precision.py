"""Lower precisions of the native engine: int8 computes exactly what its Python reference
(``quantized.Int8WaveNet``) computes, bit for bit, with every integer kernel the CPU can build;
bf16 draws exactly the codes of the model with its matrices rounded to bf16."""

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from generate.test_sampling import SHAPES
from generate.test_sampling_conditioned import KINDS, conditioning_for, model_for

from wavegen.config import ModelConfig
from wavegen.generate.engine import sample_codes, stream_uniforms
from wavegen.generate.engines import generate
from wavegen.generate.int8 import QMAX, Int8WaveNet, quantize_rows, quantize_weight
from wavegen.generate.quantized import at_precision, bf16_model
from wavegen.generate.reference import ReferenceEngine
from wavegen.generate.state import silence

from helpers import native_or_skip, random_model

# (streams, threads, threads per group): one stream split over two threads; few streams per group
# (their past taps computed a block of steps ahead); five streams in one group (taps gathered
# every step); streams spread over two single-thread groups.
LAYOUTS = [(1, 1, 1), (1, 2, 2), (3, 2, 2), (5, 1, 1), (6, 2, 1)]


def teacher_forced(engine, history: torch.Tensor, future: torch.Tensor) -> torch.Tensor:
    """The engine's logits (B, classes, N) for each code of ``future`` after ``history``."""
    engine.reset(future.shape[0], history)
    steps = []
    for n in range(future.shape[1]):
        steps.append(engine.logits())
        engine.append(future[:, n])
    return torch.stack(steps, dim=2)


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda x: "x".join(map(str, x)))
@pytest.mark.parametrize("shape", SHAPES)
def test_int8_engine_logits_equal_the_int8_reference_bit_for_bit(shape, layout):
    native = native_or_skip()
    batch, threads, group = layout
    model = random_model(SHAPES[shape], seed=batch)
    gen = torch.Generator().manual_seed(threads)
    history, future = (
        torch.randint(0, 256, (batch, 37), generator=gen),
        torch.randint(0, 256, (batch, 90), generator=gen),
    )
    engine = native.NativeEngine(model, threads=threads, precision="int8")
    engine.set_threads(threads, group)
    stepped = teacher_forced(engine, history, future)
    rf = model.receptive_field
    codes = torch.cat([silence(batch, rf), history, future], dim=1)
    full = Int8WaveNet(model)(codes, output_from=rf + history.shape[1])
    assert torch.equal(stepped, full)
    # ... and it is a real quantisation, not the float32 network.
    with torch.no_grad():
        assert not torch.equal(full, model(codes, output_from=rf + history.shape[1]))


def reference_codes(reference, past: torch.Tensor, generated: torch.Tensor, seeds, temperature, cond=None):
    """The codes the reference draws, teacher-forced on ``generated`` in one parallel pass: equal to
    ``generated`` exactly when every step's draw from the reference's logits gives the engine's code."""
    logits = reference(torch.cat([past, generated], dim=1), output_from=past.shape[1], cond=cond)  # (B, C, N)
    uniforms = torch.from_numpy(stream_uniforms(seeds, 0, generated.shape[1]))  # (B, N)
    temperatures = torch.full((generated.shape[0],), temperature, dtype=torch.float64)
    draws = [sample_codes(logits[:, :, n], temperatures, uniforms[:, n]) for n in range(generated.shape[1])]
    return torch.stack(draws, dim=1)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("shape", SHAPES)
def test_int8_engine_draws_the_int8_reference_codes(shape, temperature):
    native = native_or_skip()
    model = random_model(SHAPES[shape], seed=3)
    seeds = [11, 12, 13]
    engine = native.NativeEngine(model, threads=2, precision="int8")
    codes = generate(engine, 400, seeds, temperature=temperature)
    rf = model.receptive_field
    expected = reference_codes(Int8WaveNet(model), silence(3, rf), codes, seeds, temperature)
    assert torch.equal(codes, expected)
    assert len(set(codes[0].tolist())) > 10  # not stuck on one value: the comparison means something


@pytest.mark.parametrize("kind", KINDS)
def test_int8_engine_draws_the_reference_codes_when_conditioned(kind):
    native = native_or_skip()
    model = model_for("k2", kind)
    seeds, samples = [5, 6, 7], 300
    conditioning = conditioning_for(model, [0, 2, 1])
    engine = native.NativeEngine(model, threads=2, precision="int8")
    codes = generate(engine, samples, seeds, temperature=0.9, conditioning=conditioning)
    rf = model.receptive_field
    terms = engine.engine_terms(conditioning, -rf, rf + samples)
    expected = reference_codes(Int8WaveNet(model), silence(3, rf), codes, seeds, 0.9, cond=terms)
    assert torch.equal(codes, expected)
    assert not torch.equal(codes[0], codes[1])  # the streams' conditioning tells them apart


@pytest.mark.parametrize("shape", SHAPES)
def test_bf16_engine_draws_the_codes_of_the_rounded_model(shape):
    native = native_or_skip()
    model = random_model(SHAPES[shape], seed=4)
    rounded = bf16_model(model)
    seeds = [1, 2]
    expected = generate(ReferenceEngine(rounded), 300, seeds, temperature=0.8)
    engine = native.NativeEngine(model, threads=2, precision="bf16")
    assert torch.equal(generate(engine, 300, seeds, temperature=0.8), expected)
    weights = [m.weight for m in (rounded.blocks[0].conv, rounded.head[3])]
    assert all(torch.equal(w, w.to(torch.bfloat16).float()) for w in weights)
    assert not torch.equal(rounded.head[3].weight, model.head[3].weight)


# The kernels one build chooses from (wavenet.cpp: dot4), each forced here by flags that take
# the faster instructions away; the ones this CPU cannot run are skipped.
KERNEL_FLAGS = {
    "avx-vnni": "-mno-avx512vnni",
    "avx2": "-mno-avx512vnni -mno-avxvnni",
    "portable": "-mno-avx2",
}
CHECK = """
import sys, torch
sys.path.insert(0, {tests!r})
from helpers import random_model
from generate.test_sampling import SHAPES
from generate.test_precision import teacher_forced
from wavegen.generate import native
from wavegen.generate.quantized import Int8WaveNet
from wavegen.generate.state import silence
print(native.load().wg_dot_kind().decode())
for name, config in SHAPES.items():
    for batch, threads in [(1, 2), (5, 1)]:
        model = random_model(config, seed=7)
        history, future = torch.randint(0, 256, (batch, 20)), torch.randint(0, 256, (batch, 60))
        engine = native.NativeEngine(model, threads=threads, precision="int8")
        stepped = teacher_forced(engine, history, future)
        rf = model.receptive_field
        full = Int8WaveNet(model)(torch.cat([silence(batch, rf), history, future], 1), output_from=rf + 20)
        print(name, batch, torch.equal(stepped, full))
"""


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return set(next((line.split(":", 1)[1] for line in text.splitlines() if line.startswith("flags")), "").split())


@pytest.mark.slow
@pytest.mark.parametrize("kernel", KERNEL_FLAGS)
def test_every_integer_kernel_computes_the_reference_sums(kernel, tmp_path):
    native = native_or_skip()
    native.find_compiler()
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("the kernels are chosen by x86 flags")
    needs = {"avx-vnni": "avx_vnni", "avx2": "avx2"}.get(kernel)
    if needs and needs not in cpu_flags():
        pytest.skip(f"this CPU has no {needs}")
    tests = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "WAVEGEN_NATIVE_FLAGS": KERNEL_FLAGS[kernel], "WAVEGEN_CACHE": str(tmp_path)}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(tests).parent), tests])
    done = subprocess.run(
        [sys.executable, "-c", CHECK.format(tests=tests)], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.split("\n")
    assert lines[0] == kernel
    results = [line.split() for line in lines[1:] if line]
    assert len(results) == 2 * len(SHAPES) and all(ok == "True" for *_, ok in results), results


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_row_quantisation_rounds_each_value_to_its_nearest_step(seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 40, 7, generator=gen) * 10 ** (seed - 1)
    x[1, :, 2] = 0  # a silent row: scale 0, all zero
    q, s = quantize_rows(x)
    assert q.abs().max() == QMAX and torch.equal(q, q.round())
    assert torch.all((q * s[:, None, :] - x).abs() <= s[:, None, :] / 2 * (1 + 1e-5))
    assert torch.equal(q.abs().amax(dim=1)[s > 0], torch.full_like(s[s > 0], QMAX))
    assert s[1, 2] == 0 and not q[1, :, 2].any()


def test_weights_are_quantised_per_output_channel():
    weight = torch.randn(6, 5, 2, generator=torch.Generator().manual_seed(0))
    weight[2] *= 1000  # one loud channel does not coarsen the others
    q, scale = quantize_weight(weight)  # (taps, K, N), (N,)
    assert q.shape == (2, 5, 6) and torch.equal(q.abs().amax(dim=(0, 1)), torch.full((6,), float(QMAX)))
    error = (q.permute(2, 1, 0) * scale[:, None, None] - weight).abs()  # (N, K, taps)
    assert bool((error <= scale[:, None, None] / 2 * 1.001).all())
    assert scale[2] > 100 * scale[[0, 1, 3, 4, 5]].max()


def test_int8_reference_is_causal_and_close_to_the_network():
    model = random_model(ModelConfig(cycles=1, layers_per_cycle=6, residual_channels=16, gate_channels=24), seed=9)
    int8 = at_precision(model, "int8")
    codes = torch.randint(0, 256, (2, 200))
    changed = codes.clone()
    changed[:, 120:] = torch.randint(0, 256, (2, 80))
    a, b = int8(codes), int8(changed)
    assert torch.equal(a[:, :, :121], b[:, :, :121])  # logits at t never see code t or later
    assert not torch.equal(a[:, :, 121:], b[:, :, 121:])
    with torch.no_grad():
        full = model(codes)
    # The softmax a quantised network gives is near the float one's: small in total variation.
    tv = (full.softmax(1) - a.softmax(1)).abs().sum(1).mean() / 2
    assert tv < 0.1, tv
    assert at_precision(model, "fp32") is model
    with pytest.raises(ValueError, match="choose from fp32, bf16, int8"):
        at_precision(model, "int4")


@pytest.mark.parametrize("kind", KINDS)
def test_int8_engine_logits_equal_the_reference_from_a_prime_when_conditioned(kind):
    native = native_or_skip()
    model = model_for("odd", kind)
    conditioning = conditioning_for(model, [1, 0])
    gen = torch.Generator().manual_seed(5)
    history, future = torch.randint(0, 256, (2, 50), generator=gen), torch.randint(0, 256, (2, 120), generator=gen)
    engine = native.NativeEngine(model, threads=2, precision="int8")
    engine.reset(2, history, conditioning)
    steps = []
    for n in range(future.shape[1]):
        steps.append(engine.logits())
        engine.append(future[:, n])
    past = model.receptive_field + history.shape[1]  # the past: silence, then the prime, at times -past .. -1
    codes = torch.cat([silence(2, model.receptive_field), history, future], dim=1)
    terms = engine.engine_terms(conditioning, -past, past + future.shape[1])
    full = Int8WaveNet(model)(codes, output_from=past, cond=terms)
    assert torch.equal(torch.stack(steps, dim=2), full)
