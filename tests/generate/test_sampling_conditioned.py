"""Conditioned generation: every fast engine draws exactly the reference engine's codes for a
model conditioned on labels, on mel features, or on both."""

import dataclasses
import functools

import numpy as np
import pytest
import torch

from wavegen.generate import state as engine_state
from wavegen.generate import terms
from wavegen.generate.cuda_graph import CudaGraphEngine
from wavegen.generate.engines import generate
from wavegen.generate.native import check
from wavegen.generate.reference import ReferenceEngine
from wavegen.generate.torch_engine import TorchEngine
from wavegen.model.conditioning import Conditioning, StackedTerms

from helpers import native_or_skip, random_model

COND = check.COND
SHAPES = {name: dataclasses.replace(config, **COND) for name, config in check.SHAPES.items()}  # k2, odd (a gate of 7)
KINDS = ["labels", "mels", "both"]
ENGINES = ["torch", "native", "graph-eager"]
SAMPLES = 300
FRAMES = 17  # mel frames given: 272 samples, the rest of the 300 generated are past the end (silence)


def model_for(shape: str, kind: str, seed: int = 2):
    config = SHAPES[shape]
    if kind == "labels":
        config = dataclasses.replace(config, mel_channels=0, mel_hop=0)
    elif kind == "mels":
        config = dataclasses.replace(config, labels=[])
    return random_model(config, seed)


def conditioning_for(model, labels: list[int], seed: int = 0) -> Conditioning:
    c = model.config
    mels = None
    if c.mel_channels:
        mels = torch.randn(len(labels), c.mel_channels, FRAMES, generator=torch.Generator().manual_seed(seed)) * 2 - 4
    return Conditioning(model, torch.tensor(labels) if c.labels else None, mels)


def engine_for(name: str, model, threads: int | None = None):
    if name == "native":
        return native_or_skip().NativeEngine(model, threads=threads)
    if name == "graph-eager":
        return CudaGraphEngine(model, "cpu", use_graph=False)
    return TorchEngine(model)


SEEDS = [3, 4, 5]
LABELS = [0, 2, 0]  # two streams share a label (and their past, when they share a history too)


def history_for(which: str) -> torch.Tensor | None:
    if which == "none":
        return None
    if which == "shared":
        return torch.randint(0, 256, (1, 40), generator=torch.Generator().manual_seed(1)).expand(3, -1)
    return torch.randint(0, 256, (3, 40), generator=torch.Generator().manual_seed(2))


@functools.lru_cache(maxsize=None)
def reference_codes(shape: str, kind: str, history: str) -> torch.Tensor:
    model = model_for(shape, kind)
    return generate(
        ReferenceEngine(model),
        SAMPLES,
        SEEDS,
        temperature=0.8,
        history=history_for(history),
        conditioning=conditioning_for(model, LABELS),
    )


