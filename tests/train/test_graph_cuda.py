"""The training step as a real CUDA graph against eager steps (needs a GPU; skipped without).
On a CPU, ``test_graph_step.py`` checks the runner with stand-ins for CUDA's graph."""

import pytest
import torch

from wavegen.config import apply_overrides
from wavegen.data.prepared import PreparedData
from wavegen.recipe import load_recipe
from wavegen.train.graph import WARMUP
from wavegen.train.settings import fit_to_data
from wavegen.train.trainer import Trainer

from test_graph_step import FAST, data, flat  # noqa: F401 (data: the fixture)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize(
    "folder,overrides",
    [
        ("plain", []),
        ("plain", ["train.precision=bf16", "train.accumulate=2"]),
        ("plain", ["train.full_context=true", "train.activation_checkpointing=true"]),
        ("conditioned", []),
    ],
)
def test_the_captured_step_trains_as_the_eager_one(data, tmp_path, folder, overrides, said):  # noqa: F811
    trainers = []
    for graph in (False, True):
        config = apply_overrides(load_recipe("tiny"), FAST + overrides + [f"train.cuda_graph={graph}"])
        config = fit_to_data(config, PreparedData(data / folder), data / folder, tmp_path / str(graph), resuming=False)
        trainers.append(Trainer(config, PreparedData(data / folder), tmp_path / str(graph), torch.device("cuda")))
    eager, graphed = trainers
    assert eager.graphed is None and graphed.graphed is not None
    for step in range(WARMUP + 6):
        a, b = eager.train_step(), graphed.train_step()
        assert float(b.bits) == pytest.approx(float(a.bits), rel=1e-3), step
    assert graphed.graphed.replay is not None and not said
    gap = (flat(eager.model) - flat(graphed.model)).abs().max().item()
    assert gap < 1e-4, f"weights {gap:.1e} apart"
    assert eager.stats.read().skipped == graphed.stats.read().skipped == 0
