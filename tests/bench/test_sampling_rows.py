"""The sampling benchmark's rows: the native engine at each precision, its logits against the
fp32 reference and the reference at its precision, its arithmetic rate; an engine that cannot
run is a row that says why."""

from __future__ import annotations

import pytest

from wavegen.bench import sampling as bench
from wavegen.bench.machine import flops_per_sample
from wavegen.config import ModelConfig

from helpers import native_or_skip, random_model

SMALL = ModelConfig(cycles=2, layers_per_cycle=5, residual_channels=16, gate_channels=16, skip_channels=32)


def test_bench_rows_at_each_precision(recorded_native):
    rows = list(
        bench.run(
            SMALL,
            ["native", "torch", "peer"],
            [2],
            seconds=0.05,
            repeats=1,
            precisions=["fp32", "bf16"],
            peak_gflops=50.0,
        )
    )
    assert [(r["engine"], r["precision"]) for r in rows] == [
        ("native", "fp32"),
        ("native", "bf16"),
        ("torch", "fp32"),
        ("peer", "fp32"),
    ]
    by = {(r["engine"], r["precision"]): r for r in rows}
    exact, low = by["native", "fp32"], by["native", "bf16"]
    assert exact["max_logit_diff"] == exact["max_logit_diff_vs_fp32"] < 1e-4 and exact["same_codes_as_reference"]
    # bf16: exact against the bf16 network (the same codes), measurably off the fp32 one
    assert low["max_logit_diff"] < 1e-4 < low["max_logit_diff_vs_fp32"] < 1.0 and low["same_codes_as_reference"]
    for row in (exact, low):
        assert row["flops_per_sample"] == flops_per_sample(random_model(SMALL))
        assert row["arithmetic_gflops"] == pytest.approx(row["samples_per_s"] * row["flops_per_sample"] / 1e9, rel=1e-3)
        assert row["sgemm_fraction"] == pytest.approx(row["arithmetic_gflops"] / 50.0, rel=1e-3, abs=1e-4)
    assert "arithmetic_gflops" not in by["torch", "fp32"]
    peer = by["peer", "fp32"]
    assert peer["samples_per_s"] > 0 and peer["max_logit_diff_vs_fp32"] < 1e-4
    assert peer["same_codes_as_reference"] is None  # it draws its own way: no verdict, not a failure


def test_bench_rows_of_the_native_engine():
    native_or_skip()
    (row,) = bench.run(SMALL, ["native"], [1], seconds=0.05, repeats=1, threads=1, peak_gflops=50.0)
    assert (row["engine"], row["precision"], row["threads"]) == ("native", "fp32", 1)
    assert row["same_codes_as_reference"] and row["max_logit_diff_vs_fp32"] < 1e-5
    assert row["arithmetic_gflops"] > 0 and row["sgemm_fraction"] > 0


def test_an_engine_that_cannot_run_a_precision_is_a_row_that_says_why(monkeypatch, tmp_path):
    from wavegen.generate import native

    monkeypatch.setattr(native.abi, "_loaded", {})
    monkeypatch.setenv("CXX", "no-such-compiler")
    monkeypatch.setenv("WAVEGEN_CACHE", str(tmp_path / "cache"))
    rows = list(bench.run(SMALL, ["native", "peer"], [1], seconds=0.05, repeats=1, cond="labels", precisions=["bf16"]))
    assert [(r["engine"], r["precision"]) for r in rows] == [("native", "bf16"), ("peer", "fp32")]
    assert rows[0]["error"].startswith("--precision bf16: native engine unavailable: ")
    assert "unconditioned models only" in rows[1]["error"]
