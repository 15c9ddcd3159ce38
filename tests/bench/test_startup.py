"""``wavegen bench startup``: synth's start-up from a new process, cold (empty caches: the native
engine is built) and warm (the caches kept), beside the floor; in temporary caches only."""

from __future__ import annotations

import json
import sys
import tempfile

import pytest

from wavegen.bench import startup
from wavegen.errors import WavegenError
from wavegen.generate import native
from wavegen.recipe import load_recipe

from helpers import run_in_process, wavegen

ROW_KEYS = {"start", "seconds", "audio_seconds", "engine", "precision", "device", "built_native", "runs"}


def compiler_or_skip() -> None:
    try:
        native.find_compiler()
    except native.NativeUnavailable as exc:
        pytest.skip(f"no native build to time: {exc}")


@pytest.mark.slow  # the real command line, and a native build (about 15 s on 2 cores)
def test_cold_builds_the_engine_warm_reuses_it_and_the_users_cache_is_untouched(tmp_path):
    user_cache, scratch = tmp_path / "user-cache", tmp_path / "tmp"
    scratch.mkdir()
    args = ["bench", "startup", "--recipe", "tiny", "--seconds", "0.05", "--repeats", "1", "--device", "cpu", "--json"]
    proc = wavegen(*args, cwd=tmp_path, env={"WAVEGEN_CACHE": str(user_cache), "TMPDIR": str(scratch)})
    rows = {row["start"]: row for row in map(json.loads, proc.stdout.splitlines())}
    assert list(rows) == ["floor", "cold", "warm"]
    assert all(set(row) == ROW_KEYS and row["seconds"] > 0 and row["runs"] == 1 for row in rows.values())
    assert rows["floor"]["engine"] is None and rows["floor"]["audio_seconds"] is None
    for start in ("cold", "warm"):
        assert rows[start]["audio_seconds"] == 0.05 and rows[start]["device"] == "cpu"
    # only the temporary caches were used, and they are gone with the rest of the temporary folder
    assert not user_cache.exists()
    assert list(scratch.iterdir()) == []
    compiler_or_skip()
    assert (rows["cold"]["engine"], rows["warm"]["engine"]) == ("native", "native")
    assert rows["cold"]["precision"] == rows["warm"]["precision"] == "int8"  # (auto: int8 in the native engine)
    assert rows["cold"]["built_native"] is True
    assert rows["warm"]["built_native"] is False  # the cold run's build was found, not rebuilt


def test_a_failing_synth_is_one_error_with_its_last_line_and_leaves_nothing(tmp_path, monkeypatch):
    failing = "import sys; sys.stderr.write('loading\\nError: the model is broken\\n'); sys.exit(1)"
    monkeypatch.setattr(startup, "synth_command", lambda *_: [sys.executable, "-c", failing])
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    rows = startup.run(load_recipe("tiny"), 0.05, "cpu", repeats=1)
    assert next(rows)["start"] == "floor"
    with pytest.raises(WavegenError) as caught:
        next(rows)
    assert str(caught.value) == "bench startup: the cold `wavegen synth` exited with status 1: the model is broken"
    assert list(tmp_path.iterdir()) == []  # the checkpoint, the caches and the outputs went with their folder


def test_startup_has_its_own_options(tmp_path):
    status, stdout, _ = run_in_process("bench", "startup", "--help", cwd=tmp_path)
    assert status == 0
    for option in ["--recipe", "--set", "--device", "--threads", "--json", "--quiet", "--seconds", "--repeats"]:
        assert option in stdout, option
    for option in ["--engine", "--batch", "--segment", "--variant"]:
        assert option not in stdout, option
    assert "startup" in run_in_process("bench", "--help", cwd=tmp_path)[1].split("Commands:")[1]
