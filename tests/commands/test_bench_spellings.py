"""``wavegen bench``: one subcommand per benchmark, each with only its own options, and the
older spellings (no subcommand, ``--train``, ``--learn DATA``) mapped onto them."""

from __future__ import annotations

import pytest

from wavegen.commands.bench import bench

from helpers import run_in_process


@pytest.mark.parametrize(
    "old, new",
    [
        ([], ["sample"]),
        (["--recipe", "tiny"], ["sample", "--recipe", "tiny"]),
        (["-q"], ["sample", "-q"]),
        (["--train", "--batch", "2"], ["train", "--batch", "2"]),
        (["--batch", "2", "--train", "--json"], ["train", "--batch", "2", "--json"]),
        (["--learn", "prepared", "--steps", "3"], ["learn", "prepared", "--steps", "3"]),
        (["--steps", "3", "--learn=prepared"], ["learn", "prepared", "--steps", "3"]),
        (
            ["--learn", "a", "--steps", "3", "--learn", "b"],
            ["learn", "b", "--steps", "3"],
        ),  # the last, as click took it
        (["--learn", "a", "--train"], ["learn", "a", "--train"]),  # left for learn to refuse
        (["--learn"], ["learn"]),  # DATA missing: learn says so
        (["--set", "--train"], ["sample", "--set", "--train"]),  # an option's value stays a value
        (["--stream", "--seconds", "5"], ["stream", "--seconds", "5"]),
        (["--json", "--stream"], ["stream", "--json"]),
        (["--stream", "--train"], ["train", "--stream"]),  # left for train to refuse
        (["--train", "--stream", "--train"], ["train", "--train", "--stream"]),  # (a repeat: click's word)
        (["--learn", "a", "--stream"], ["learn", "a", "--stream"]),
    ],
)
def test_the_spellings_of_before_are_the_subcommands(old, new):
    assert bench.new_spelling(old) == new


def test_the_group_lists_the_benchmarks_and_each_has_only_its_own_options(tmp_path):
    status, stdout, _ = run_in_process("bench", "--help", cwd=tmp_path)
    assert status == 0
    listed = stdout.split("Commands:")[1].split()
    assert [word for word in listed if word in ("sample", "train", "learn")] == ["sample", "train", "learn"]
    helps = {name: run_in_process("bench", name, "--help", cwd=tmp_path)[1] for name in ("sample", "train", "learn")}
    for name, own, others in [
        ("sample", ["--engine", "--precision", "--seconds", "--repeats", "--cond"], ["--segment", "--variant"]),
        ("train", ["--segment", "--compile", "--recompute", "--steps"], ["--engine", "--seconds", "--variant"]),
        ("learn", ["DATA", "--variant", "--minutes", "--steps"], ["--engine", "--segment", "--seconds"]),
    ]:
        for option in ["--recipe", "--set", "--device", "--threads", "--json", "--quiet", "--batch", *own]:
            assert option in helps[name], (name, option)
        for option in others:
            assert option not in helps[name], (name, option)
    assert run_in_process("bench", "--recipe", "tiny", "--help", cwd=tmp_path)[1] == helps["sample"]
    assert run_in_process("bench", "--train", "--help", cwd=tmp_path)[1] == helps["train"]


def test_an_option_of_another_benchmark_names_it(tmp_path):
    status, _, stderr = run_in_process("bench", "learn", "prepared", "--segment", "100", cwd=tmp_path)
    assert status == 2 and "Traceback" not in stderr
    assert stderr.strip() == (
        "Error: --segment is an option of `bench train`, not of `bench learn` (see `wavegen bench learn --help`)"
    )
    status, _, stderr = run_in_process("bench", "sample", "--nosuch", cwd=tmp_path)  # anything else: click's words
    assert status == 2 and "No such option" in stderr


@pytest.mark.parametrize("args", [[], ["--quiet"], ["sample"]])
def test_bench_alone_runs_the_sampling_benchmark(tmp_path, monkeypatch, args):
    from wavegen.commands import bench as module
    from wavegen.errors import WavegenError

    def setup(*_):
        raise WavegenError("the sampling benchmark ran")

    monkeypatch.setattr(module, "setup", setup)
    status, _, stderr = run_in_process("bench", *args, cwd=tmp_path)
    assert status == 1 and stderr.strip() == "Error: the sampling benchmark ran"
