"""Going on with a run: its settings (edited, overridden, fixed), its learning-rate schedule,
a finished run, the features its data must share, and what a stopped run says about its files."""

import csv
import re

import numpy as np
import pytest
import torch

from wavegen.audio.io import write_wav
from wavegen.config import apply_overrides
from wavegen.data.prepare import prepare
from wavegen.errors import CheckpointError, ConfigError, OutOfMemory, TrainingDiverged
from wavegen.model import checkpoint as ckpt
from wavegen.recipe import load_recipe
from wavegen.train.loop import train
from wavegen.train.schedule import continue_schedule, lr_at
from wavegen.train.settings import resolve_config
from wavegen.train.trainer import Trainer

from helpers import messages_said, tone

FAST = [
    "train.steps=12",
    "train.batch_size=2",
    "train.segment_length=200",
    "train.val_every=4",
    "train.checkpoint_every=5",
    "train.log_every=1",
    "train.warmup_steps=3",
    "train.val_batches=1",
]


@pytest.fixture
def prepared(tone_dataset, tmp_path):
    prepare(tone_dataset, tmp_path / "prepared", load_recipe("tiny").data, progress=False)
    return tmp_path / "prepared"


def trained(prepared, run, *settings):
    """A tiny run trained on ``prepared`` with FAST and ``settings``."""
    train(
        apply_overrides(load_recipe("tiny"), FAST + list(settings)),
        prepared,
        run,
        device="cpu",
        progress=False,
    )
    return run


def resume(prepared, run, overrides=(), steps=None):
    """``wavegen train --run RUN`` as the command runs it: returns the result and every line said."""
    with messages_said() as said:
        resolved = resolve_config(run, prepared, None, list(overrides), steps)
        result = train(
            resolved.config,
            prepared,
            run,
            device="cpu",
            progress=False,
            **resolved.found(),  # as the command passes them
        )
    return result, said


def logged_rates(run):
    with open(run / "log.csv", newline="") as handle:
        return [(int(row["step"]), float(row["lr"])) for row in csv.DictReader(handle) if row["lr"]]


# -- what a stopped run says --------------------------------------------------------------------


def says_what_is_on_disk(message: str, run) -> None:
    """A stop message is sentences (each after the first capitalised), names what is on disk in
    this run (or that nothing is) and what running again does."""
    assert not re.search(r"keeping no|kept: no|\bno\b.*\bwas saved\)", message), message
    for sentence in re.split(r"(?<=[a-z0-9)])\. ", message)[1:]:
        assert sentence[:1].isupper(), (sentence, message)
    kept = re.findall(r"Kept (\S+) \(step (\d+)\)", message)
    if kept:
        for path, step in kept:
            assert path.startswith(str(run)) and ckpt.load(path)["step"] == int(step), message
        assert "running the same command resumes from the latest" in message
    else:
        assert "No checkpoint was saved yet, so running the command again starts afresh" in message, message
        assert not (run / "checkpoints" / "latest.pt").exists()


def poison_from(monkeypatch, first_bad: int) -> None:
    """Every step from ``first_bad`` on (1-based) has a NaN loss."""
    original = Trainer._loss

    def bits(self, batch, model=None):
        value = original(self, batch, model)
        return value * float("nan") if model is None and self.step + 1 >= first_bad else value

    monkeypatch.setattr(Trainer, "_loss", bits)


@pytest.mark.parametrize("first_bad", [1, 8])
def test_a_diverged_run_says_in_sentences_what_it_kept(prepared, tmp_path, monkeypatch, first_bad):
    poison_from(monkeypatch, first_bad)
    run = tmp_path / "run"
    with pytest.raises(TrainingDiverged) as stopped:
        trained(prepared, run, "train.max_bad_steps=3")
    says_what_is_on_disk(str(stopped.value), run)
    assert str(stopped.value).endswith("Lower train.lr (now 0.003), or look for broken data")


