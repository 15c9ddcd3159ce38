"""``wavegen export``: a folder of the generating weights, the config and a model card, which
loads back as the same model everywhere a checkpoint is taken, and refuses what does not fit."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch

import wavegen
from wavegen.errors import CheckpointError, ConfigError
from wavegen.model import checkpoint as ckpt
from wavegen.model.export import export_model
from wavegen.runs import pick_checkpoint

from helpers import tone


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny run trained for a few steps (with a moving average, as the tiny recipe keeps)."""
    from wavegen.audio.io import write_wav

    folder = tmp_path_factory.mktemp("export")
    write_wav(folder / "tones" / "a.wav", tone(440, 2.0), 16000)
    config = wavegen.load_recipe("tiny").override("train.val_every=3", "train.checkpoint_every=3")
    wavegen.prepare(folder / "tones", folder / "prepared", config)
    wavegen.fit(folder / "prepared", folder / "run", config, steps=6)
    return folder


def test_an_export_generates_exactly_what_its_checkpoint_generates(trained, tmp_path):
    best = trained / "run" / "checkpoints" / "best.pt"
    result = export_model(best, tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["README.md", "config.json", "model.safetensors"]
    for engine, seed in (("torch", 3), ("reference", 11)):
        ours = wavegen.load(tmp_path / "model").generate(seconds=0.05, n=2, seed=seed, engine=engine, device="cpu")
        theirs = wavegen.load(best).generate(seconds=0.05, n=2, seed=seed, engine=engine, device="cpu")
        np.testing.assert_array_equal(ours.audio, theirs.audio)
    # the moving average, not the trained weights; bit for bit
    saved = ckpt.load(best)
    weights = safetensors.torch.load_file(tmp_path / "model" / "model.safetensors")
    assert "ema" in saved and weights.keys() == saved["ema"].keys()
    assert all(torch.equal(weights[k], saved["ema"][k]) for k in weights)
    assert any(not torch.equal(saved["ema"][k], saved["model"][k]) for k in weights)
    assert json.loads((tmp_path / "model" / "config.json").read_text()) == saved["config"]
    # much smaller: no optimizer moments, trained copy, RNG or schedule
    assert result.bytes < 0.3 * os.path.getsize(best) and result.source_bytes == os.path.getsize(best)


def test_the_folder_reads_as_the_checkpoint_it_came_from(trained, tmp_path):
    best = trained / "run" / "checkpoints" / "best.pt"
    export_model(best, tmp_path / "model")
    folder, saved = ckpt.describe_checkpoint(tmp_path / "model"), ckpt.describe_checkpoint(best)
    for key in ("step", "best_val_bits", "parameters", "receptive_field_samples", "weights", "labels", "config"):
        assert folder[key] == saved[key], key
    assert ckpt.read(tmp_path / "model").config == ckpt.read(best).config
    model = wavegen.load(tmp_path / "model")  # as a run folder would be given
    assert model.checkpoint == tmp_path / "model" and model.step == saved["step"]
    assert pick_checkpoint(checkpoint=tmp_path / "model") == tmp_path / "model"
    again = export_model(tmp_path / "model", tmp_path / "model")  # an earlier export is replaced
    assert again.bytes == again.source_bytes


def test_the_model_card_says_what_the_model_is_and_how_to_use_it(trained, tmp_path):
    best = pick_checkpoint(run=trained / "run")
    export_model(best, tmp_path / "tones-model")
    card = (tmp_path / "tones-model" / "README.md").read_text()
    facts = ckpt.describe_checkpoint(best)
    for said in (
        "16000 Hz",
        f"{facts['parameters']:,}",
        "129 samples (8.06 ms)",
        "1 cycle × 7 gated layers",
        "none (unconditional)",
        "moving average",
        f"step {facts['step']} of 6",
        f"{facts['best_val_bits']:.4f} bits/sample",
        "5 % of every file held out",
        "wavegen synth --checkpoint tones-model/",
        'wavegen.load("tones-model/")',
        "wavegen train --init-from tones-model/",
    ):
        assert said in card, said


@pytest.mark.parametrize(
    "key, value",
    [("residual_channels", 32), ("layers_per_cycle", 6), ("cycles", 2), ("skip_channels", 8)],
)
def test_a_config_that_does_not_fit_the_weights_is_one_line_naming_both(trained, tmp_path, key, value):
    export_model(trained / "run" / "checkpoints" / "best.pt", tmp_path / "model")
    path = tmp_path / "model" / "config.json"
    config = json.loads(path.read_text())
    config["model"][key] = value
    path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as caught:
        wavegen.load(tmp_path / "model")
    message = str(caught.value)
    assert "\n" not in message and "model.safetensors" in message and "config.json" in message
    assert "do not fit the model shape" in message


def test_broken_or_foreign_folders_are_one_line_errors(trained, tmp_path):
    model = tmp_path / "model"
    export_model(trained / "run" / "checkpoints" / "best.pt", model)
    weights = (model / "model.safetensors").read_bytes()
    (model / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors: not a readable safetensors file"):
        wavegen.load(model)
    safetensors.torch.save_file({"w": torch.zeros(2)}, model / "model.safetensors")  # someone else's
    with pytest.raises(CheckpointError, match="not a wavegen model"):
        wavegen.load(model)
    (model / "model.safetensors").write_bytes(weights)
    (model / "config.json").write_text("{ not json")
    with pytest.raises(CheckpointError, match="config.json: not readable JSON"):
        wavegen.load(model)
    (model / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json: not found"):
        wavegen.load(model)


def test_export_refuses_a_folder_that_is_not_an_earlier_export(trained, tmp_path):
    best = trained / "run" / "checkpoints" / "best.pt"
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="busy: not empty and not an earlier export .it holds notes.txt"):
        export_model(best, tmp_path / "busy")
    assert sorted(p.name for p in (tmp_path / "busy").iterdir()) == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="exists and is not a folder"):
        export_model(best, tmp_path / "file")
    with pytest.raises(CheckpointError):  # nothing to export: no folder left behind
        export_model(tmp_path / "missing.pt", tmp_path / "new")
    assert not (tmp_path / "new").exists()
