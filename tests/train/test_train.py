import csv
import math

import pytest
import torch

from wavegen.config import apply_overrides
from wavegen.data.prepare import prepare
from wavegen.errors import ConfigError, TrainingInterrupted
from wavegen.model import checkpoint as ckpt
from wavegen.recipe import load_recipe
from wavegen.train.loop import train
from wavegen.train.schedule import lr_at
from wavegen.train.settings import resolve_config
from wavegen.train.trainer import Trainer

FAST = [
    "train.steps=12",
    "train.batch_size=2",
    "train.segment_length=200",
    "train.val_every=4",
    "train.checkpoint_every=5",
    "train.log_every=2",
    "train.warmup_steps=3",
]


@pytest.fixture
def prepared(tone_dataset, tmp_path):
    config = load_recipe("tiny")
    prepare(tone_dataset, tmp_path / "prepared", config.data, progress=False)
    return tmp_path / "prepared"


def weights(run):
    return ckpt.load(run / "checkpoints" / "latest.pt")["model"]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_an_interrupted_run_resumes_to_bit_identical_weights(prepared, tmp_path, monkeypatch, precision, said):
    config = apply_overrides(load_recipe("tiny"), FAST + ["train.ema=0.9", f"train.precision={precision}"])
    straight = train(config, prepared, tmp_path / "straight", device="cpu", progress=False)
    assert straight.step == 12

    original = Trainer.train_step

    def interrupt_at_7(self):
        if self.step == 7:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", interrupt_at_7)
    with pytest.raises(TrainingInterrupted, match="interrupted at step 7"):
        train(config, prepared, tmp_path / "resumed", device="cpu", progress=False)
    assert ckpt.load(tmp_path / "resumed" / "checkpoints" / "latest.pt")["step"] == 7
    monkeypatch.setattr(Trainer, "train_step", original)

    said.clear()
    messages = said
    config_again, resuming, *_ = resolve_config(tmp_path / "resumed", prepared, None, [], None)
    assert resuming and config_again == config
    train(config_again, prepared, tmp_path / "resumed", device="cpu", progress=False)
    assert any("resuming" in m and "step 7" in m for m in messages)
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    saved = ckpt.load(tmp_path / "resumed" / "checkpoints" / "latest.pt")
    straight = ckpt.load(tmp_path / "straight" / "checkpoints" / "latest.pt")
    assert saved["ema_updates"] == 12 and all(torch.equal(saved["ema"][k], straight["ema"][k]) for k in a)
    assert saved["optimizer"]["state"]  # Adam moments travel with the checkpoint


def test_run_folder_has_config_log_and_best_checkpoint(prepared, tmp_path):
    config = apply_overrides(load_recipe("tiny"), FAST)
    result = train(config, prepared, tmp_path / "run", device="cpu", progress=False)
    run = tmp_path / "run"
    assert (run / "config.toml").is_file() and (run / "checkpoints" / "best.pt").is_file()
    rows = list(csv.DictReader(open(run / "log.csv")))
    assert [r["step"] for r in rows if r["val_bits"]] == ["0", "4", "8", "12"]
    assert float(rows[0]["val_bits"]) > 7.5  # an untrained model is close to 8 bits/sample
    assert result.val_history[0][0] == 0 and len(result.val_history) == 4
    best = ckpt.load(run / "checkpoints" / "best.pt")
    assert best["best_val_bits"] == pytest.approx(min(v for _, v in result.val_history))


def test_resuming_refuses_a_different_model_shape(prepared, tmp_path):
    config = apply_overrides(load_recipe("tiny"), FAST)
    train(config, prepared, tmp_path / "run", device="cpu", progress=False)
    with pytest.raises(ConfigError, match=r"model.residual_channels = 16, and it cannot change \(the network.s shape"):
        resolve_config(tmp_path / "run", prepared, None, ["model.residual_channels=32"], None)
    with pytest.raises(ConfigError, match="differs from recipe 'default'"):
        resolve_config(tmp_path / "run", prepared, "default", [], None)
    extended, resuming, *_ = resolve_config(tmp_path / "run", prepared, None, [], 20)
    assert resuming and extended.train.steps == 20


def test_learning_rate_warms_up_then_decays():
    config = apply_overrides(
        load_recipe("tiny"), ["train.steps=100", "train.warmup_steps=10", "train.lr=1.0", "train.min_lr_ratio=0.1"]
    )
    lrs = [lr_at(s, config) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))
    assert lrs[-1] == pytest.approx(0.1, abs=0.01)


