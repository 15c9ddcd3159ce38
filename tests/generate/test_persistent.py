"""The persistent engine's Triton kernel: under Triton's interpreter on the CPU (where there is no
GPU, conftest sets TRITON_INTERPRET=1), and compiled on a GPU where there is one.

The interpreter runs a launch's programs one after another and costs ~0.1 s per program and
step, so its tests generate a few dozen samples of small models: every code must still be the
reference engine's, and every teacher-forced logit within 1e-4 of the parallel forward pass.
"""

import pytest
import torch

from wavegen.config import ModelConfig
from wavegen.generate.choice import make_engine
from wavegen.generate.engines import generate
from wavegen.generate.reference import ReferenceEngine

from helpers import random_model
from test_sampling import SHAPES
from test_sampling_conditioned import LABELS, SEEDS, conditioning_for, history_for, model_for

triton = pytest.importorskip("triton", reason="the persistent engine needs Triton")
from wavegen.generate.persistent import EngineUnavailable, PersistentEngine  # noqa: E402

interpreted = pytest.mark.skipif(not triton.knobs.runtime.interpret, reason="runs under TRITON_INTERPRET=1")
needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available() or triton.knobs.runtime.interpret, reason="needs a CUDA GPU (not interpreted)"
)
# (slices per layer, programs per head layer): every split of the sums the kernel makes
LAYOUTS = {"k2": (2, 2), "k3": (1, 1), "odd": (2, 1)}


def interpreted_engine(model, shape: str) -> PersistentEngine:
    slices, heads = LAYOUTS[shape]
    return PersistentEngine(model, "cpu", slices=slices, heads=heads)


@pytest.mark.slow  # the interpreter: seconds per generated step
@interpreted
@pytest.mark.parametrize("shape", SHAPES)
def test_the_interpreted_kernel_draws_exactly_the_reference_codes(shape):
    model = random_model(SHAPES[shape], seed=3)
    engine = interpreted_engine(model, shape)
    temperature = [0.8, 1.0, 1.3]
    for history in (None, torch.randint(0, 256, (3, 50), generator=torch.Generator().manual_seed(4))):
        fast = generate(engine, 24, [11, 12, 13], temperature=temperature, history=history)
        ref = generate(ReferenceEngine(model), 24, [11, 12, 13], temperature=temperature, history=history)
        assert torch.equal(fast, ref)
        assert len(set(fast.flatten().tolist())) > 8  # not stuck on one value: the comparison means something


@interpreted
@pytest.mark.parametrize("shape", ["k2", "odd"])
def test_the_interpreted_kernel_logits_match_the_full_forward(shape):
    """Teacher forcing through the step-wise calls, one launch per step."""
    model = random_model(SHAPES[shape], seed=1)
    rf = model.receptive_field
    history, future = torch.randint(0, 256, (2, 37)), torch.randint(0, 256, (2, 12))
    engine = interpreted_engine(model, shape)
    engine.reset(2, history)
    stepped = []
    for n in range(future.shape[1]):
        stepped.append(engine.logits().cpu())
        assert torch.equal(engine.logits().cpu(), stepped[-1])  # asked again: the same step
        engine.append(future[:, n])
    silence = torch.full((2, rf), 128)
    with torch.no_grad():
        full = model(torch.cat([silence, history, future], dim=1), output_from=rf + history.shape[1])
    assert (torch.stack(stepped, dim=2) - full).abs().max() < 1e-4


@pytest.mark.slow
@interpreted
@pytest.mark.parametrize(
    "shape, kind, history", [("odd", "labels", "none"), ("k2", "mels", "per-stream"), ("odd", "both", "shared")]
)
def test_the_interpreted_kernel_draws_the_reference_codes_when_conditioned(shape, kind, history):
    model = model_for(shape, kind)
    engine = PersistentEngine(model, "cpu", slices=2, heads=1)
    cond = conditioning_for(model, LABELS)
    fast = generate(engine, 36, SEEDS, temperature=0.8, history=history_for(history), conditioning=cond)
    ref = generate(ReferenceEngine(model), 36, SEEDS, 0.8, history=history_for(history), conditioning=cond)
    assert torch.equal(fast, ref)  # 36 samples: three mel frames of 16


