"""Which engine ``choose`` runs for a device and a number of streams: the GPU's policy is
checked here with stand-in engines and trial rates (no GPU needed), the trial itself on the CPU,
and the decision table (``plan``) row by row."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from wavegen.errors import ConfigError
from wavegen.generate import choice, trials
from wavegen.generate.choice import Candidate, make_engine, plan
from wavegen.generate.request import GenerationRequest

from helpers import random_model
from test_sampling import SHAPES

MODEL = random_model(SHAPES["k2"])


@dataclasses.dataclass
class Stand:
    name: str
    device: str
    precision: str = "fp32"


@pytest.fixture
def gpu(monkeypatch, said):
    """A machine with a GPU whose engines are stand-ins; returns the trial rates to set and
    what ``choose`` said (``said``)."""
    rates, built = {}, []
    rates["built"] = built  # the engines built, in order
    monkeypatch.setattr(choice, "resolve_device", lambda name: torch.device("cpu" if name == "cpu" else "cuda"))
    monkeypatch.setattr(choice, "native_available", lambda: rates.get("native available", True))
    monkeypatch.setattr(choice, "native_ready", lambda: rates.get("native built", True))

    def persistent(model, device, streams):
        built.append("persistent")
        return Stand("persistent", "cuda") if rates.get("gpu", 1) else None

    monkeypatch.setattr(choice, "_persistent", persistent)

    def build(name, model, device, precision="fp32"):
        built.append(name)
        return Stand(name, torch.device(device).type, precision)

    monkeypatch.setattr(choice, "build_engine", build)
    monkeypatch.setattr(choice.trials, "trial_rate", lambda engine, device, model, streams: rates[engine.name])
    return rates, said


def picked(said, engine="auto", device="auto", streams=1, precision="auto"):
    made, dev = choice.choose(GenerationRequest(engine=engine, device=device, precision=precision), streams, MODEL)
    assert made.device == dev.type
    return made.name, made.precision


@pytest.mark.parametrize("streams", [1, 3, 8])
def test_a_trial_picks_the_faster_of_the_gpus_persistent_and_the_cpus_native_engine(gpu, streams):
    rates, said = gpu
    rates.update(persistent=50_000.0 * streams, native=30_000.0)
    assert picked(said, streams=streams) == ("persistent", "fp32")
    trials.path().unlink()  # forget it: time them again
    rates.update(native=60_000.0 * streams)
    assert picked(said, streams=streams) == ("native", "int8")
    plural = "s" if streams > 1 else ""
    assert said[-1] == (
        f"engine trial, {streams} stream{plural}: persistent on cuda {50_000 * streams:,} samples/s, "
        f"native on cpu {60_000 * streams:,} samples/s; using native"
    )


def test_without_a_trial_where_one_engine_alone_can_run(gpu):
    rates, said = gpu
    assert picked(said, device="cuda") == ("persistent", "fp32")  # the GPU was asked for
    assert picked(said, streams=12) == ("native", "int8")  # past the persistent engine's streams
    assert picked(said, device="cuda", streams=12) == ("cuda-graph", "fp32")
    assert picked(said, streams=64) == ("cuda-graph", "fp32")  # a GPU's batching
    rates["gpu"] = 0  # the persistent engine cannot run (its reason is logged by _persistent)
    assert picked(said) == ("native", "int8")
    assert picked(said, device="cuda") == ("cuda-graph", "fp32")
    rates.update(gpu=1, **{"native available": False})
    assert picked(said) == ("persistent", "fp32")
    assert said == []  # no trial ran


def test_a_lower_precision_never_goes_to_the_gpu(gpu):
    rates, said = gpu
    assert picked(said, precision="int8") == ("native", "int8")
    assert picked(said, engine="auto", device="auto", streams=64, precision="bf16") == ("native", "bf16")


def test_the_persistent_engine_refuses_a_lower_precision():
    with pytest.raises(ConfigError, match="not the 'persistent' engine"):
        make_engine("persistent", random_model(SHAPES["k2"]), "cpu", precision="int8")


@pytest.mark.parametrize("conditioned", [False, True])
def test_the_trial_generates_and_rates_an_engine(conditioned):
    config = SHAPES["k2"]
    if conditioned:
        config = dataclasses.replace(config, labels=["a", "b"], mel_channels=5, mel_hop=16, cond_channels=8)
    model = random_model(config)
    rate = choice.trials.trial_rate(make_engine("torch", model), torch.device("cpu"), model, 2)
    assert 100 < rate < 1e8


def test_a_persistent_engine_that_fails_to_compile_or_run_is_left_for_the_others(monkeypatch, said):
    pytest.importorskip("triton")
    from wavegen.generate import persistent

    class Failing:
        def __init__(self, model, device):
            raise RuntimeError("PTX assembly failed:\nptxas error: Entry function uses too much shared data")

    monkeypatch.setattr(persistent, "PersistentEngine", Failing)
    said.clear()
    assert choice._persistent(random_model(SHAPES["k2"]), torch.device("cuda"), 1) is None
    assert said == [
        "compiling the persistent engine's kernel for this GPU and model (once: it is cached)",
        "persistent engine unavailable: ptxas error: Entry function uses too much shared data",
    ]


N, P, G, T = (
    Candidate(*c)
    for c in [
        ("native", "cpu", "int8"),
        ("persistent", "cuda", "fp32"),
        ("cuda-graph", "cuda", "fp32"),
        ("torch", "cuda", "fp32"),
    ]
)
CPU_TORCH = Candidate("torch", "cpu", "fp32")
NATIVE32 = Candidate("native", "cpu", "fp32")


@pytest.mark.parametrize(
    "asked, gpu, expected",
    [
        # (engine, device, precision, streams), a GPU present, (candidates, fallbacks, preferred)
        (("auto", "auto", "auto", 1), False, ((N,), (CPU_TORCH,), 0)),
        (("auto", "cpu", "fp32", 64), True, ((NATIVE32,), (CPU_TORCH,), 0)),
        (("auto", "auto", "auto", 1), True, ((P, N), (G, T), 1)),
        (("auto", "auto", "fp32", 8), True, ((P, NATIVE32), (G, T), 1)),
        (("auto", "auto", "auto", 9), True, ((N,), (G, T), 0)),
        (("auto", "auto", "auto", 16), True, ((N,), (G, T), 0)),
        (("auto", "auto", "auto", 17), True, ((G,), (T,), 0)),
        (("auto", "cuda", "auto", 8), True, ((P,), (G, T), 0)),
        (("auto", "cuda", "auto", 9), True, ((G,), (T,), 0)),
        (("auto", "auto", "bf16", 64), True, ((Candidate("native", "cpu", "bf16"),), (), 0)),
        (("native", "auto", "auto", 1), True, ((N,), (), 0)),
        (("native", "cpu", "fp32", 1), False, ((NATIVE32,), (), 0)),
        (("torch", "auto", "auto", 1), True, ((T,), (), 0)),
        (("reference", "cpu", "auto", 3), False, ((Candidate("reference", "cpu", "fp32"),), (), 0)),
        (("persistent", "cuda", "fp32", 100), True, ((Candidate("persistent", "cuda", "fp32"),), (), 0)),
    ],
)
def test_the_decision_table_row_by_row(asked, gpu, expected):
    engine, device, precision, streams = asked
    decided = plan(GenerationRequest(engine=engine, device=device, precision=precision), streams, gpu)
    assert (decided.candidates, decided.fallbacks, decided.preferred) == expected


@pytest.mark.parametrize(
    "asked, error, message",
    [
        (("torch", "cpu", "int8"), ConfigError, "runs in the native engine only, not the 'torch' engine"),
        (("auto", "cuda", "bf16"), ConfigError, r"runs in the native engine on the CPU \(use --device cpu\)"),
        (("native", "cuda", "fp32"), ConfigError, "--engine native runs on the CPU"),
        (("auto", "cpu", "fp16"), ConfigError, "unknown precision 'fp16'"),
        (("warp", "cpu", "fp32"), ConfigError, "unknown engine 'warp'"),
    ],
)
def test_the_decision_table_refuses_what_cannot_run(asked, error, message):
    for gpu in (False, True):
        with pytest.raises(error, match=message):
            plan(GenerationRequest(engine=asked[0], device=asked[1], precision=asked[2]), 1, gpu)


def test_a_trial_is_remembered_per_machine_model_and_streams_and_its_winner_alone_is_built(gpu):
    rates, said = gpu
    built = rates["built"]
    rates.update(persistent=50_000.0, native=30_000.0)
    assert picked(said) == ("persistent", "fp32")
    assert built == ["persistent", "native"] and said[-1].startswith("engine trial, 1 stream:")
    rates.update(native=90_000.0)  # the machine is the same: the earlier trial still decides
    built.clear()
    assert picked(said) == ("persistent", "fp32")
    assert built == ["persistent"]  # no native engine built, no trial
    assert said[-1] == (
        "engine: persistent on cuda, the faster in this machine's trial "
        "(persistent on cuda 50,000, native on cpu 30,000 samples/s)"
    )
    built.clear()
    assert picked(said, streams=2) == ("native", "int8")  # another stream count: a trial of its own
    assert built == ["persistent", "native"]
    other = random_model(dataclasses.replace(SHAPES["k2"], residual_channels=12))
    said.clear()
    choice.choose(GenerationRequest(), 1, other)  # another model shape: timed too
    assert said[-1].startswith("engine trial, 1 stream:") and said[-1].endswith("using native")


def test_a_remembered_winner_that_no_longer_runs_leaves_the_others(gpu):
    rates, said = gpu
    rates.update(persistent=50_000.0, native=30_000.0)
    picked(said)
    rates["gpu"] = 0  # e.g. a driver update broke the kernel's compile
    assert picked(said) == ("native", "int8")


def test_without_a_trial_to_recall_and_no_native_build_the_rule_decides_and_nothing_is_compiled_to_time(gpu):
    rates, said = gpu
    rates.update(persistent=50_000.0, native=90_000.0, **{"native built": False})
    assert picked(said) == ("persistent", "fp32")
    assert rates["built"] == ["persistent"]
    assert said == ["engine: persistent on cuda by the rule (no trial: the native CPU engine is not built here)"]
    rates["gpu"] = 0  # the rule's engine cannot run: the native engine is built after all
    assert picked(said) == ("native", "int8")
    rates.update(gpu=1, **{"native built": True})  # built now (e.g. by training's monitor): timed
    assert picked(said) == ("native", "int8") and said[-1].endswith("using native")


@pytest.mark.parametrize("damage", ["garbage", "a list", "unwritable"])
def test_a_damaged_or_unwritable_trial_file_costs_only_a_trial(gpu, damage, tmp_path, monkeypatch):
    rates, said = gpu
    rates.update(persistent=50_000.0, native=30_000.0)
    where = trials.path()
    if damage == "unwritable":
        monkeypatch.setattr(trials, "path", lambda: tmp_path / "a file" / trials.FILE)
        (tmp_path / "a file").write_text("not a folder")
    else:
        where.write_text("{not json" if damage == "garbage" else "[1, 2]")
    for _ in range(2):
        assert picked(said) == ("persistent", "fp32")
    timed = [line for line in said if line.startswith("engine trial")]
    assert len(timed) == (2 if damage == "unwritable" else 1)  # remembered once the file is rewritten


def test_the_first_compile_of_a_persistent_kernel_is_announced_once(monkeypatch, said):
    pytest.importorskip("triton")

    class Compiles:
        def __init__(self, model, device):
            self.model = model

    monkeypatch.setattr(choice, "build_engine", lambda name, model, device: Compiles(model, device))
    monkeypatch.setattr(choice, "generate", lambda *args, **kwargs: None)
    said.clear()
    for _ in range(2):
        assert isinstance(choice._persistent(MODEL, torch.device("cuda"), 1), Compiles)
    assert said == ["compiling the persistent engine's kernel for this GPU and model (once: it is cached)"]
    choice._persistent(random_model(SHAPES["odd"]), torch.device("cuda"), 1)
    assert len(said) == 2  # another model: another kernel
