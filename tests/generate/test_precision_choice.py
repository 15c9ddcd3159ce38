"""Sampling at a lower precision, as the engines, synth, vocode and the API ask for it: bf16 and
int8 run in the native engine on the CPU only, anything else is a one-line refusal.
``recorded_native`` (conftest.py) records what each native engine is built with."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import wavegen
from wavegen.audio.mulaw import decode
from wavegen.config import apply_overrides
from wavegen.errors import ConfigError
from wavegen.generate import choice
from wavegen.generate.choice import choose, make_engine
from wavegen.generate.engines import generate
from wavegen.generate.quantized import at_precision
from wavegen.generate.reference import ReferenceEngine
from wavegen.generate.request import GenerationRequest
from wavegen.model import checkpoint as ckpt
from wavegen.recipe import load_recipe

from helpers import random_model

TINY = load_recipe("tiny")


def test_make_engine_gives_the_precision_to_the_native_engine(recorded_native):
    model = random_model(TINY.model)
    for name in ("auto", "native"):
        engine = make_engine(name, model, precision="bf16")
        assert (engine.name, engine.precision) == ("native", "bf16")
    assert make_engine("auto", model).precision == "fp32"
    assert recorded_native == [("cpu", "bf16"), ("cpu", "bf16"), ("cpu", "fp32")]
    # what it computes is the bf16 network: not the fp32 one, but close to it
    codes = torch.randint(0, 256, (1, 200), generator=torch.Generator().manual_seed(1))
    engine, ref16, ref32 = (
        make_engine("auto", model, precision="bf16"),
        ReferenceEngine(at_precision(model, "bf16")),
        ReferenceEngine(model),
    )
    worst16 = worst32 = 0.0
    for each in (engine, ref16, ref32):
        each.reset(1)
    for n in range(codes.shape[1]):
        got = engine.logits()
        worst16 = max(worst16, (got - ref16.logits()).abs().max().item())
        worst32 = max(worst32, (got - ref32.logits()).abs().max().item())
        for each in (engine, ref16, ref32):
            each.append(codes[:, n])
    assert worst16 < 1e-4 < worst32 < 1.0


@pytest.mark.parametrize("name", ["torch", "reference", "cuda-graph"])
def test_a_lower_precision_in_another_engine_is_refused(name):
    model = random_model(TINY.model)
    with pytest.raises(
        ConfigError, match=rf"^--precision int8 runs in the native engine only, not the '{name}' engine"
    ):
        make_engine(name, model, precision="int8")
    assert make_engine(name if name != "cuda-graph" else "torch", model, precision="fp32").name != "native"


def test_a_lower_precision_on_a_gpu_or_an_unknown_one_is_refused():
    model = random_model(TINY.model)
    for name in ("auto", "native"):
        with pytest.raises(
            ConfigError, match=r"^--precision bf16 runs in the native engine on the CPU \(use --device cpu\)$"
        ):
            make_engine(name, model, "cuda", precision="bf16")  # (refused before any GPU is touched)
    with pytest.raises(ConfigError, match=r"^unknown precision 'fp16' \(choose from auto, fp32, bf16, int8\)$"):
        make_engine("auto", model, precision="fp16")
    with pytest.raises(ConfigError, match="unknown engine 'warp'"):
        make_engine("warp", model, precision="bf16")


def test_a_lower_precision_without_the_native_engine_says_why_and_falls_back_to_nothing(monkeypatch, tmp_path, said):
    from wavegen.generate import native

    monkeypatch.setattr(native.abi, "_loaded", {})
    monkeypatch.setenv("WAVEGEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CXX", "no-such-compiler")
    said.clear()
    notices = said
    with pytest.raises(native.NativeUnavailable, match=r"^--precision int8: native engine unavailable: \S"):
        make_engine("auto", random_model(TINY.model), precision="int8")
    assert notices == []  # no fallback to the torch engine: it would compute something else


def test_auto_precision_is_int8_in_the_native_engine_and_fp32_in_the_others(
    recorded_native, monkeypatch, tmp_path, said
):
    model = random_model(TINY.model)
    assert make_engine("auto", model, "cpu", precision="auto").precision == "int8"
    assert make_engine("native", model, "cpu", precision="auto").precision == "int8"
    for name in ("torch", "reference"):
        made = make_engine(name, model, "cpu", precision="auto")
        assert made.name == name and made.precision == "fp32"
    assert recorded_native == [("cpu", "int8"), ("cpu", "int8")]
    # Where the native engine cannot be built, auto falls back to the torch engine at fp32, saying why.
    from wavegen.generate import native

    monkeypatch.setattr(native.abi, "_loaded", {})
    monkeypatch.setattr(choice, "_reported", set())  # the notice is given once per process
    monkeypatch.setenv("WAVEGEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CXX", "no-such-compiler")
    said.clear()
    notices = said
    made = make_engine("auto", model, "cpu", precision="auto")
    assert (made.name, made.precision) == ("torch", "fp32")
    assert notices == ["native engine unavailable: CXX=no-such-compiler not found; using the 'torch' engine"]
    with pytest.raises(native.NativeUnavailable, match="native engine unavailable: CXX=no-such-compiler"):
        make_engine("native", model, "cpu", precision="auto")


def test_choose_runs_a_lower_precision_on_the_cpu_even_with_a_gpu(recorded_native, monkeypatch):
    monkeypatch.setattr(choice, "resolve_device", lambda name: torch.device("cuda" if name != "cpu" else "cpu"))
    model = random_model(TINY.model)
    engine, device = choose(
        GenerationRequest(engine="auto", device="auto", precision="int8"), 64, model
    )  # many streams: a GPU's, at fp32
    assert (engine.name, engine.precision, device.type) == ("native", "int8", "cpu")
    engine, device = choose(GenerationRequest(engine="native", device="auto", precision="bf16"), 1, model)
    assert (engine.precision, device.type) == ("bf16", "cpu")
    with pytest.raises(ConfigError, match="use --device cpu"):
        choose(GenerationRequest(engine="auto", device="cuda", precision="bf16"), 1, model)
    assert recorded_native == [("cpu", "int8"), ("cpu", "bf16")]


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "model.pt"
    ckpt.save(path, {"config": TINY.to_dict(), "model": random_model(TINY.model).state_dict(), "step": 7})
    return path


def test_synth_records_the_precision_in_its_message_and_metadata(recorded_native, checkpoint, tmp_path, said):
    from wavegen.synthesis.synth import synthesize

    said.clear()
    result = synthesize(checkpoint, tmp_path / "out", seconds=0.01, precision="bf16", progress=False)
    assert result.precision == "bf16" and recorded_native == [("cpu", "bf16")]
    assert any("with the 'native' engine (bf16) on cpu" in line for line in said), said
    meta = json.loads(result.files[0].with_suffix(".json").read_text())
    assert (meta["engine"], meta["precision"], meta["device"]) == ("native", "bf16", "cpu")
    plain = synthesize(checkpoint, tmp_path / "out32", seconds=0.01, engine="torch", progress=False)
    assert json.loads(plain.files[0].with_suffix(".json").read_text())["precision"] == "fp32"
    assert any("with the 'torch' engine on cpu" in line for line in said), said  # fp32 says nothing more
    with pytest.raises(ConfigError, match="runs in the native engine only"):
        synthesize(checkpoint, tmp_path / "no", seconds=0.01, engine="reference", precision="int8", progress=False)
    assert not (tmp_path / "no").exists()


def test_the_api_generates_at_a_precision(recorded_native, checkpoint):
    model = wavegen.load(checkpoint)
    made = model.generate(seconds=0.01, seed=4, precision="bf16", device="auto")
    assert (made.engine, made.precision) == ("native", "bf16")
    # the bf16 network's codes, drawn by the one sampling definition
    expected = generate(ReferenceEngine(at_precision(model.network, "bf16")), 160, [4])
    np.testing.assert_array_equal(made.audio, decode(expected).numpy())
    with pytest.raises(ConfigError, match="runs in the native engine only"):
        model.generate(seconds=0.01, engine="torch", precision="int8")


def test_resynthesis_at_a_precision(recorded_native):
    from wavegen.generate.resynthesis import resynthesize

    config = apply_overrides(load_recipe("tiny"), ["data.mel_bands=8", "model.mel_channels=8", "model.mel_hop=256"])
    model = random_model(config.model)
    features = [np.full((3, 8), -4.0, np.float32)]
    result = resynthesize(model, features, [700], engine="auto", precision="int8", progress=False)
    assert (result.engine, result.precision, result.device) == ("native", "int8", "cpu")
    assert result.audio[0].shape == (700,)
    with pytest.raises(ConfigError, match="runs in the native engine only"):
        resynthesize(model, features, [700], engine="torch", precision="bf16", progress=False)