@pytest.mark.parametrize("room", [0, 10_000])  # nothing fits / config.toml fits, no checkpoint
def test_a_full_disk_before_the_first_checkpoint_says_nothing_was_kept(prepared, tmp_path, full_disk, room):
    run = tmp_path / "run"
    if room:
        full_disk.room = room
        with pytest.raises(CheckpointError) as stopped:
            trained(prepared, run)
        says_what_is_on_disk(str(stopped.value), run)
        assert "Make room (or fix the folder), then run the same command again" in str(stopped.value)
    else:  # config.toml itself cannot be written: refused before any step, with the file named
        full_disk.room = 0
        with pytest.raises(Exception, match="config.toml"):
            trained(prepared, run)


@pytest.mark.parametrize("at_step", [3, 9])
def test_running_out_of_memory_during_a_step_says_what_is_kept(prepared, tmp_path, monkeypatch, at_step):
    original = Trainer.train_step

    def step(self):
        if self.step + 1 == at_step:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", step)
    run = tmp_path / "run"
    with pytest.raises(OutOfMemory) as stopped:
        trained(prepared, run)
    assert f"(it ran out during step {at_step})" in str(stopped.value)
    says_what_is_on_disk(str(stopped.value), run)


# -- the learning-rate schedule of a run that goes on ------------------------------------------


@pytest.mark.parametrize(
    "warmup,first,at,new",
    [
        (10, 100, 100, 200),  # a finished run extended
        (10, 100, 40, 300),  # extended half-way through its decay
        (10, 100, 5, 150),  # extended while still warming up
        (0, 50, 50, 51),  # by one step, no warm-up
        (20, 400, 400, 401),
        (10, 100, 60, 80),  # shortened (still ahead of the step reached)
    ],
)
def test_a_changed_schedule_continues_from_the_rate_reached(warmup, first, at, new):
    base = ["train.lr=0.004", "train.min_lr_ratio=0.1", f"train.warmup_steps={warmup}"]
    before = apply_overrides(load_recipe("tiny"), base + [f"train.steps={first}"])
    after = apply_overrides(load_recipe("tiny"), base + [f"train.steps={new}"])
    anchor = continue_schedule(at, before, after, None)
    reached = lr_at(at, before)
    rates = [lr_at(step, after, anchor) for step in range(at, new + 1)]
    if at >= warmup:
        assert rates[0] == pytest.approx(reached, rel=1e-9)  # no jump where it goes on
        assert all(a >= b - 1e-12 for a, b in zip(rates, rates[1:]))  # then only down
    else:  # the warm-up goes on as it was
        assert rates[0] == pytest.approx(reached) and rates[warmup - at - 1] == pytest.approx(0.004)
    assert lr_at(new, after, anchor) == pytest.approx(min(reached, 0.0004) if at >= warmup else 0.0004, rel=1e-6)
    again = apply_overrides(load_recipe("tiny"), base + [f"train.steps={new + 100}"])  # and once more
    later = continue_schedule(new - 1, after, again, anchor)
    assert lr_at(new - 1, again, later) == pytest.approx(lr_at(new - 1, after, anchor), rel=1e-9)
    assert continue_schedule(at, after, after, anchor) == anchor  # settings unchanged: the same schedule


@pytest.mark.parametrize("planned,stopped,then", [(12, 12, 24), (20, 9, 40), (20, 2, 30)])
def test_extending_a_run_continues_its_learning_rate_smoothly(prepared, tmp_path, monkeypatch, planned, stopped, then):
    from wavegen.errors import TrainingInterrupted

    original = Trainer.train_step

    def interrupted(self):
        if self.step == stopped:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", interrupted)
    run = tmp_path / "run"
    if stopped < planned:
        with pytest.raises(TrainingInterrupted):
            trained(prepared, run, f"train.steps={planned}")
    else:
        trained(prepared, run, f"train.steps={planned}")
    monkeypatch.setattr(Trainer, "train_step", original)
    _, said = resume(prepared, run, steps=then)
    assert f"resuming {run} at step {stopped} with train.steps {planned} → {then} (--steps)" in said
    schedule = [line for line in said if line.startswith("learning rate")]
    assert len(schedule) == 1 and f"at step {stopped}" in schedule[0] and f"step {then}" in schedule[0]
    rates = logged_rates(run)
    assert [s for s, _ in rates] == list(range(1, then + 1))
    warm = [lr for step, lr in rates if step <= 3]
    assert warm == sorted(warm)
    # log.csv rounds to 3 significant digits: allow that, no more
    after = [lr for step, lr in rates if step > 3]
    assert all(b <= a * 1.002 for a, b in zip(after, after[1:])), rates