def test_a_run_conditions_on_its_data_and_refuses_data_conditioned_otherwise(tone_dataset, tmp_path, said):
    from wavegen.audio.io import write_wav

    from helpers import tone

    labelled = tmp_path / "labelled"
    write_wav(labelled / "low" / "a.wav", tone(220, 2.0), 16000)
    write_wav(labelled / "high" / "b.wav", tone(660, 2.0), 16000)
    data = load_recipe("tiny").data
    data.label_source, data.mel_bands, data.mel_hop, data.mel_n_fft = "folders", 8, 64, 256
    prepare(labelled, tmp_path / "conditioned", data, progress=False)
    config = apply_overrides(load_recipe("tiny"), FAST[:1] + FAST[1:3])
    said.clear()
    messages = said
    train(config, tmp_path / "conditioned", tmp_path / "run", device="cpu", progress=False)
    assert "conditioning on 2 labels (high, low) and 8-band log-mels every 64 samples" in messages
    saved = ckpt.config_of(ckpt.load(tmp_path / "run" / "checkpoints" / "latest.pt"))
    assert saved.model.labels == ["high", "low"] and (saved.model.mel_channels, saved.model.mel_hop) == (8, 64)
    assert (saved.data.mel_bands, saved.data.mel_hop, saved.data.mel_n_fft) == (8, 64, 256)  # vocode needs these

    prepare(tone_dataset, tmp_path / "plain", load_recipe("tiny").data, progress=False)
    with pytest.raises(
        ConfigError,
        match="the data has no labels, no mels but the run was trained with "
        "labels \\[high, low\\], 8 mel bands every 64 samples",
    ):
        resolve_config(tmp_path / "run", tmp_path / "plain", None, [], 20)
    resumed = resolve_config(tmp_path / "run", tmp_path / "conditioned", None, [], 20).config
    with pytest.raises(ConfigError, match="the data has no labels, no mels but the run was trained with labels"):
        train(resumed, tmp_path / "plain", tmp_path / "run", device="cpu", progress=False)


def test_accumulated_micro_batches_give_the_gradient_of_one_big_batch(prepared, tmp_path):
    from wavegen.data.prepared import PreparedData

    data = PreparedData(prepared)
    base = FAST + ["train.input_noise=0", "train.code_noise=0", "train.segment_length=300", "train.precision=fp32"]
    whole = Trainer(
        apply_overrides(load_recipe("tiny"), base + ["train.batch_size=4"]), data, tmp_path / "a", torch.device("cpu")
    )
    split = Trainer(
        apply_overrides(load_recipe("tiny"), base + ["train.batch_size=2", "train.accumulate=2"]),
        data,
        tmp_path / "b",
        torch.device("cpu"),
    )
    split.model.load_state_dict(whole.model.state_dict())
    # Four windows well inside the file (no ignored targets), in one batch or in two halves.
    batch = whole.sampler.windows([0] * 4, [1000, 5000, 20000, 40000])
    halves = iter([whole.sampler.windows([0] * 2, [1000, 5000]), whole.sampler.windows([0] * 2, [20000, 40000])])
    whole.sampler.batch = lambda size: batch
    split.sampler.batch = lambda size: next(halves)
    bits_whole, norm_whole = map(float, whole.train_step())
    bits_split, norm_split = map(float, split.train_step())
    assert bits_split == pytest.approx(bits_whole, rel=1e-5) and norm_split == pytest.approx(norm_whole, rel=1e-4)
    for (name, p), q in zip(whole.model.named_parameters(), split.model.parameters()):
        if p.grad is None:  # the last block's residual output feeds nothing
            assert q.grad is None, name
            continue
        assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-7), name