@pytest.mark.parametrize("history", ["none", "shared", "per-stream"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("engine", ENGINES)
def test_fast_engines_generate_exactly_the_reference_codes_when_conditioned(engine, shape, kind, history):
    model = model_for(shape, kind)
    ref = reference_codes(shape, kind, history)
    fast = generate(
        engine_for(engine, model),
        SAMPLES,
        SEEDS,
        temperature=0.8,
        history=history_for(history),
        conditioning=conditioning_for(model, LABELS),
    )
    assert torch.equal(fast, ref)
    assert len(set(ref[0].tolist())) > 10  # not stuck on one value: the comparison means something


@pytest.mark.parametrize("history", ["shared", "per-stream"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("engine", ["torch", "native"])
def test_cached_step_logits_match_the_full_conditioned_forward(engine, shape, kind, history):
    """Teacher forcing: step logits against one parallel forward pass over silence, history and
    the fed codes, with the conditioning terms of the same times (the past at negative times).
    A history shared by the streams has the shared part of the past computed once."""
    model = model_for(shape, kind, seed=1)
    rf = model.receptive_field
    history = torch.randint(0, 256, (1 if history == "shared" else 2, 37)).expand(2, -1)
    future = torch.randint(0, 256, (2, 150))
    cond = conditioning_for(model, [1, 2], seed=3)
    fast = engine_for(engine, model)
    fast.reset(2, history, cond)
    steps = []
    for n in range(future.shape[1]):
        steps.append(fast.logits())
        fast.append(future[:, n])
    stepped = torch.stack(steps, dim=2)  # (B, classes, N)
    codes = torch.cat([torch.full((2, rf), 128), history, future], dim=1)
    past = rf + history.shape[1]
    with torch.no_grad():
        full = model(codes, output_from=past, cond=cond.terms(-past, codes.shape[1]))
    assert (stepped - full).abs().max() < 1e-4
    # The conditioning is in there: the same steps without it (zero terms) are far off.
    with torch.no_grad():
        zero = StackedTerms(torch.zeros(2, len(model.blocks), 2 * model.config.gate_channels, 1))
        assert (model(codes, output_from=past, cond=zero) - full).abs().max() > 0.1


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("batch", [3, 8])
def test_native_conditioned_codes_do_not_depend_on_the_thread_layout_or_chunking(kind, batch, monkeypatch):
    """Batch 3: every group on the deferred path (past taps projected ahead); batch 8 on one
    group: the direct path. The term is added after every tap on both, so they agree."""
    native = native_or_skip()
    model = model_for("k2", kind)
    seeds = list(range(10, 10 + batch))
    labels = [i % 3 for i in range(batch)]
    cond = conditioning_for(model, labels)
    engine = native.NativeEngine(model, threads=1)
    expected = generate(engine, SAMPLES, seeds, temperature=0.9, conditioning=cond)
    for threads, group in [(2, 0), (2, 2), (2, 1), (3, 3)]:
        engine.set_threads(threads, group)
        assert torch.equal(generate(engine, SAMPLES, seeds, temperature=0.9, conditioning=cond), expected)
    # Calls of odd lengths, switching layouts in between, with blocks of one frame of terms (16
    # steps: a call then spans several blocks and starts in the middle of one).
    monkeypatch.setattr(native.engine, "MAX_TERM_FRAMES", 1)
    engine.set_threads(1)
    engine.reset(batch, None, cond)
    out = torch.empty(batch, SAMPLES, dtype=torch.uint8)
    for start, stop, threads, group in [(0, 37, 1, 0), (37, 200, 2, 2), (200, SAMPLES, 2, 1)]:
        engine.set_threads(threads, group)
        engine.sample_steps(out, start, stop - start, seeds, np.full(batch, 0.9))
    assert torch.equal(out, expected)
    assert torch.equal(expected, generate(ReferenceEngine(model), SAMPLES, seeds, temperature=0.9, conditioning=cond))


@pytest.mark.parametrize("engine", ENGINES)
def test_the_conditioning_changes_the_codes(engine):
    model = model_for("k2", "both")
    fast = engine_for(engine, model)
    same_seed = [5, 5, 5]
    mels = torch.randn(1, 5, FRAMES).expand(3, -1, -1) * 2 - 4
    codes = generate(fast, 200, same_seed, conditioning=Conditioning(model, torch.tensor([0, 1, 0]), mels))
    assert not torch.equal(codes[0], codes[1])  # another label
    assert torch.equal(codes[0], codes[2])  # the same label, features and seed
    other = mels.clone()
    other[2] += 1.0
    changed = generate(fast, 200, same_seed, conditioning=Conditioning(model, torch.tensor([0, 1, 0]), other))
    assert torch.equal(changed[:2], codes[:2]) and not torch.equal(changed[2], codes[2])  # other features


@pytest.mark.parametrize("kind", ["mels", "both"])
def test_before_the_mel_features_reach_every_stream_with_a_label_has_the_same_terms(kind):
    """What the shared past rests on: terms before -CONTEXT_FRAMES·hop read silence frames only."""
    from wavegen.model.conditioning import CONTEXT_FRAMES

    model = model_for("k2", kind)
    cond = conditioning_for(model, [0, 2, 0])
    edge = -CONTEXT_FRAMES * model.config.mel_hop
    bias = cond.bias(edge - 100, 100 + 16)  # (B, T, L, 2G)
    assert (bias[0, :100] - bias[2, :100]).abs().max() < 1e-6
    assert (bias[0, 100:] - bias[2, 100:]).abs().max() > 1e-3  # the features reach from here on
    if kind == "both":
        assert (bias[0, :100] - bias[1, :100]).abs().max() > 1e-3  # another label


@pytest.mark.parametrize("kind", ["mels", "both"])
@pytest.mark.parametrize("history", ["none", "shared"])
def test_a_shared_past_with_mel_features_is_computed_once_up_to_where_they_reach(kind, history):
    model = model_for("k2", kind)
    cond = conditioning_for(model, LABELS)
    hist = history_for(history)
    past, split = engine_state.past_block_inputs(model, 3, hist, "cpu", cond)
    length = past.shape[1]
    full = engine_state._forward_past(model, past, terms.TermParts(cond).window(-length, length))
    assert len(split) == len(full) == len(model.blocks)
    for a, b in zip(split, full):
        assert a.shape == b.shape and (a - b).abs().max() < 1e-5


def test_one_label_for_every_stream_is_one_shared_past():
    model = model_for("k2", "labels")
    cond = conditioning_for(model, [1, 1, 1])
    past, inputs = engine_state.past_block_inputs(model, 3, None, "cpu", cond)
    assert past.shape[0] == 1 and all(x.shape[0] == 1 for x in inputs)
    past, inputs = engine_state.past_block_inputs(model, 3, None, "cpu", conditioning_for(model, LABELS))
    assert past.shape[0] == 3 and torch.equal(inputs[-1][0], inputs[-1][2])  # labels 0, 2, 0
    for name in ["torch", "native"]:
        fast = generate(engine_for(name, model), 100, SEEDS, conditioning=cond)
        assert torch.equal(fast, generate(ReferenceEngine(model), 100, SEEDS, conditioning=cond))


@pytest.mark.parametrize("kind", KINDS)
def test_term_parts_compute_what_bias_computes(kind):
    """The engines' view of a conditioning (label terms, frame-rate terms, the upsampling kernel)
    gives ``Conditioning.bias``, negative times (silence, the first frames) included: exactly for
    the same window of frames (the frame network's convolutions may round differently for
    another window length)."""
    model = model_for("k2", kind)
    cond = conditioning_for(model, LABELS)
    parts = terms.TermParts(cond)
    start, count = -70, 400  # past and future, beyond the end of the features too
    bias = cond.bias(start, count)  # (B, count, L, 2G)
    window = parts.window(start, count)
    for layer in range(cond.layers):
        term = window.layer(layer).expand(-1, -1, count)  # (B, 2G, count or 1)
        assert torch.equal(term, bias[:, :, layer].transpose(1, 2))
    if not parts.hop:
        assert torch.equal(bias, parts.fixed[:, None].expand_as(bias))
        return
    hop, k = parts.hop, parts.kernel
    frames = parts.frames(start // hop - 1, (start + count - 1) // hop - start // hop + 3)  # (B, n, L, 2G)
    for t in range(start, start + count):
        f, j = t // hop, t % hop
        rows = frames[:, f - 1 - (start // hop - 1) :]
        term = (rows[:, 0] * k[0, j] + rows[:, 1] * k[1, j]) + rows[:, 2] * k[2, j]
        if parts.fixed is not None:
            term = term + parts.fixed
        assert (term - bias[:, t - start]).abs().max() < 1e-5, t


def test_frame_blocks_sit_at_fixed_places():
    model = model_for("k2", "mels")
    parts = terms.TermParts(conditioning_for(model, [0, 1]))
    width = parts.layers * parts.channels
    blocks = terms.FrameBlocks(parts, lambda frames: frames, width, max_frames=4)
    assert blocks.frames == 4  # 4 frames of 16 samples: times 0..63 in block 0, 64..127 in block 1
    block, first, steps = blocks.at(70)
    assert (first, steps) == (3, 58) and block.shape[1] == 6  # frames 3..8 for times 64..127
    assert torch.equal(block, parts.frames(3, 6))
    assert blocks.at(127)[0] is block  # the same block, not computed again
    assert blocks.at(-1)[1:] == (-5, 1)  # frames -5..0 for times -64..-1
    small = terms.FrameBlocks(parts, lambda frames: frames, width, max_bytes=4 * width * 2 * 5)
    assert small.frames == 3  # 5 rows of 2 streams


@pytest.mark.parametrize("kind", ["mels", "both"])
def test_torch_step_terms_are_bias(kind, monkeypatch):
    monkeypatch.setattr(terms, "TERM_BYTES", 4 * 320 * 3 * 6)  # blocks of 4 frames: several of them
    model = model_for("k2", kind)
    cond = conditioning_for(model, LABELS)
    engine = TorchEngine(model)
    engine.reset(3, None, cond)
    assert engine.frame_blocks.frames == 4
    bias = cond.bias(0, 150)
    for n in range(150):
        assert (engine.step_terms() - bias[:, n].transpose(0, 1)).abs().max() < 1e-5, n
        engine.append(torch.zeros(3, dtype=torch.long))


def test_native_refuses_conditioning_that_does_not_cover_the_steps():
    native = native_or_skip()
    model = model_for("k2", "mels")
    engine = native.NativeEngine(model, threads=1)
    engine.reset(3, None, conditioning_for(model, LABELS))
    cond, steps = engine._cond(0)
    assert steps == engine.frame_blocks.frames * 16
    out = torch.empty(3, model.config.classes, dtype=torch.float32)
    cond.time = steps  # the first step past the block
    assert engine.lib.wg_logits(engine.handle, out.data_ptr(), cond) == -2
    cond.time = 0
    assert engine.lib.wg_logits(engine.handle, out.data_ptr(), cond) == 0


def test_native_terms_are_packed_in_the_conv_panels_column_order():
    native = native_or_skip()
    gate, layers = 7, 2  # G8 = 8: one panel of [filter 0..7 | gate 0..7] per layer
    bias = torch.arange(2 * 3 * layers * 2 * gate, dtype=torch.float32).reshape(2, 3, layers, 2 * gate)
    packed = native.pack_terms(bias)
    assert packed.shape == (2, 3, layers * 16) and packed.is_contiguous()
    for layer in range(layers):
        panel = packed[:, :, 16 * layer : 16 * (layer + 1)]
        assert torch.equal(panel[..., :gate], bias[:, :, layer, :gate])  # filter
        assert torch.equal(panel[..., 8 : 8 + gate], bias[:, :, layer, gate:])  # gate
        assert (panel[..., gate] == 0).all() and (panel[..., 8 + gate] == 0).all()  # padding
    wide = torch.randn(1, 2, 1, 2 * 20)  # G = 20 -> G8 = 24: three panels
    packed = native.pack_terms(wide)[0, 0]
    assert torch.equal(packed[16:24], wide[0, 0, 0, 8:16]) and torch.equal(packed[24:32], wide[0, 0, 0, 28:36])
    assert torch.equal(packed[36:40], torch.zeros(4)) and torch.equal(packed[44:48], torch.zeros(4))


@pytest.mark.parametrize("engine", ["reference", *ENGINES])
def test_conditioning_must_fit_the_model(engine):
    conditioned, plain = (
        model_for("k2", "labels"),
        random_model(dataclasses.replace(SHAPES["k2"], labels=[], mel_channels=0, mel_hop=0)),
    )
    make = (lambda m: ReferenceEngine(m)) if engine == "reference" else functools.partial(engine_for, engine)
    with pytest.raises(ValueError, match="this model is conditioned"):
        generate(make(conditioned), 10, [0, 1])
    with pytest.raises(ValueError, match="not conditioned"):
        generate(make(plain), 10, [0, 1], conditioning=conditioning_for(conditioned, [0, 1]))
    with pytest.raises(ValueError, match="for 3 streams, not 2"):
        generate(make(conditioned), 10, [0, 1], conditioning=conditioning_for(conditioned, [0, 1, 2]))


def test_graph_engine_refuses_a_term_buffer_too_large(monkeypatch):
    from wavegen.generate import cuda_graph as sampling_cuda

    model = model_for("k2", "mels")
    monkeypatch.setattr(sampling_cuda, "MAX_TERM_BYTES", 1000)
    with pytest.raises(sampling_cuda.EngineUnavailable, match="conditioning terms of 2 streams need"):
        generate(
            CudaGraphEngine(model, "cpu", use_graph=False), 10, [0, 1], conditioning=conditioning_for(model, [0, 1])
        )


def test_bench_measures_a_conditioned_model():
    from wavegen.bench import sampling as bench

    config = dataclasses.replace(SHAPES["k2"], labels=[], mel_channels=0, mel_hop=0)
    for kind in ["labels", "both"]:
        results = list(bench.run(config, ["torch"], [2], seconds=0.1, repeats=1, cond=kind))
        assert [r["cond"] for r in results] == [kind]
        assert results[0]["same_codes_as_reference"] and results[0]["max_logit_diff"] < 1e-4
        assert results[0]["loop_samples_per_s"] >= results[0]["samples_per_s"] > 0


@pytest.mark.parametrize("kind", ["mels", "both"])
def test_the_gpu_engines_fill_each_launch_with_the_terms_of_its_times(kind):
    """``fill_step_terms``, which the cuda-graph and persistent engines fill a replay's or a
    launch's terms with, gives ``Conditioning.bias`` at every time."""
    model = model_for("k2", kind)
    cond = conditioning_for(model, LABELS)
    parts = terms.TermParts(cond)
    fixed = None if parts.fixed is None else parts.fixed.transpose(0, 1)  # (L, B, 2G)
    steps = 256
    out = torch.empty(steps, parts.layers, 3, parts.channels)
    for time in (0, 37, steps, 5 * steps):  # the last one past the end of the features
        terms.fill_step_terms(parts, parts.kernel, fixed, time, out)
        expected = cond.bias(time, steps).permute(1, 2, 0, 3)  # (steps, L, B, 2G)
        assert (out - expected).abs().max() < 1e-5


@pytest.mark.parametrize("kind", ["none", *KINDS])
def test_native_logits_are_the_same_numbers_on_every_path(kind):
    """8 streams: one group of 8 takes the direct path, two groups of 4 (or 8 of 1) project the
    past taps ahead (the deferred path); the conditioning term comes after every tap on both,
    so the logits agree to the bit, step after step."""
    native = native_or_skip()
    if kind == "none":
        model = random_model(dataclasses.replace(SHAPES["k2"], labels=[], mel_channels=0, mel_hop=0))
        cond = None
    else:
        model = model_for("k2", kind)
        cond = conditioning_for(model, [i % 3 for i in range(8)])
    codes = torch.randint(0, 256, (8, 60), generator=torch.Generator().manual_seed(5))
    runs = []
    for threads, group in [(1, 1), (2, 1), (3, 3)]:
        engine = native.NativeEngine(model, threads=threads)
        engine.set_threads(threads, group)
        engine.reset(8, None, cond)
        steps = []
        for n in range(codes.shape[1]):
            steps.append(engine.logits())
            engine.append(codes[:, n])
        runs.append(torch.stack(steps))
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])