def test_a_finished_run_says_so_and_how_to_go_on(prepared, tmp_path):
    run = trained(prepared, tmp_path / "run")
    before = (run / "checkpoints" / "latest.pt").read_bytes()
    result, said = resume(prepared, run)
    assert result.step == 12 and result.train_bits is None
    assert (
        f"{run} is already at its last step (12 of train.steps = 12); nothing to train. To train on, give a "
        f"larger --steps: wavegen train --run {run} --steps 24" in said
    )
    assert not any("nan" in line.lower() for line in said), said
    assert (run / "checkpoints" / "latest.pt").read_bytes() == before


def test_a_run_whose_steps_were_all_skipped_prints_no_made_up_number(prepared, tmp_path, monkeypatch, said):
    poison_from(monkeypatch, 1)
    config = apply_overrides(load_recipe("tiny"), FAST + ["train.steps=2", "train.max_bad_steps=5"])
    result = train(config, prepared, tmp_path / "run", device="cpu", progress=False)
    assert result.train_bits is None and result.skipped_steps == 2
    assert said[-1].startswith("done: step 2, validation ") and "nan" not in said[-1].lower()


# -- the run's settings: edits, overrides and what is fixed ------------------------------------


def edit(path, **values):
    """Set ``key = value`` lines of a config.toml as a user would in an editor."""
    text = path.read_text()
    for key, value in values.items():
        text, count = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
        assert count == 1, key
    path.write_text(text)


def test_edits_to_a_runs_config_are_applied_named_and_kept(prepared, tmp_path):
    run = trained(prepared, tmp_path / "run")
    edit(run / "config.toml", steps=20, lr=0.001, log_every=4)
    with open(run / "config.toml", "a") as handle:
        handle.write("# lr lowered by hand\n")
    written = (run / "config.toml").read_bytes()
    result, said = resume(prepared, run)
    assert result.step == 20
    line = next(line for line in said if line.startswith("resuming"))
    for change in ("train.lr 0.003 → 0.001", "train.steps 12 → 20", "train.log_every 1 → 4"):
        assert f"{change} ({run}/config.toml)" in line, line
    assert [step for step, _ in logged_rates(run) if step > 12] == [16, 20]
    saved = ckpt.config_of(ckpt.load(run / "checkpoints" / "latest.pt"))
    assert (saved.train.lr, saved.train.steps) == (0.001, 20)
    assert (run / "config.toml").read_bytes() == written  # it says what the run now is: left as the user wrote it


def test_set_overrides_an_edit_and_says_which_applied(prepared, tmp_path):
    run = trained(prepared, tmp_path / "run")
    edit(run / "config.toml", lr=0.001)
    _, said = resume(prepared, run, ["train.lr=0.002", "train.batch_size=3"], steps=14)
    line = next(line for line in said if line.startswith("resuming"))
    assert "train.lr 0.003 → 0.002 (--set)" in line and "train.steps 12 → 14 (--steps)" in line
    assert any(
        line.startswith("validation scores other windows from here on (train.batch_size changed)") for line in said
    )
    assert "lr = 0.002" in (run / "config.toml").read_text()


