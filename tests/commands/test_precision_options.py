"""``--precision`` on synth, vocode, eval and bench, run in this process (click's runner): the
choices, the one-line refusals, and eval's report at a lower precision."""

from __future__ import annotations

import json

import pytest

from wavegen.audio.io import write_wav
from wavegen.config import apply_overrides
from wavegen.data.prepare import prepare
from wavegen.generate.quantized import PRECISIONS
from wavegen.model import checkpoint as ckpt
from wavegen.recipe import load_recipe

from helpers import random_model, run_in_process, tone

MELS = ["data.mels=8", "model.mel_channels=8", "model.mel_hop=256"]  # data.mels: the old name of data.mel_bands


run = run_in_process  # wavegen ARGS in this process: (exit status, stdout, stderr)


def error_line(stderr: str) -> str:
    """The one ``Error:`` line of a refused command (and no traceback)."""
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, stderr
    return errors[0]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A tiny model and a tiny vocoder (random weights) saved as checkpoints, a recording, and
    prepared tones with a validation part, with and without mel features."""
    root = tmp_path_factory.mktemp("precision")
    write_wav(root / "dataset" / "a.wav", tone(440, 2.0), 16000)
    write_wav(root / "input.wav", tone(330, 0.05), 16000)
    tiny = load_recipe("tiny")
    prepare(root / "dataset", root / "prepared", tiny.data, progress=False)
    ckpt.save(root / "tiny.pt", {"config": tiny.to_dict(), "model": random_model(tiny.model).state_dict(), "step": 3})
    voc = apply_overrides(load_recipe("tiny"), MELS)
    prepare(root / "dataset", root / "prepmel", voc.data, progress=False)
    ckpt.save(root / "voc.pt", {"config": voc.to_dict(), "model": random_model(voc.model).state_dict(), "step": 3})
    return root


def test_the_cli_offers_the_precisions_the_engines_have():
    from wavegen.commands.common import PRECISIONS as OFFERED

    assert OFFERED == PRECISIONS


@pytest.mark.parametrize(
    "args, choices",
    [
        (["synth", "--checkpoint", "tiny.pt"], "'auto', 'fp32', 'bf16', 'int8'"),
        (["vocode", "input.wav", "--checkpoint", "voc.pt"], "'auto', 'fp32', 'bf16', 'int8'"),
        (["eval", "--checkpoint", "tiny.pt", "--data", "prepared"], "'fp32', 'bf16', 'int8'"),  # what it scores
        (["bench", "sample", "--recipe", "tiny"], "'fp32', 'bf16', 'int8'"),
        (["bench", "--recipe", "tiny"], "'fp32', 'bf16', 'int8'"),  # no subcommand: sample
    ],
)
def test_an_unknown_precision_is_a_usage_error(project, args, choices):
    status, _, stderr = run(*args, "--precision", "fp16", cwd=project)
    assert status == 2 and f"Invalid value for '--precision': 'fp16' is not one of {choices}" in stderr


@pytest.mark.parametrize(
    "args, phrase",
    [
        (["synth", "--checkpoint", "tiny.pt", "--engine", "torch", "--precision", "int8"], "not the 'torch' engine"),
        (["synth", "--checkpoint", "tiny.pt", "--engine", "reference", "--precision", "bf16"], "not the 'reference'"),
        (["vocode", "input.wav", "--checkpoint", "voc.pt", "--engine", "torch", "--precision", "bf16"], "'torch'"),
    ],
)
def test_a_lower_precision_outside_the_native_engine_is_a_one_line_error(project, args, phrase, tmp_path):
    status, _, stderr = run(*args, "--out", str(tmp_path / "out"), "--quiet", cwd=project)
    line = error_line(stderr)
    assert status == 1 and line.startswith("Error: --precision ") and "runs in the native engine only" in line
    assert phrase in line
    assert not (tmp_path / "out").exists()  # refused before anything was written


@pytest.mark.parametrize("command", ["synth", "vocode"])
def test_synth_and_vocode_help_say_what_a_precision_trades(project, command):
    _, stdout, _ = run(command, "--help", cwd=project)
    text = " ".join(stdout.split())
    assert "--precision [auto|fp32|bf16|int8]" in text and "[default: auto]" in text
    assert "auto is int8 in the native CPU engine" in text and "fp32 is the network as trained." in text


def test_eval_scores_the_network_at_a_precision(project):
    reports = {}
    for precision in ("fp32", "bf16", "int8"):
        status, stdout, stderr = run(
            "eval", "--checkpoint", "tiny.pt", "--precision", precision, "--json", "--quiet", cwd=project
        )
        assert status == 0, stderr
        reports[precision] = json.loads(stdout)
        assert reports[precision]["precision"] == precision
        assert f"bits/sample ({precision}) over" in stderr
    fp32 = reports["fp32"]["val_bits"]
    for precision in ("bf16", "int8"):  # other weights: another network, so another score, yet close to fp32's
        bits = reports[precision]["val_bits"]
        assert bits != fp32 and abs(bits - fp32) < 0.02 * fp32, (precision, bits, fp32)
        assert reports[precision]["val_seconds"] == reports["fp32"]["val_seconds"] > 0


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_eval_resynthesises_a_vocoders_validation_at_the_precision(project, recorded_native, precision):
    status, stdout, stderr = run(
        "eval", "--checkpoint", "voc.pt", "--data", "prepmel", "--precision", precision, "--seconds", "0.05",
        "--files", "1", "--json", "--quiet",
        cwd=project,
    )  # fmt: skip
    assert status == 0, stderr
    report = json.loads(stdout)
    assert report["precision"] == precision and report["val_bits"] > 0 and len(report["resynthesised"]) == 1
    assert f"bits/sample ({precision}) over" in stderr
    assert recorded_native == [("cpu", precision)]  # the resynthesis ran in the native engine at that precision


@pytest.mark.parametrize(
    "args, phrase",
    [
        (["train"], "--precision is an option of `bench sample` and `bench stream`, not of `bench train`"),
        (
            ["learn", "prepared", "--steps", "1"],
            "--precision is an option of `bench sample` and `bench stream`, not of `bench learn`",
        ),
        (
            ["--train"],
            "--precision is an option of `bench sample` and `bench stream`, not of `bench train`",
        ),  # the older spelling
    ],
)
def test_bench_precision_is_for_sampling(project, args, phrase):
    status, _, stderr = run("bench", *args, "--recipe", "tiny", "--precision", "bf16", cwd=project)
    assert status == 2 and phrase in error_line(stderr)


def test_bench_says_the_machine_first_and_each_rows_precision(project):
    status, stdout, stderr = run(
        "bench", "sample", "--recipe", "tiny", "--engine", "torch", "--precision", "fp32", "--precision", "bf16",
        "--batch", "1", "--seconds", "0.1", "--repeats", "1", "--threads", "1", "--json", "--quiet",
        cwd=project,
    )  # fmt: skip
    assert status == 0, stderr
    machine, *rows = [json.loads(line) for line in stdout.splitlines()]
    assert machine["sgemm_gflops"] > 0 and machine["threads"] == 1 and machine["cpu"]
    assert [(r["engine"], r["precision"]) for r in rows] == [("torch", "fp32")]  # bf16 is the native engine's
    lines = stderr.splitlines()
    assert lines[0].startswith("cpu: ") and "fp32 matmul peak" in lines[0] and "(torch.mm 2048², 1 thread)" in lines[0]
    assert "--precision bf16: the native engine's alone; torch runs at fp32" in lines


@pytest.mark.parametrize(
    "args, precision",
    [
        ([], "int8"),
        (["--engine", "native"], "int8"),
        (["--engine", "torch"], "fp32"),
        (["--precision", "fp32"], "fp32"),
    ],
)
def test_synth_samples_at_int8_by_default_where_the_native_engine_runs(project, recorded_native, args, precision):
    out = project / f"out-{'-'.join(args) or 'default'}"
    status, _, stderr = run(
        "synth", "--checkpoint", "tiny.pt", "--seconds", "0.05", "--out", str(out), *args, cwd=project
    )
    assert status == 0, stderr
    native = "--engine" not in args or "native" in args
    expected = (
        f"'native' engine{' (int8)' if precision == 'int8' else ''} on cpu" if native else "'torch' engine on cpu"
    )
    assert expected in stderr
    (meta,) = [json.loads(p.read_text()) for p in out.glob("*.json")]
    assert meta["precision"] == precision
    assert recorded_native == ([("cpu", precision)] if native else [])
