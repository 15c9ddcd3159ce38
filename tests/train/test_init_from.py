"""``train --init-from``: a new run starts from a model's weights (at step 0, with a fresh
optimizer and schedule), its model settings taken from the source and checked, and anything that
would not fit refused in one line."""

import csv
from pathlib import Path

import pytest
import torch

import wavegen
from wavegen.audio.io import write_wav
from wavegen.errors import ConfigError
from wavegen.model import checkpoint as ckpt
from wavegen.model.export import export_model
from wavegen.train import monitor

from helpers import tone

FAST = ("train.val_every=3", "train.checkpoint_every=3", "train.log_every=1")


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A tiny run trained for a few steps on a tone, its best checkpoint exported to ``model/``."""
    folder = tmp_path_factory.mktemp("init")
    write_wav(folder / "tones" / "a.wav", tone(440, 2.0), 16000)
    write_wav(folder / "other" / "b.wav", tone(330, 2.0), 16000)
    config = wavegen.load_recipe("tiny").override(*FAST)
    wavegen.prepare(folder / "tones", folder / "prepared", config)
    wavegen.prepare(folder / "other", folder / "other-prepared", config)
    wavegen.fit(folder / "prepared", folder / "run", config, steps=6)
    export_model(folder / "run" / "checkpoints" / "best.pt", folder / "model")
    return folder


def first_weights(monkeypatch) -> list:
    """Records the weights (trained and averaged) a run has before its first step."""
    seen: list = []
    original = monitor.first_validation

    def spy(trainer, board, progress):
        copies = [{k: v.clone() for k, v in m.state_dict().items()} for m in (trainer.model, trainer.ema.module)]
        seen.append((trainer.step, *copies))  # (copies: training goes on in place)
        return original(trainer, board, progress)

    monkeypatch.setattr(monitor, "first_validation", spy)
    return seen


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


@pytest.mark.parametrize("given", ["run", "run/checkpoints/best.pt", "model"])
def test_a_new_run_starts_at_step_0_from_the_sources_weights(source, tmp_path, monkeypatch, given, said):
    seen = first_weights(monkeypatch)
    result = wavegen.fit(source / "prepared", tmp_path / "new", steps=4, init_from=source / given)
    step, weights, average = seen[0]
    best = ckpt.load(source / "run" / "checkpoints" / "best.pt")
    assert step == 0 and same(weights, best["ema"]) and same(average, best["ema"])  # what the source generates with
    # the same data and validation windows: the first validation scores the source model
    rows = list(csv.DictReader(open(tmp_path / "new" / "log.csv")))
    assert rows[0]["step"] == "0" and float(rows[0]["val_bits"]) == round(best["best_val_bits"], 4)
    assert [r["step"] for r in rows[1:]] == ["1", "2", "3", "4"] and result.step == 4
    saved = ckpt.load(tmp_path / "new" / "checkpoints" / "latest.pt")
    assert saved["step"] == 4 and saved["init_from"] == str(source / given)  # recorded
    assert saved["optimizer"]["state"][0]["step"].item() == 4  # a fresh optimizer: 4 steps of its own
    assert saved["config"]["model"] == best["config"]["model"]
    assert any("starting from the weights of" in line for line in said)
    # it resumes as any run does, and keeps the record
    wavegen.fit(source / "prepared", tmp_path / "new", steps=6)
    assert ckpt.load(tmp_path / "new" / "checkpoints" / "latest.pt")["init_from"] == str(source / given)


def test_other_data_and_training_settings_apply_the_model_stays(source, tmp_path, monkeypatch):
    seen = first_weights(monkeypatch)
    overrides = ["train.lr=1e-3", "train.batch_size=4"]
    wavegen.fit(
        source / "other-prepared",
        tmp_path / "ft",
        recipe="tiny",
        steps=3,
        overrides=overrides,
        init_from=source / "model",
    )
    saved = ckpt.load(tmp_path / "ft" / "checkpoints" / "latest.pt")
    assert saved["config"]["train"]["lr"] == 1e-3 and saved["config"]["train"]["batch_size"] == 4
    assert same(seen[0][1], ckpt.load(source / "run" / "checkpoints" / "best.pt")["ema"])


@pytest.mark.parametrize(
    "overrides, recipe, phrase",
    [
        (
            ["model.cycles=2"],
            None,
            r"--set model.cycles=2: the model comes from --init-from .*model \(model.cycles = 1\)",
        ),
        (["model.residual_channels=8"], None, r"--set model.residual_channels=8: the model comes from"),
        (["model.weight_norm=false"], None, r"--set model.weight_norm=False: the model comes from"),
        ([], "default", r"recipe 'default' makes another model \(model.cycles = 3, the model's is 1\)"),
    ],
)
def test_a_change_to_the_models_shape_is_refused(source, tmp_path, overrides, recipe, phrase):
    with pytest.raises(ConfigError, match=phrase):
        wavegen.fit(
            source / "prepared", tmp_path / "new", recipe=recipe, overrides=overrides, init_from=source / "model"
        )
    assert not (tmp_path / "new").exists()


def test_a_run_that_resumes_refuses_init_from(source, tmp_path):
    with pytest.raises(ConfigError, match=r"--init-from .*model: run .*run has a checkpoint and resumes from it"):
        wavegen.fit(source / "prepared", source / "run", steps=8, init_from=source / "model")
    assert ckpt.load(source / "run" / "checkpoints" / "latest.pt")["step"] == 6  # untouched


def test_data_the_model_cannot_train_on_is_refused(source, tmp_path):
    config = wavegen.load_recipe("tiny")
    write_wav(tmp_path / "labelled" / "low" / "a.wav", tone(220, 1.0), 16000)
    write_wav(tmp_path / "labelled" / "high" / "b.wav", tone(660, 1.0), 16000)
    wavegen.prepare(tmp_path / "labelled", tmp_path / "labels", config.override("data.label_source=folders"))
    with pytest.raises(ConfigError, match=r"labels: the data has labels \[high, low\], no mels but the model in"):
        wavegen.fit(tmp_path / "labels", tmp_path / "new", init_from=source / "model")
    write_wav(tmp_path / "slow" / "a.wav", tone(220, 1.0, rate=8000), 8000)
    wavegen.prepare(tmp_path / "slow", tmp_path / "8k", wavegen.load_recipe("tiny").override("data.sample_rate=8000"))
    with pytest.raises(ConfigError, match=r"8k: prepared at 8000 Hz but the model in .* works at 16000 Hz"):
        wavegen.fit(tmp_path / "8k", tmp_path / "new", init_from=source / "model")
    with pytest.raises(wavegen.CheckpointError, match="nothing: no such run folder"):
        wavegen.fit(source / "prepared", tmp_path / "new", init_from=tmp_path / "nothing")
    assert not (tmp_path / "new").exists()


def test_a_conditioned_model_starts_a_run_on_data_prepared_the_same_way(tmp_path, monkeypatch):
    write_wav(tmp_path / "labelled" / "low" / "a.wav", tone(220, 2.0, rate=8000), 8000)
    write_wav(tmp_path / "labelled" / "high" / "b.wav", tone(660, 2.0, rate=8000), 8000)
    config = wavegen.load_recipe("tiny").override(
        *FAST, "data.sample_rate=8000", "data.label_source=folders", "data.mel_bands=8", "data.mel_hop=64"
    )
    config.override("data.mel_n_fft=256")
    wavegen.prepare(tmp_path / "labelled", tmp_path / "prepared", config)
    wavegen.fit(tmp_path / "prepared", tmp_path / "run", config, steps=3)
    seen = first_weights(monkeypatch)
    wavegen.fit(tmp_path / "prepared", tmp_path / "new", steps=2, init_from=tmp_path / "run")
    saved = ckpt.load(tmp_path / "new" / "checkpoints" / "latest.pt")
    assert saved["config"]["model"]["labels"] == ["high", "low"] and saved["config"]["model"]["mel_channels"] == 8
    assert same(seen[0][1], ckpt.load(tmp_path / "run" / "checkpoints" / "best.pt")["ema"])