@pytest.mark.parametrize(
    "section,key,value,why",
    [
        ("model", "residual_channels", 24, "the network's shape and conditioning are fixed once it is trained"),
        ("model", "init", '"torch"', "the network's shape"),
        ("data", "sample_rate", 22050, "the run learned data prepared this way"),
        ("data", "val_fraction", 0.2, "the run learned data prepared this way"),
        ("train", "seed", 7, "the run's random streams continue from its checkpoint"),
    ],
)
def test_an_edit_to_a_fixed_setting_is_refused_and_the_file_left_alone(prepared, tmp_path, section, key, value, why):
    run = trained(prepared, tmp_path / "run")
    edit(run / "config.toml", **{key: value})
    edited = (run / "config.toml").read_bytes()
    with pytest.raises(ConfigError) as refused:
        resume(prepared, run)
    message = str(refused.value)
    assert message.startswith(f"{run}/config.toml: {section}.{key} is ") and why in message
    assert f"restore it in {run}/config.toml, or " in message and "--run NEW_DIR" in message
    assert (run / "config.toml").read_bytes() == edited
    with pytest.raises(ConfigError, match=re.escape(f"--set {section}.{key}=")):  # the same through --set
        (run / "config.toml").unlink()
        resume(prepared, run, [f"{section}.{key}={str(value).strip(chr(34))}"])


def test_synth_vocode_and_eval_refuse_a_run_whose_data_settings_were_edited(prepared, tmp_path, said):
    from wavegen.synthesis.synth import synthesize
    from wavegen.synthesis.vocode import vocode
    from wavegen.train.evaluate import evaluate

    run = trained(prepared, tmp_path / "run")
    latest = run / "checkpoints" / "latest.pt"
    edit(run / "config.toml", steps=40)  # for the next `train`: synth goes on
    assert synthesize(latest, tmp_path / "ok", seconds=0.02, engine="torch", device="cpu", progress=False).files
    for rate in (8000, 22050, 44100):
        edit(run / "config.toml", sample_rate=rate)
        phrase = (
            f"{run}/config.toml: data.sample_rate is {rate} there, but run {run} was trained with "
            "data.sample_rate = 16000"
        )
        said.clear()
        with pytest.raises(ConfigError, match=re.escape(phrase)):
            synthesize(latest, tmp_path / "s", seconds=0.02, engine="torch", device="cpu", progress=False)
        with pytest.raises(ConfigError, match=re.escape(phrase)):
            vocode(latest, [tmp_path / "dataset" / "a440.wav"], tmp_path / "v", progress=False)
        with pytest.raises(ConfigError, match=re.escape(phrase)):
            evaluate(latest, prepared, progress=False)
        assert not said and not (tmp_path / "s").exists() and not (tmp_path / "v").exists()


def test_train_refuses_data_settings_and_keeps_a_checkpointless_runs_edits(prepared, tmp_path, said):
    from click.testing import CliRunner

    from wavegen.cli import main

    refused = CliRunner().invoke(
        main, ["train", "--data", str(prepared), "--run", str(tmp_path / "x"), "--set", "data.val_fraction=0.3"]
    )
    assert refused.exit_code == 1 and "data settings are prepare's" in refused.output
    assert not (tmp_path / "x").exists()
    run = tmp_path / "attempt"  # an attempt that wrote its config.toml but no checkpoint
    run.mkdir()
    from wavegen.config import to_toml

    (run / "config.toml").write_text(to_toml(apply_overrides(load_recipe("tiny"), FAST)))
    edit(run / "config.toml", steps=3)
    said.clear()
    config, resuming, *_ = resolve_config(run, prepared, None, [], None)
    assert not resuming and config.train.steps == 3
    assert said == [f"using the settings in {run}/config.toml (this run has no checkpoint yet)"]


