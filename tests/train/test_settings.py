"""A run's settings are final when ``resolve_config`` returns them: fitted to the prepared data
there, never changed afterwards, and the run's files read once."""

import copy
from pathlib import Path

import pytest
import tomli_w

from wavegen.audio.io import write_wav
from wavegen.data.prepare import prepare
from wavegen.errors import ConfigError
from wavegen.model import checkpoint as ckpt
from wavegen.recipe import load_recipe
from wavegen.run_config import load_toml, read_toml
from wavegen.train.loop import train
from wavegen.train.settings import resolve_config

from helpers import tone

FAST = [
    "train.steps=4",
    "train.batch_size=2",
    "train.segment_length=200",
    "train.val_every=4",
    "train.checkpoint_every=4",
    "train.log_every=2",
    "train.warmup_steps=1",
    "train.val_batches=1",
]


@pytest.fixture
def conditioned(tmp_path) -> Path:
    """Two label folders at 8 kHz with 8-band log-mels: a rate and conditioning that the tiny
    recipe does not say."""
    dataset = tmp_path / "labelled"
    write_wav(dataset / "low" / "a.wav", tone(220, 2.0, rate=8000), 8000)
    write_wav(dataset / "high" / "b.wav", tone(660, 2.0, rate=8000), 8000)
    data = load_recipe("tiny").data
    data.sample_rate, data.label_source, data.mel_bands, data.mel_hop, data.mel_n_fft = 8000, "folders", 8, 64, 256
    prepare(dataset, tmp_path / "prepared", data, progress=False)
    return tmp_path / "prepared"


def run_train(resolved, data, run):
    return train(
        resolved.config,
        data,
        run,
        device="cpu",
        progress=False,
        **resolved.found(),  # as the command passes them
    )


def test_the_resolved_config_is_fitted_to_the_data_and_train_leaves_it_as_it_is(conditioned, tmp_path, said):
    resolved = resolve_config(tmp_path / "run", conditioned, "tiny", FAST, None)
    config = resolved.config
    assert config.data.sample_rate == 8000 and config.data.label_source == "folders"
    assert config.model.labels == ["high", "low"] and (config.model.mel_channels, config.model.mel_hop) == (8, 64)
    assert (config.data.mel_bands, config.data.mel_hop, config.data.mel_n_fft) == (8, 64, 256)
    assert said == [
        "using the prepared data's rate, 8000 Hz (recipe said 16000)",
        "conditioning on 2 labels (high, low) and 8-band log-mels every 64 samples",
    ]
    before = copy.deepcopy(config)
    run_train(resolved, conditioned, tmp_path / "run")
    assert config == before  # nothing assigned to it after resolve_config
    assert sum("conditioning on" in line or "prepared data's rate" in line for line in said) == 2  # said once
    assert ckpt.read(tmp_path / "run" / "checkpoints" / "latest.pt").config == config
    assert load_toml(tmp_path / "run" / "config.toml") == config


def test_a_recipe_config_given_to_train_is_fitted_there_without_changing_it(conditioned, tmp_path, said):
    config = load_recipe("tiny").override(*FAST)
    before = copy.deepcopy(config)
    said.clear()
    train(config, conditioned, tmp_path / "run", device="cpu", progress=False)
    assert config == before
    assert "conditioning on 2 labels (high, low) and 8-band log-mels every 64 samples" in said
    fitted = ckpt.read(tmp_path / "run" / "checkpoints" / "latest.pt").config
    assert fitted == resolve_config(tmp_path / "other", conditioned, config, [], None).config


def test_resuming_reads_the_checkpoint_and_config_toml_once(conditioned, tmp_path, monkeypatch, said):
    run = tmp_path / "run"
    run_train(resolve_config(run, conditioned, "tiny", FAST, None), conditioned, run)
    reads = {"checkpoint": 0, "config": 0, "config.toml": 0}
    load, config_of, read_text = ckpt.load, ckpt.config_of, Path.read_text

    def counted_load(*args, **kwargs):
        reads["checkpoint"] += 1
        return load(*args, **kwargs)

    def counted_config_of(*args, **kwargs):
        reads["config"] += 1
        return config_of(*args, **kwargs)

    def counted_read_text(self, *args, **kwargs):
        reads["config.toml"] += self.name == "config.toml"
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(ckpt, "load", counted_load)
    monkeypatch.setattr(ckpt, "config_of", counted_config_of)
    monkeypatch.setattr(Path, "read_text", counted_read_text)
    said.clear()
    resolved = resolve_config(run, conditioned, None, [], 8)
    run_train(resolved, conditioned, run)
    assert any("resuming" in line and "step 4" in line for line in said)
    assert reads == {"checkpoint": 1, "config": 1, "config.toml": 1}


def test_a_resumed_run_refuses_data_at_another_rate_when_resolved(conditioned, tmp_path, tone_dataset):
    run = tmp_path / "run"
    run_train(resolve_config(run, conditioned, "tiny", FAST, None), conditioned, run)
    prepare(tone_dataset, tmp_path / "plain", load_recipe("tiny").data, progress=False)
    with pytest.raises(ConfigError, match=r"prepared at 16000 Hz but run .* is at 8000 Hz; prepare again with"):
        resolve_config(run, tmp_path / "plain", None, [], 8)


def test_a_run_saved_with_the_old_setting_names_resumes_as_it_was(conditioned, tmp_path):
    """A run saved before data.labels and data.mels were renamed data.label_source and
    data.mel_bands: its checkpoint and config.toml say the old names, and it resumes unchanged."""
    run = tmp_path / "run"
    first = resolve_config(run, conditioned, "tiny", FAST, None)
    run_train(first, conditioned, run)
    latest = run / "checkpoints" / "latest.pt"
    payload, raw = ckpt.load(latest), read_toml(run / "config.toml")
    for saved in (payload["config"], raw):
        saved["data"]["labels"], saved["data"]["mels"] = (
            saved["data"].pop("label_source"),
            saved["data"].pop("mel_bands"),
        )
    ckpt.save(latest, payload)
    (run / "config.toml").write_text(tomli_w.dumps(raw))
    resumed = resolve_config(run, conditioned, None, [], None)
    assert resumed.resuming and resumed.changes == [] and resumed.config == first.config
    assert resumed.config_file_current  # the old file says the same settings: it is left as written