@interpreted
@pytest.mark.parametrize("layers", [1, 2])
def test_the_interpreted_kernel_of_one_or_two_layers(layers):
    """The skip sums' edge cases: no layer before the last, or one."""
    config = ModelConfig(cycles=1, layers_per_cycle=layers, residual_channels=8, gate_channels=8, skip_channels=16)
    model = random_model(config, seed=5)
    fast = generate(PersistentEngine(model, "cpu", slices=2, heads=2), 20, [1, 2], temperature=0.9)
    assert torch.equal(fast, generate(ReferenceEngine(model), 20, [1, 2], temperature=0.9))
    assert len(set(fast.flatten().tolist())) > 5


@interpreted
def test_an_interpreted_stream_depends_only_on_its_own_seed():
    engine = interpreted_engine(random_model(SHAPES["k3"]), "k3")
    alone = generate(engine, 16, [7])
    together = generate(engine, 16, [6, 7, 8, 9, 10])  # 5 streams, padded to 8 in the kernel
    assert torch.equal(alone[0], together[1])
    assert not torch.equal(together[0], together[1])


def test_the_persistent_engine_needs_cuda_outside_the_interpreter(monkeypatch):
    monkeypatch.setattr(triton.knobs.runtime, "interpret", False)
    with pytest.raises(EngineUnavailable, match="needs a CUDA device"):
        PersistentEngine(random_model(SHAPES["k2"]), "cpu")


@needs_cuda
@pytest.mark.parametrize("shape", SHAPES)
def test_the_kernel_draws_exactly_the_reference_codes_across_launches_on_a_gpu(shape):
    model = random_model(SHAPES[shape], seed=3)
    engine = make_engine("persistent", model, "cuda")
    engine.steps_per_launch = 100
    history = torch.randint(0, 256, (3, 50))
    for hist in (None, history):
        fast = generate(engine, 237, [1, 2, 3], temperature=[0.8, 1.0, 1.2], history=hist)  # 3 launches and a tail
        ref = generate(ReferenceEngine(model, "cuda"), 237, [1, 2, 3], temperature=[0.8, 1.0, 1.2], history=hist)
        assert torch.equal(fast, ref)
        assert len(set(fast[0].tolist())) > 10


@needs_cuda
@pytest.mark.parametrize("kind", ["labels", "mels", "both"])
def test_the_kernel_draws_the_reference_codes_when_conditioned_on_a_gpu(kind):
    model = model_for("k2", kind).cuda()
    engine = make_engine("persistent", model, "cuda")
    engine.steps_per_launch = 64
    cond = conditioning_for(model, LABELS)
    fast = generate(engine, 300, SEEDS, temperature=0.8, history=history_for("per-stream"), conditioning=cond)
    ref = generate(
        ReferenceEngine(model, "cuda"), 300, SEEDS, 0.8, history=history_for("per-stream"), conditioning=cond
    )
    assert torch.equal(fast, ref)


@needs_cuda
def test_the_kernel_logits_match_the_full_forward_on_a_gpu():
    model = random_model(SHAPES["k2"], seed=1).cuda()
    history, future = torch.randint(0, 256, (2, 37)), torch.randint(0, 256, (2, 50))
    engine = make_engine("persistent", model, "cuda")
    engine.reset(2, history)
    stepped = []
    for n in range(future.shape[1]):
        stepped.append(engine.logits().cpu())
        engine.append(future[:, n])
    silence = torch.full((2, model.receptive_field), 128)
    with torch.no_grad():
        codes = torch.cat([silence, history, future], dim=1).cuda()
        full = model(codes, output_from=model.receptive_field + history.shape[1]).cpu()
    assert (torch.stack(stepped, dim=2) - full).abs().max() < 1e-4