def test_synth_uses_the_moving_average_of_the_weights(prepared, tmp_path):
    config = apply_overrides(load_recipe("tiny"), FAST + ["train.ema=0.5"])
    train(config, prepared, tmp_path / "run", device="cpu", progress=False)
    payload = ckpt.load(tmp_path / "run" / "checkpoints" / "latest.pt")
    model, _, _ = ckpt.load_model(tmp_path / "run" / "checkpoints" / "latest.pt")
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], payload["ema"][k]) for k in loaded)
    assert not all(torch.equal(payload["ema"][k], payload["model"][k]) for k in loaded)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_activation_checkpointing_trains_to_identical_weights(prepared, tmp_path, precision):
    config = apply_overrides(load_recipe("tiny"), FAST + [f"train.precision={precision}"])
    train(config, prepared, tmp_path / "kept", device="cpu", progress=False)
    recomputing = apply_overrides(
        load_recipe("tiny"), FAST + [f"train.precision={precision}", "train.activation_checkpointing=true"]
    )
    train(recomputing, prepared, tmp_path / "recomputed", device="cpu", progress=False)
    a, b = weights(tmp_path / "kept"), weights(tmp_path / "recomputed")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_compiled_training_matches_eager(prepared, tmp_path):
    """torch.compile builds its own kernels (about a minute on a small CPU), so: a few steps."""
    base = [
        "train.steps=3",
        "train.batch_size=2",
        "train.segment_length=200",
        "train.val_every=100",
        "train.checkpoint_every=100",
        "train.warmup_steps=1",
        "train.precision=fp32",
    ]
    from torch._dynamo.utils import counters

    eager = train(
        apply_overrides(load_recipe("tiny"), base),
        prepared,
        tmp_path / "eager",
        device="cpu",
        progress=False,
    )
    counters.clear()
    compiled = train(
        apply_overrides(load_recipe("tiny"), base + ["train.compile=true"]),
        prepared,
        tmp_path / "compiled",
        device="cpu",
        progress=False,
    )
    assert counters["stats"]["unique_graphs"] >= 1  # it did compile
    assert compiled.train_bits == pytest.approx(eager.train_bits, rel=1e-4)
    a, b = weights(tmp_path / "eager"), weights(tmp_path / "compiled")
    assert set(a) == set(b)  # the checkpoint holds the module's own names, not the compiled wrapper's
    # Rounding differs between the kernels; Adam's normalised step turns it into up to ~5e-5
    # where a gradient is near zero (weight norm's directions). A different step is ~lr = 3e-3.
    assert all(torch.allclose(a[k], b[k], atol=2e-4) for k in a)


def test_a_batch_that_cannot_fit_is_refused_before_the_first_step(prepared, tmp_path):
    from wavegen.errors import OutOfMemory

    config = apply_overrides(load_recipe("default"), ["train.batch_size=65536"])  # (the most a recipe may ask)
    with pytest.raises(OutOfMemory, match=r"largest batch that fits is \d+") as caught:
        train(config, prepared, tmp_path / "huge", device="cpu", progress=False)
    fits = int(str(caught.value).split("largest batch that fits is ")[1].split()[0])
    assert 0 < fits < 65536
    assert not (tmp_path / "huge" / "checkpoints").exists()


@pytest.mark.parametrize("precision", ["fp32", "bf16", "auto"])
def test_precision_sets_the_arithmetic_but_weights_and_optimizer_stay_float32(prepared, tmp_path, precision):
    from wavegen.data.prepared import PreparedData
    from wavegen.train.precision import native_bf16

    config = apply_overrides(load_recipe("tiny"), FAST + [f"train.precision={precision}"])
    trainer = Trainer(config, PreparedData(prepared), tmp_path / "run", torch.device("cpu"))
    expected = {"fp32": "fp32", "bf16": "bf16", "auto": "bf16" if native_bf16(torch.device("cpu")) else "fp32"}
    assert trainer.precision == expected[precision]
    seen = []
    trainer.model.head.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    bits, norm = trainer.train_step()
    assert seen == [torch.bfloat16 if trainer.precision == "bf16" else torch.float32]
    assert 7 < bits < 9 and norm > 0  # an untrained model's cross-entropy: about 8 bits
    assert all(
        p.dtype == torch.float32 and (p.grad is None or p.grad.dtype == torch.float32)
        for p in trainer.model.parameters()
    )
    moments = [v for state in trainer.optimizer.state.values() for v in state.values() if v.dim() > 0]
    assert moments and all(m.dtype == torch.float32 for m in moments)


def poison(monkeypatch, steps, how="loss"):
    """Make the steps numbered in ``steps`` (1-based, as logged) go bad: a NaN loss, or a
    finite loss whose gradient is infinite (an overflow in backward)."""
    original = Trainer._loss

    class InfiniteGradient(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, grad):
            return grad * float("inf")

    def bits(self, batch, model=None):
        value = original(self, batch, model)
        if model is not None or self.step + 1 not in steps:  # validation, or a good step
            return value
        return value * float("nan") if how == "loss" else InfiniteGradient.apply(value)

    monkeypatch.setattr(Trainer, "_loss", bits)


