"""The CUDA graph runner of the training step (``train/graph.py``), on the CPU: CUDA's side
stream and graph are replaced by stand-ins (a warm-up runs in place; a capture records the
step without running it, and each replay runs it again on the static buffers), so what is
checked is the runner's own part: warm-up steps, the batch and learning rate copied in before
each replay, a new capture for a new shape, and the one-line fallback when capture fails.
That the captured work itself does not change from step to step is
``test_step_ops.test_every_step_asks_for_the_same_work...``; on a GPU the real graph is
compared with eager steps in ``test_graph_cuda.py``."""

import pytest
import torch

from wavegen.audio.io import write_wav
from wavegen.config import apply_overrides
from wavegen.data.prepare import prepare
from wavegen.data.prepared import PreparedData
from wavegen.recipe import load_recipe
from wavegen.train.graph import WARMUP, GraphedStep
from wavegen.train.settings import fit_to_data
from wavegen.train.trainer import Trainer

from helpers import tone

FAST = ["train.batch_size=2", "train.segment_length=300", "train.warmup_steps=2", "train.precision=fp32"]


class Replayed(GraphedStep):
    """The runner with CPU stand-ins for CUDA's stream and graph."""

    captures = 0

    def _warm_up(self, work):
        return work()

    def _record(self, work):
        self.captures += 1

        def replay():
            # A graph captured with no gradients writes them afresh in every replay; running
            # the step again in Python would add to the last ones.
            self.optimizer.zero_grad(set_to_none=True)
            self.out = work()

        return replay


class FailingCapture(GraphedStep):
    def _warm_up(self, work):
        return work()

    def _record(self, work):
        raise RuntimeError("operation not permitted when stream is capturing\nmore detail")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("graph")
    for label, hz in (("low", 233), ("high", 740)):
        write_wav(root / "set" / label / f"{hz}.wav", tone(hz, 1.5), 16000)
    plain, conditioned = load_recipe("tiny").data, load_recipe("tiny").data
    conditioned.label_source, conditioned.mel_bands, conditioned.mel_hop, conditioned.mel_n_fft = "folders", 8, 64, 256
    prepare(root / "set", root / "plain", plain, progress=False)
    prepare(root / "set", root / "conditioned", conditioned, progress=False)
    return root


def pair(data, tmp_path, folder, overrides, runner=Replayed):
    """Two trainers of the same run: eager, and through ``runner``."""
    made = []
    for name in ("eager", "graphed"):
        config = apply_overrides(load_recipe("tiny"), FAST + overrides)
        config = fit_to_data(config, PreparedData(data / folder), data / folder, tmp_path / name, resuming=False)
        made.append(Trainer(config, PreparedData(data / folder), tmp_path / name, torch.device("cpu")))
    eager, graphed = made
    graphed.graphed = runner(graphed)
    return eager, graphed


def flat(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def step_both(eager, graphed, steps):
    for step in range(steps):
        a, b = eager.train_step(), graphed.train_step()
        # (the replayed step's learning rate is a float32 tensor, the eager one a float)
        assert float(b.bits) == pytest.approx(float(a.bits), rel=1e-5, abs=1e-6), step
        gap = (flat(eager.model) - flat(graphed.model)).abs().max().item()
        assert gap < 1e-6, f"step {step + 1}: weights {gap:.1e} apart"
    gap = (flat(eager.ema.module) - flat(graphed.ema.module)).abs().max().item()
    assert gap < 1e-6 and eager.ema.count == graphed.ema.count == eager.step


@pytest.mark.parametrize(
    "folder,overrides",
    [
        ("plain", []),
        ("plain", ["train.accumulate=2", "train.full_context=true"]),
        ("conditioned", ["train.grad_clip=0.5"]),
    ],
)
def test_replays_train_as_eager_steps_do(data, tmp_path, folder, overrides):
    eager, graphed = pair(data, tmp_path, folder, overrides)
    step_both(eager, graphed, WARMUP + 5)
    assert graphed.graphed.captures == 1 and graphed.graphed.replay is not None
    a, b = eager.stats.read(), graphed.stats.read()
    assert (a.skipped, a.in_a_row) == (b.skipped, b.in_a_row) and b.mean_bits == pytest.approx(a.mean_bits, rel=1e-5)


def test_a_new_batch_shape_is_captured_anew(data, tmp_path):
    eager, graphed = pair(data, tmp_path, "plain", [])
    step_both(eager, graphed, WARMUP + 2)
    for trainer in (eager, graphed):
        trainer.config.train.batch_size = 3
    step_both(eager, graphed, WARMUP + 2)
    assert graphed.graphed.captures == 2


def test_a_capture_that_fails_says_why_in_one_line_and_trains_on_eagerly(data, tmp_path, said):
    eager, graphed = pair(data, tmp_path, "plain", [], runner=FailingCapture)
    step_both(eager, graphed, WARMUP + 4)
    assert said == [
        "the training step could not be captured as a CUDA graph (operation not permitted when stream is "
        "capturing); it runs eagerly"
    ]
    assert all(not isinstance(group["lr"], torch.Tensor) for group in graphed.optimizer.param_groups)
