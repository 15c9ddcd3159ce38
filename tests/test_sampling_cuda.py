"""The CUDA-graph engine (runs where a GPU is present; skipped elsewhere)."""
import pytest
import torch

from test_sampling import SHAPES, random_model
from wavegen.sampling import ReferenceEngine, generate, make_engine

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


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


def test_graph_engine_streams_are_independent_of_batch():
    model = random_model(SHAPES["k2"])
    engine = make_engine("cuda-graph", model, "cuda")
    alone = generate(engine, 300, [7])
    together = generate(engine, 300, [6, 7, 8])  # another batch size: a new capture
    assert torch.equal(alone[0], together[1])