def flat(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize("how", ["loss", "gradient"])
def test_a_bad_step_changes_nothing_and_is_counted(prepared, tmp_path, monkeypatch, how):
    from wavegen.data.prepared import PreparedData

    poison(monkeypatch, {3}, how)
    config = apply_overrides(load_recipe("tiny"), FAST + ["train.ema=0.9"])
    trainer = Trainer(config, PreparedData(prepared), tmp_path / "run", torch.device("cpu"))
    snapshots, history = [(flat(trainer.model), flat(trainer.ema.module))], []
    for _ in range(4):
        history.append((*map(float, trainer.train_step()), trainer.skipped, trainer.bad_in_a_row))
        snapshots.append((flat(trainer.model), flat(trainer.ema.module)))
    bits, norm, skipped, in_a_row = history[2]
    assert (skipped, in_a_row) == (1, 1) and not math.isfinite(norm)
    assert math.isfinite(bits) == (how == "gradient")  # the loss of an infinite gradient was finite
    # Step 3 left the weights, their average and Adam's count as they were; step 4 went on.
    assert all(torch.equal(a, b) for a, b in zip(snapshots[3], snapshots[2]))
    assert not torch.equal(snapshots[4][0], snapshots[3][0]) and torch.isfinite(snapshots[4][0]).all()
    assert trainer.step == 4 and history[3][2:] == (1, 0)
    assert {int(state["step"]) for state in trainer.optimizer.state.values()} == {3}


def test_a_sporadic_nan_is_skipped_counted_and_logged(prepared, tmp_path, monkeypatch, said):
    poison(monkeypatch, {5})
    config = apply_overrides(load_recipe("tiny"), FAST)
    said.clear()
    messages = said
    result = train(config, prepared, tmp_path / "run", device="cpu", progress=False)
    assert result.step == 12 and result.skipped_steps == 1
    assert "skipped 1 steps with a non-finite loss or gradient" in messages[-1]
    rows = {r["step"]: r for r in csv.DictReader(open(tmp_path / "run" / "log.csv"))}
    assert [rows[s]["skipped"] for s in ("2", "4", "6", "12")] == ["0", "0", "1", "1"]
    saved = ckpt.load(tmp_path / "run" / "checkpoints" / "latest.pt")
    assert saved["skipped_steps"] == 1 and all(torch.isfinite(w).all() for w in saved["model"].values())


def test_a_persistent_nan_stops_the_run_keeping_the_last_good_checkpoint(prepared, tmp_path, monkeypatch):
    from wavegen.errors import TrainingDiverged

    poison(monkeypatch, set(range(7, 100)))  # from step 7 on, every step
    config = apply_overrides(load_recipe("tiny"), FAST + ["train.max_bad_steps=4", "train.steps=30"])
    run = tmp_path / "run"
    with pytest.raises(TrainingDiverged) as stopped:
        train(config, prepared, run, device="cpu", progress=False)
    assert str(stopped.value) == (
        f"step 10: 4 steps in a row had a non-finite loss or gradient (train.max_bad_steps = 4), so training "
        f"stopped. Kept {run}/checkpoints/latest.pt (step 5) and {run}/checkpoints/best.pt (step 8); running the "
        "same command resumes from the latest. Lower train.lr (now 0.003), or look for broken data"
    )
    saved = ckpt.load(run / "checkpoints" / "latest.pt")  # step 10 was never saved
    assert saved["step"] == 5 and all(torch.isfinite(w).all() for w in saved["model"].values())


def test_weights_that_are_no_longer_finite_are_never_saved(prepared, tmp_path, monkeypatch):
    from wavegen.errors import TrainingDiverged

    config = apply_overrides(load_recipe("tiny"), FAST + ["train.val_batches=0"])
    train(config, prepared, tmp_path / "run", device="cpu", progress=False)  # latest.pt at 12
    before = (tmp_path / "run" / "checkpoints" / "latest.pt").read_bytes()
    original = Trainer.train_step

    def corrupting(self):  # what the skipping above prevents: NaN gradients reaching Adam
        result = original(self)
        if self.step == 13:
            next(self.model.parameters()).data.fill_(float("nan"))
        return result

    monkeypatch.setattr(Trainer, "train_step", corrupting)
    resumed = resolve_config(tmp_path / "run", prepared, None, [], 15).config
    with pytest.raises(
        TrainingDiverged,
        match=r"step 15: the weights are no longer finite, so training stopped "
        r"without saving them. Kept .*latest.pt \(step 12\); running the same "
        r"command resumes from the latest. Lower train.lr",
    ):
        train(resumed, prepared, tmp_path / "run", device="cpu", progress=False)
    assert (tmp_path / "run" / "checkpoints" / "latest.pt").read_bytes() == before


def test_a_full_disk_stops_training_and_keeps_the_previous_checkpoint(prepared, tmp_path, full_disk):
    from wavegen.errors import CheckpointError

    config = apply_overrides(load_recipe("tiny"), FAST + ["train.val_batches=0", "train.steps=5"])
    run = tmp_path / "run"
    train(config, prepared, run, device="cpu", progress=False)
    before = (run / "checkpoints" / "latest.pt").read_bytes()
    full_disk.room = 10_000  # config.toml fits, a checkpoint (~0.5 MB) does not
    resumed = resolve_config(run, prepared, None, [], 12).config
    with pytest.raises(CheckpointError) as stopped:
        train(resumed, prepared, run, device="cpu", progress=False)
    assert str(stopped.value) == (
        f"{run}/checkpoints/latest.pt: no space left on device, so training stopped at "
        f"step 10. Kept {run}/checkpoints/latest.pt (step 5); running the same command "
        "resumes from the latest. Make room (or fix the folder), then run the same command "
        "again"
    )
    assert (run / "checkpoints" / "latest.pt").read_bytes() == before
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest.pt"]  # no temporary file left


def test_resuming_drops_the_log_rows_a_killed_run_wrote_past_its_checkpoint(tmp_path):
    from wavegen.runs import LOG_FIELDS, resume_log

    log = tmp_path / "log.csv"
    old = ["step,train_bits,val_bits,lr,grad_norm,samples_per_s,elapsed_s"]  # a log from before 'skipped'
    log.write_text("\r\n".join(old + [f"{s},8.0,,0.001,0.5,100,{s}" for s in range(0, 9)]) + "\r\n8,7.9,,0.0")
    assert resume_log(log, 5) == 3  # 6, 7, 8; and the row the kill cut short
    rows = list(csv.DictReader(open(log)))
    assert [r["step"] for r in rows] == ["0", "1", "2", "3", "4", "5"] and list(rows[0]) == LOG_FIELDS
    assert resume_log(log, 5) == 0 and resume_log(tmp_path / "none.csv", 5) == 0
    assert resume_log(log, -1) == 6 and log.read_text().splitlines() == [",".join(LOG_FIELDS)]


def test_an_interrupt_inside_a_step_saves_nothing_half_done(prepared, tmp_path, monkeypatch):
    """A second Ctrl-C raises at once, maybe after the step drew its windows or halfway through
    Adam: that state is no point of any run, so the last checkpoint stays the resume point."""
    original = Trainer._loss

    def interrupted(self, batch, model=None):
        if model is None and self.step == 6:  # step 7, its windows drawn
            raise KeyboardInterrupt
        return original(self, batch, model)

    monkeypatch.setattr(Trainer, "_loss", interrupted)
    config = apply_overrides(load_recipe("tiny"), FAST)
    run = tmp_path / "run"
    with pytest.raises(TrainingInterrupted) as stopped:
        train(config, prepared, run, device="cpu", progress=False)
    assert str(stopped.value) == (
        f"stopped during step 7 without saving it. Kept {run}/checkpoints/latest.pt "
        f"(step 5) and {run}/checkpoints/best.pt (step 4); running the same command "
        "resumes from the latest"
    )
    assert ckpt.load(run / "checkpoints" / "latest.pt")["step"] == 5


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_code_noise_is_measured_in_mulaw_steps_so_it_follows_the_level(prepared, tmp_path, sigma):
    """``code_noise`` jitters input codes by ~sigma µ-law steps at every level, which is little
    audio near silence and more near full scale; ``input_noise`` is the same audio everywhere."""
    from wavegen.audio.mulaw import decode
    from wavegen.data.prepared import PreparedData

    data = PreparedData(prepared)
    trainer = Trainer(
        apply_overrides(load_recipe("tiny"), FAST + ["train.input_noise=0", f"train.code_noise={sigma}"]),
        data,
        tmp_path / "run",
        torch.device("cpu"),
    )
    quiet_codes, loud_codes = torch.full((4, 5000), 130), torch.full((4, 5000), 250)  # near 0 and near full scale
    for codes in (quiet_codes, loud_codes):
        noisy = trainer._noisy(codes)
        assert noisy.dtype == torch.int64 and 0 <= noisy.min() and noisy.max() <= 255
        assert (noisy - codes).float().std().item() == pytest.approx(sigma, rel=0.15)
    audio_quiet = (decode(trainer._noisy(quiet_codes)) - decode(quiet_codes)).std().item()
    audio_loud = (decode(trainer._noisy(loud_codes)) - decode(loud_codes)).std().item()
    assert audio_loud > 10 * audio_quiet
    audio = Trainer(
        apply_overrides(load_recipe("tiny"), FAST + ["train.input_noise=0.03", "train.code_noise=0"]),
        data,
        tmp_path / "audio",
        torch.device("cpu"),
    )
    steps_quiet = (audio._noisy(quiet_codes) - quiet_codes).float().std().item()
    assert steps_quiet > 10  # 0.03 of full scale is tens of µ-law steps near silence


def test_the_moving_average_copies_then_follows_a_young_run_then_settles_at_its_decay():
    from wavegen.train.ema import MovingAverage

    model = torch.nn.Linear(3, 1, bias=False)
    model.weight.data.zero_()
    ema = MovingAverage(model, 0.999)
    model.weight.data.fill_(1.0)
    ema.update(model)  # the first update copies the weights
    assert torch.equal(ema.module.weight, torch.ones(1, 3))
    model.weight.data.fill_(0.0)
    ema.update(model)  # after 1 update: decay 2/11
    assert torch.allclose(ema.module.weight, torch.full((1, 3), 2 / 11))
    before = ema.module.weight.clone()
    ema.update(model, keep=torch.tensor(0.0))  # a skipped step: nothing moves, nothing counts
    assert torch.equal(ema.module.weight, before) and ema.count == 2
    ema.updates.fill_(100_000)  # far on: the configured decay
    model.weight.data.fill_(1.0)
    ema.update(model, keep=torch.tensor(1.0))
    assert ema.module.weight[0, 0].item() == pytest.approx(2 / 11 + 0.001 * (1 - 2 / 11)) and ema.count == 100_001


def test_slow_cpu_steps_are_named_once_with_the_hours_and_a_smaller_recipe(prepared, tmp_path, monkeypatch, said):
    """A GPU-sized recipe on a CPU: one line after the first steps, then training goes on. The
    steps are made to look slow by lowering the threshold (a slow recipe would take minutes)."""
    from wavegen.train import slow

    config = apply_overrides(load_recipe("tiny"), ["train.steps=8", "train.val_every=100"])
    said.clear()
    train(config, prepared, tmp_path / "fast", device="cpu", progress=False)
    assert not [line for line in said if "a training step takes" in line]  # tiny steps are fast

    monkeypatch.setattr(slow, "SLOW_CPU_STEP_S", 1e-9)
    said.clear()
    result = train(config, prepared, tmp_path / "slow", device="cpu", progress=False)
    notes = [line for line in said if "a training step takes" in line]
    assert len(notes) == 1 and result.step == 8
    assert "s on this CPU: the 4 steps left to train.steps = 8 would take about" in notes[0]
    assert "hours" in notes[0] and "--recipe tiny" in notes[0] and "\n" not in notes[0]


def test_the_slow_step_note_uses_the_median_after_the_first_step_and_only_on_a_cpu(said):
    from wavegen.train.slow import SlowStepNote

    said.clear()
    note = SlowStepNote(torch.device("cpu"), 0, 3604)
    for step, seconds in [(1, 60.0), (2, 3.0), (3, 100.0), (4, 2.5)]:  # the first step's 60 s does not count
        note.after(step, seconds)
    assert len(said) == 1 and said[0].startswith("a training step takes 3.0 s on this CPU: the 3,600 steps left")
    assert "about 3.0 hours" in said[0]
    note.after(5, 10.0)
    assert len(said) == 1  # once
    quick = SlowStepNote(torch.device("cpu"), 10, 100)  # resumed at step 10: steps 12..14 timed
    for step in range(11, 20):
        quick.after(step, 1.0)
    gpu = SlowStepNote(torch.device("cuda"), 0, 100)
    for step in range(1, 10):
        gpu.after(step, 10.0)
    assert len(said) == 1
