"""The learning benchmark and its yardstick, the field's standard WaveNet (``baseline``)."""

import json
import math

import pytest
import torch

from wavegen.audio.io import write_wav
from wavegen.bench.learning import parse_variant
from wavegen.config import ConfigError, ModelConfig
from wavegen.model.baseline import StandardWaveNet

from helpers import one_line_error, tone, wavegen

pytestmark = pytest.mark.slow  # (make test-fast leaves these out; make test runs them)

SHAPE = ModelConfig(cycles=2, layers_per_cycle=3, residual_channels=8, gate_channels=8, skip_channels=16)


def test_the_baseline_predicts_each_code_from_exactly_the_codes_before_it():
    torch.manual_seed(0)
    model = StandardWaveNet(SHAPE)
    rf = model.receptive_field
    assert rf == 1 + 2 * (1 + 2 + 4)  # the previous code, then each block's reach
    codes = torch.randint(0, 256, (1, 3 * rf))
    with torch.no_grad():
        before = model(codes)
        for j in (0, rf, 2 * rf + 3):
            changed = codes.clone()
            changed[0, j] = (changed[0, j] + 128) % 256
            moved = (model(changed) - before).abs().amax(dim=1)[0] > 0  # (T,)
            assert set(torch.nonzero(moved).flatten().tolist()) == set(range(j + 1, min(j + rf + 1, codes.shape[1])))


def test_the_baseline_is_the_field_standard_parameterisation():
    torch.manual_seed(0)
    model = StandardWaveNet(SHAPE)
    names = [name for name, _ in model.named_parameters()]
    convs = [n for n in names if n.endswith("original1")]  # weight norm's direction v, one per convolution
    assert len(convs) == 1 + 3 * len(model.blocks) + 2
    assert all(p.abs().max() == 0 for n, p in model.named_parameters() if n.endswith("bias"))
    v = model.blocks[0].conv.parametrizations.weight.original1  # Kaiming normal for ReLU: std √(2 / fan_in)
    assert v.std().item() == pytest.approx(math.sqrt(2 / (8 * 2)), rel=0.25)


@pytest.mark.parametrize(
    "text, name, overrides",
    [
        ("plain", "plain", []),
        ("default", "default", []),
        ("nonoise:train.input_noise=0", "nonoise", ["train.input_noise=0"]),
        ("x:train.lr=3e-4, model.weight_norm=false", "x", ["train.lr=3e-4", "model.weight_norm=false"]),
    ],
)
def test_variants_parse(text, name, overrides):
    variant = parse_variant(text)
    assert (variant.name, variant.overrides, variant.plain) == (name, overrides, name == "plain")


@pytest.mark.parametrize("text", ["", ":train.lr=1", "a b:train.lr=1", "x:train.lr", "plain:train.lr=1"])
def test_bad_variants_are_refused(text):
    with pytest.raises(ConfigError):
        parse_variant(text)


@pytest.fixture
def prepared(tmp_path):
    write_wav(tmp_path / "dataset" / "a.wav", tone(330, 4.0), 16000)
    write_wav(tmp_path / "dataset" / "b.wav", tone(880, 4.0, amplitude=0.3), 16000)
    wavegen("prepare", "dataset", "--recipe", "tiny", "--quiet", cwd=tmp_path)
    return tmp_path


def test_bench_learn_trains_and_scores_every_variant_at_every_mark(prepared):
    proc = wavegen(
        "bench",
        "learn",
        "prepared",
        "--recipe",
        "tiny",
        "--steps",
        "4",
        "--steps",
        "60",
        "--variant",
        "plain",
        "--variant",
        "default",
        "--variant",
        "fast:train.lr=0.01,train.warmup_steps=5",
        "--set",
        "train.batch_size=4",
        "--set",
        "train.segment_length=400",
        "--threads",
        "1",
        "--json",
        cwd=prepared,
    )
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(r["variant"], r["budget"], r["steps"]) for r in rows] == [
        (v, f"{n} steps", n) for v in ("plain", "default", "fast") for n in (4, 60)
    ]
    by = {(r["variant"], r["steps"]): r for r in rows}
    for r in rows:
        assert r["samples_per_s"] == pytest.approx(r["steps"] * 4 * 400 / r["train_s"], rel=0.05)
        assert 0 < r["val_bits"] < 8.5 and r["train_bits"] > 0
    for variant in ("plain", "default", "fast"):  # each learns: 60 steps on two tones beat 4
        assert by[variant, 60]["val_bits"] < by[variant, 4]["val_bits"] - 1.0, variant
    assert by["fast", 60]["settings"] == "train.lr=0.01,train.warmup_steps=5"
    assert "cpu:" in proc.stderr


def test_bench_learn_mistakes_are_one_line_errors(prepared):
    def refused(text, *args, data="prepared"):
        one_line_error(wavegen("bench", "learn", data, "--recipe", "tiny", *args, cwd=prepared, ok=False), text)

    refused("give a budget")
    refused("not both", "--steps", "3", "--minutes", "1")
    refused("unknown setting 'train.nope'", "--steps", "3", "--variant", "x:train.nope=1")
    refused("must differ", "--steps", "3", "--variant", "a", "--variant", "a")
    refused("no prepared data", "--steps", "3", data="elsewhere")
    # spelled as before subcommands: --learn DATA is learn DATA (the last --learn, as click took it)
    old = wavegen("bench", "--learn", "prepared", "--steps", "3", "--learn", "elsewhere", cwd=prepared, ok=False)
    one_line_error(old, "no prepared data")
    one_line_error(wavegen("bench", "--variant", "plain", cwd=prepared, ok=False), "option of `bench learn`")
