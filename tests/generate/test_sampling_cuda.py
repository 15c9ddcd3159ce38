"""The CUDA-graph engine: its body run eagerly on the CPU (everywhere), and captured in a graph
on a GPU (where one is present; skipped elsewhere)."""

import pytest
import torch

from wavegen.generate.choice import make_engine
from wavegen.generate.cuda_graph import CudaGraphEngine, EngineUnavailable
from wavegen.generate.engines import generate
from wavegen.generate.reference import ReferenceEngine

from helpers import random_model
from test_sampling import SHAPES

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("shape", SHAPES)
def test_graph_body_run_eagerly_on_the_cpu_generates_exactly_the_reference_codes(shape):
    model = random_model(SHAPES[shape])
    engine = CudaGraphEngine(model, "cpu", use_graph=False)
    n = engine.steps_per_replay + 37  # a whole replay and a partial one
    for hist in (None, torch.randint(0, 256, (3, 50))):
        fast = generate(engine, n, [1, 2, 3], temperature=[0.8, 1.0, 1.2], history=hist)
        ref = generate(ReferenceEngine(model), n, [1, 2, 3], temperature=[0.8, 1.0, 1.2], history=hist)
        assert torch.equal(fast, ref)
        assert len(set(fast[0].tolist())) > 10


def test_graph_engine_needs_cuda_unless_run_eagerly():
    model = random_model(SHAPES["k2"])
    with pytest.raises(EngineUnavailable, match="needs a CUDA device"):
        CudaGraphEngine(model, "cpu")
    assert CudaGraphEngine(model, "cpu", use_graph=False).name == "cuda-graph"


@needs_cuda
@pytest.mark.parametrize("shape", SHAPES)
def test_graph_engine_generates_exactly_the_reference_codes_across_replays(shape):
    model = random_model(SHAPES[shape])
    engine = make_engine("auto", model, "cuda")
    assert engine.name == "cuda-graph"
    n = engine.steps_per_replay * 2 + 37  # several replays and a partial one
    history = torch.randint(0, 256, (3, 50))
    for hist in (None, history):
        fast = generate(engine, n, [1, 2, 3], temperature=[0.8, 1.0, 1.2], history=hist)
        ref = generate(ReferenceEngine(model, "cuda"), n, [1, 2, 3], temperature=[0.8, 1.0, 1.2], history=hist)
        assert torch.equal(fast, ref)
        assert len(set(fast[0].tolist())) > 10


@needs_cuda
def test_graph_engine_streams_are_independent_of_batch():
    model = random_model(SHAPES["k2"])
    engine = make_engine("cuda-graph", model, "cuda")
    alone = generate(engine, 300, [7])
    together = generate(engine, 300, [6, 7, 8])  # another batch size: a new capture
    assert torch.equal(alone[0], together[1])


@needs_cuda
@pytest.mark.parametrize("kind", ["labels", "mels", "both"])
def test_graph_engine_generates_exactly_the_reference_codes_when_conditioned(kind):
    from test_sampling_conditioned import (
        LABELS,
        SEEDS,
        conditioning_for,
        history_for,
        model_for,
    )

    model = model_for("k2", kind).cuda()
    engine = make_engine("cuda-graph", model, "cuda")
    n = engine.steps_per_replay * 2 + 37  # the terms are refilled for every replay
    for hist in ("none", "per-stream"):
        cond = conditioning_for(model, LABELS)
        fast = generate(engine, n, SEEDS, temperature=0.8, history=history_for(hist), conditioning=cond)
        ref = generate(
            ReferenceEngine(model, "cuda"), n, SEEDS, temperature=0.8, history=history_for(hist), conditioning=cond
        )
        assert torch.equal(fast, ref)
        assert len(set(fast[0].tolist())) > 10
