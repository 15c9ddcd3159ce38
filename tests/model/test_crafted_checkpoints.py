"""Crafted or damaged checkpoints and configs: every field is checked where it is read (one line
naming the file and the field), and a model's size is bounded and counted before anything of
that size is allocated."""

from __future__ import annotations

import time

import pytest

from wavegen.config import Config, ModelConfig, apply_overrides
from wavegen.errors import CheckpointError, ConfigError, OutOfMemory
from wavegen.model import checkpoint as ckpt
from wavegen.model import network
from wavegen.model.network import WaveNet
from wavegen.recipe import load_recipe


@pytest.fixture
def saved(tmp_path):
    """A real checkpoint of the tiny recipe's model, as training writes its plain fields."""
    config = load_recipe("tiny")
    model = WaveNet(config.model)
    path = tmp_path / "good.pt"
    payload = {"config": config.to_dict(), "model": model.state_dict(), "step": 40, "best_val_bits": 3.5}
    payload["val_history"] = [[20, 4.0], [40, 3.5]]
    ckpt.save(path, payload)
    return path, payload


BAD_FIELDS = [
    ("best_val_bits", "3.2"),
    ("best_val_bits", -1.0),
    ("best_val_bits", float("nan")),
    ("best_val_bits", [3.2]),
    ("step", "40"),
    ("step", -1),
    ("step", 4.5),
    ("step", True),
    ("val_history", "none"),
    ("val_history", [[20, "4.0"]]),
    ("val_history", [[20]]),
    ("init_from", 7),
    ("skipped_steps", -3),
    ("ema_updates", "many"),
    ("schedule", "warm"),
    ("model", {"input.weight": 3}),
    ("rng", {"torch": 1}),
]


@pytest.mark.parametrize("field, value", BAD_FIELDS)
def test_a_field_of_the_wrong_type_or_range_is_one_line_naming_it(tmp_path, saved, field, value):
    _, payload = saved
    crafted = tmp_path / "crafted.pt"
    ckpt.save(crafted, {**payload, field: value})
    with pytest.raises(CheckpointError) as caught:
        ckpt.describe_checkpoint(crafted)  # what `info` and `report` show
    message = str(caught.value)
    assert message.startswith(f"{crafted}: bad '{field}' in checkpoint: expected ") and "\n" not in message


def test_good_fields_pass_and_info_shows_them(saved):
    path, _ = saved
    facts = ckpt.describe_checkpoint(path)
    assert (facts["step"], facts["best_val_bits"]) == (40, 3.5)
    assert facts["config"] == load_recipe("tiny").to_dict()


def test_a_missing_key_is_said_in_words_not_as_a_python_exception(tmp_path, saved):
    _, payload = saved
    crafted = tmp_path / "nomodel.pt"
    ckpt.save(crafted, {k: v for k, v in payload.items() if k != "model"})
    with pytest.raises(CheckpointError, match=r"weights do not fit the model shape in its config \(no 'model' in it\)"):
        ckpt.load_model(crafted)
    assert ckpt.in_words(KeyError("rng")) == "no 'rng' in it"
    assert ckpt.in_words(IndexError()) == "damaged"


@pytest.mark.parametrize(
    "changes",
    [
        {"residual_channels": 2_000_000, "gate_channels": 2_000_000},  # the crafted file
        {"residual_channels": 4096, "gate_channels": 4096, "cycles": 64},  # each in range, too many as a whole
        {"layers_per_cycle": 40},
        {"kernel_size": 1000},
    ],
)
def test_a_crafted_shape_is_refused_before_anything_of_its_size_is_allocated(tmp_path, saved, changes):
    _, payload = saved
    config = {**payload["config"], "model": {**payload["config"]["model"], **changes}}
    crafted = tmp_path / "huge.pt"
    ckpt.save(crafted, {**payload, "config": config})
    started = time.perf_counter()
    with pytest.raises(CheckpointError, match=rf"^{crafted}: bad config in checkpoint \("):
        ckpt.load_model(crafted)
    assert time.perf_counter() - started < 5  # (building 2,000,000 channels took 4.5 GB and minutes)


@pytest.mark.parametrize(
    "override",
    [
        "model.residual_channels=2000000",
        "model.gate_channels=100000",
        "model.skip_channels=5000",
        "model.cycles=1000",
        "model.layers_per_cycle=30",
        "model.kernel_size=17",
        "model.cond_channels=9999",
        "train.batch_size=1000000",
        "train.segment_length=100000000",
        "train.accumulate=100000",
        "train.seed=-1",
        f"train.seed={2**64}",
    ],
)
def test_every_size_has_an_upper_bound(override):
    with pytest.raises(ConfigError, match=f"'{override.split('=')[0]}' must be in "):
        apply_overrides(Config(), [override])


def test_the_largest_seed_is_taken():
    assert apply_overrides(Config(), [f"train.seed={2**64 - 1}"]).train.seed == 2**64 - 1


@pytest.mark.parametrize(
    "shape",
    [
        {},
        {"cycles": 2, "layers_per_cycle": 3, "kernel_size": 3, "input_kernel_size": 4, "weight_norm": False},
        {"labels": ["a", "b", "c"], "gate_channels": 24},
        {"mel_channels": 20, "mel_hop": 64, "cond_channels": 16, "skip_channels": 40},
        {"labels": ["x"], "mel_channels": 8, "mel_hop": 100, "residual_channels": 7, "scale_sums": False},
    ],
)
def test_the_counted_parameters_are_the_built_models(shape):
    config = ModelConfig(**{**load_recipe("tiny").model.__dict__, **shape})
    assert network.parameter_count(config) == WaveNet(config).parameter_count()


def test_a_model_that_would_not_fit_in_memory_is_refused_before_it_is_built(monkeypatch):
    config = load_recipe("tiny").model
    count = network.parameter_count(config)
    monkeypatch.setattr(network, "available_memory", lambda: count * 4)  # less than building takes
    with pytest.raises(OutOfMemory, match=f"a model of {count:,} parameters .* needs about"):
        WaveNet(config)
    monkeypatch.setattr(network, "available_memory", lambda: None)  # unknown: built
    assert WaveNet(config).parameter_count() == count
