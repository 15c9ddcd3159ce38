"""What a training step asks of a GPU, counted on the CPU: operator calls (each costs host
time on a GPU) and reads of device values (each waits for the GPU), and that every step asks
for the same work, as a CUDA graph captured once replays it (``train/graph.py``)."""

import pytest
import torch

from wavegen.audio.io import write_wav
from wavegen.bench.ops import OpTrace, count_ops
from wavegen.config import apply_overrides
from wavegen.data.prepare import prepare
from wavegen.data.prepared import PreparedData
from wavegen.recipe import load_recipe
from wavegen.train.settings import fit_to_data
from wavegen.train.trainer import Trainer

from helpers import tone

SMALL = ["train.batch_size=2", "train.segment_length=300", "train.ema=0.999", "train.warmup_steps=2"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Two labelled folders of tones of several pitches, prepared plain, with labels, and
    with labels and mels."""
    root = tmp_path_factory.mktemp("ops")
    for label, pitches in (("low", (196, 247)), ("high", (587, 880))):
        for hz in pitches:
            write_wav(root / "set" / label / f"{hz}.wav", tone(hz, 1.5), 16000)
    plain, labels, conditioned = (load_recipe("tiny").data for _ in range(3))
    labels.label_source = "folders"
    conditioned.label_source, conditioned.mel_bands, conditioned.mel_hop, conditioned.mel_n_fft = "folders", 8, 64, 256
    for folder, settings in (("plain", plain), ("labels", labels), ("conditioned", conditioned)):
        prepare(root / "set", root / folder, settings, progress=False)
    return root


def trainer(data, tmp_path, recipe, *overrides, folder="plain"):
    config = apply_overrides(load_recipe(recipe), SMALL + list(overrides))
    config = fit_to_data(config, PreparedData(data / folder), data / folder, tmp_path / "run", resuming=False)
    trainer = Trainer(config, PreparedData(data / folder), tmp_path / "run", torch.device("cpu"))
    trainer.train_step()  # (Adam's state, the stacked factors: made once, by the first step)
    return trainer


CASES = [
    ("default", ["train.precision=fp32"], "plain"),
    ("default", ["train.precision=bf16"], "plain"),
    ("default", ["train.precision=fp32", "train.full_context=true"], "plain"),
    ("default", ["train.precision=fp32", "train.accumulate=2"], "plain"),
    ("default", ["train.precision=fp32", "model.weight_norm=false", "model.scale_sums=false"], "plain"),
    ("tiny", ["train.precision=fp32", "train.grad_clip=0", "train.ema=0"], "plain"),
    ("tiny", ["train.precision=fp32"], "labels"),
    ("tiny", ["train.precision=fp32"], "conditioned"),
]


@pytest.mark.parametrize("recipe,overrides,folder", CASES)
def test_a_training_step_calls_few_operators_and_reads_nothing_from_the_device(
    data, tmp_path, recipe, overrides, folder
):
    """Before the step kept its figures on the device and computed the blocks' weights a stack
    at a time, the `default` step made 4,620 operator calls with 285 host reads (batch 2)."""
    step = trainer(data, tmp_path, recipe, *overrides, folder=folder)
    count = count_ops(step.train_step)
    assert count.host_reads == 0, {op: n for op, n in count.by_op.items() if "scalar" in op or "nonzero" in op}
    layers, t, model = len(step.model.blocks), step.config.train, step.model
    per_layer = 50 if t.full_context else 38  # (the trimmed path runs the skip 1×1 apart from the residual)
    per_micro = per_layer * layers + 150  # forward and backward of one micro-batch
    if model.conditioned:
        per_micro += 8 * layers + 40 + (40 * layers + 60 if model.conditioner.frame_net is not None else 0)
    ceiling = t.accumulate * per_micro + 10 * layers + 80  # + clipping, Adam, the average, the figures
    assert count.calls <= ceiling, count.by_op.most_common(12)
    if recipe == "default" and t.accumulate == 1 and not t.full_context:
        assert count.calls < 1600  # (4,620 before)
    # the figures are read once, when the loop asks: one host read for all of them
    reads = count_ops(step.stats.read)
    assert reads.host_reads <= 1


def same_work(trainer, lrs):
    """The operator calls, with their non-tensor arguments, of one step at each learning rate
    in ``lrs``, run as the graph runs it: the rate a device tensor, the batch copied in."""
    rate = torch.tensor(lrs[0])
    for group in trainer.optimizer.param_groups:
        group["lr"] = rate
    t = trainer.config.train
    traces = []
    for lr in lrs:
        rate.fill_(lr)
        batches = [trainer._on_device(trainer.sampler.batch(t.batch_size), noisy=True) for _ in range(t.accumulate)]
        with OpTrace(keep_args=True) as trace:
            trainer.step_body(batches)
        # (fused Adam on a CPU reads a tensor rate as a number; on a GPU it reads it on the device)
        traces.append([(op, args) for op, args in trace.calls if not op.startswith("aten._fused_adam_")])
    return traces


@pytest.mark.parametrize("recipe,overrides,folder", [CASES[i] for i in (1, 2, 3, 5, 6, 7)])
def test_every_step_asks_for_the_same_work_so_one_captured_graph_replays_it(data, tmp_path, recipe, overrides, folder):
    """A CUDA graph replays the kernels of the step it captured, with the numbers it saw then:
    every later step must call the same operators with the same non-tensor arguments, whatever
    its batch (and its windows' places in their mel frames), learning rate, skipped steps or
    moving-average count (here, three steps)."""
    step = trainer(data, tmp_path, recipe, *overrides, folder=folder)
    first, second, third = same_work(step, [3e-3, 1e-3, 2e-4])
    assert len(first) == len(second) == len(third) > 100
    for a, b, c in zip(first, second, third):
        assert a == b == c


@pytest.mark.parametrize("recipe,overrides,folder", CASES)
def test_every_weight_gets_a_gradient_so_ddp_need_not_look_for_unused_ones(data, tmp_path, recipe, overrides, folder):
    """``DistributedDataParallel(find_unused_parameters=False)`` waits for every parameter's
    gradient: the last block's residual 1×1, whose output nothing reads, gets a zero one."""
    step = trainer(data, tmp_path, recipe, *overrides, folder=folder)
    missing = [name for name, p in step.model.named_parameters() if p.grad is None]
    assert not missing
    last = step.model.blocks[-1].residual
    assert all(torch.count_nonzero(p.grad) == 0 for p in last.parameters())