def test_a_broken_config_toml_is_one_line_naming_it(prepared, tmp_path):
    from wavegen.synthesis.synth import synthesize

    run = trained(prepared, tmp_path / "run")
    for text, phrase in [
        ("steps = [", "cannot read the run's settings"),
        ("[train]\nstepz = 3\n", "unknown setting 'train.stepz'"),
        ("[train]\nlr = -1.0\n", "'train.lr' must be > 0"),
    ]:
        (run / "config.toml").write_text(text)
        with pytest.raises(ConfigError, match=re.escape(phrase)) as refused:
            resume(prepared, run)
        assert str(refused.value).startswith(f"{run}/config.toml: ") and "\n" not in str(refused.value)
        with pytest.raises(ConfigError, match=re.escape(phrase)):
            synthesize(
                run / "checkpoints" / "latest.pt",
                tmp_path / "s",
                seconds=0.02,
                engine="torch",
                device="cpu",
                progress=False,
            )


# -- conditioning features must be computed as the run's were -----------------------------------

MEL = {"data.mel_bands": 8, "data.mel_hop": 64, "data.mel_n_fft": 256, "data.mel_fmin": 0.0, "data.mel_fmax": 8000.0}


@pytest.mark.parametrize(
    "changed",
    [
        {"data.mel_n_fft": 512},
        {"data.mel_fmin": 50.0},
        {"data.mel_fmax": 4000.0},
        {"data.mel_n_fft": 128, "data.mel_fmax": 6000.0},
    ],
)
def test_resume_and_eval_refuse_features_analysed_otherwise(tmp_path, changed, said):
    from wavegen.train.evaluate import evaluate

    folder = tmp_path / "dataset"
    write_wav(folder / "a.wav", tone(330, 2.0), 16000)
    write_wav(folder / "b.wav", np.roll(tone(523, 2.0), 7), 16000)
    datas = {}
    for name, settings in (("same", MEL), ("other", {**MEL, **changed})):
        config = apply_overrides(load_recipe("tiny"), [f"{k}={v}" for k, v in settings.items()])
        prepare(folder, tmp_path / name, config.data, progress=False)
        datas[name] = tmp_path / name
    run = trained(datas["same"], tmp_path / "run", "train.steps=4")
    with pytest.raises(ConfigError) as refused:
        resume(datas["other"], run, steps=8)
    message = str(refused.value)
    for key, value in changed.items():
        assert f"{key} = {value:g}" in message and f"--set {key}={MEL[key]:g}" in message, message
    assert ckpt.load(run / "checkpoints" / "latest.pt")["step"] == 4
    said.clear()
    with pytest.raises(ConfigError, match="its log-mel features were computed with"):
        evaluate(run / "checkpoints" / "latest.pt", datas["other"], progress=False)
    assert said == []  # refused before any score


@pytest.mark.parametrize("failing_row", [0, 2, 7])
def test_a_log_that_cannot_be_written_stops_the_run_saying_what_is_kept(prepared, tmp_path, monkeypatch, failing_row):
    from wavegen.errors import WavegenError, WriteError
    from wavegen.train import loop as training
    from wavegen.train import monitor

    original = training.append_row

    def append_row(path, row):
        if row["step"] == failing_row:
            raise WriteError(path, "no space left on device", "training stopped")
        return original(path, row)

    monkeypatch.setattr(training, "append_row", append_row)
    monkeypatch.setattr(monitor, "append_row", append_row)  # (row 0: the first validation's)
    run = tmp_path / "run"
    with pytest.raises(WavegenError) as stopped:
        trained(prepared, run)
    message = str(stopped.value)
    assert message.startswith(f"{run}/log.csv: no space left on device, so training stopped at step {failing_row}. ")
    says_what_is_on_disk(message, run)


def test_a_resume_reads_the_checkpoint_once(prepared, tmp_path, monkeypatch):
    """``train`` on an existing run reads latest.pt once: the settings and the resumed state
    come from the same read (a large checkpoint is read, and held, once)."""
    from wavegen.model import checkpoint as checkpoints

    run = trained(prepared, tmp_path / "run")
    reads, original = [], checkpoints.load
    monkeypatch.setattr(
        checkpoints, "load", lambda path, *args, **kwargs: reads.append(path) or original(path, *args, **kwargs)
    )
    result, _ = resume(prepared, run, steps=14)
    assert result.step == 14 and reads == [run / "checkpoints" / "latest.pt"]
