"""What the commands print: JSON for scripts (`--json`), a table for people (`bench`), progress
bars with a rate and an ETA on stderr when someone watches, none with `--quiet`."""

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios

import pytest

from wavegen.audio.io import write_wav
from wavegen.model import checkpoint as ckpt

from helpers import ENV, tone

pytestmark = pytest.mark.slow  # (make test-fast leaves these out; make test runs them)

# bars on a captured (non-terminal) stderr too, redrawn at every update (so even a short step shows a rate)
BARS = {"WAVEGEN_PROGRESS": "always", "TQDM_MININTERVAL": "0"}
# tqdm's "[elapsed<remaining, rate]": an ETA and a rate such as 1.2kfile/s, 850step/s or 2.5s/step
RATE_AND_ETA = r"\[\d\d:\d\d<\d\d:\d\d, +[\d.]+(?:[kMG]?{unit}s?/s|s/{unit})"
TINY = ["--recipe", "tiny"]


def wavegen(*args, cwd, env=None):
    """Like test_cli.wavegen, but output read as bytes: text mode would turn a bar's '\\r' into '\\n'."""
    proc = subprocess.run(
        [sys.executable, "-m", "wavegen", *args], cwd=cwd, env={**ENV, **(env or {})}, capture_output=True, timeout=600
    )
    proc.stdout, proc.stderr = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def assert_no_bar(stderr):
    assert "\r" not in stderr and "%|" not in stderr, stderr


def assert_bar(stderr, desc, unit):
    assert f"{desc}:" in stderr and "%|" in stderr, stderr
    assert re.search(RATE_AND_ETA.format(unit=unit), stderr), stderr


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Prepared tones and a tiny run trained for 4 steps."""
    root = tmp_path_factory.mktemp("out")
    write_wav(root / "dataset" / "a.wav", tone(440, 3.0), 16000)
    write_wav(root / "dataset" / "b.wav", tone(330, 2.0), 16000)
    wavegen("prepare", "dataset", *TINY, "--quiet", cwd=root)
    wavegen("train", *TINY, "--steps", "4", "--set", "train.val_every=2", "--quiet", cwd=root)
    return root


def test_info_json_is_all_of_stdout_and_matches_the_checkpoint(trained):
    facts = json.loads(wavegen("info", "--json", cwd=trained).stdout)
    payload = ckpt.load(trained / "runs" / "tiny" / "checkpoints" / "latest.pt")
    assert facts["step"] == payload["step"] == 4
    assert facts["config"] == payload["config"]
    assert facts["receptive_field_samples"] == 129
    # a pipe into a JSON tool works: nothing but the object on stdout
    piped = subprocess.run(
        f"set -o pipefail; '{sys.executable}' -m wavegen info --json | '{sys.executable}' -m json.tool",
        shell=True,
        executable="/bin/bash",
        cwd=trained,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert piped.returncode == 0, piped.stderr
    assert json.loads(piped.stdout) == facts
    text = wavegen("info", cwd=trained).stdout
    assert text.startswith("checkpoint ") and "receptive field  129 samples" in text


def test_eval_json_goes_to_stdout_and_its_report_to_stderr(trained):
    proc = wavegen("eval", "--json", "--quiet", cwd=trained)
    report = json.loads(proc.stdout)
    assert report["step"] == 4 and report["val_bits"] > 0 and report["val_seconds"] > 0
    assert "validation:" in proc.stderr and "validation:" not in proc.stdout
    assert_no_bar(proc.stderr)
    shown = wavegen("eval", cwd=trained, env=BARS)
    assert shown.stdout == ""  # no JSON asked for
    assert_bar(shown.stderr, "eval", "sample")


def test_bench_prints_a_table_or_json_lines(tmp_path):
    args = [
        "bench",
        "sample",
        *TINY,
        "--engine",
        "torch",
        "--batch",
        "1",
        "--batch",
        "2",
        "--seconds",
        "0.1",
        "--repeats",
        "1",
        "--threads",
        "1",
    ]
    machine, *lines = [
        json.loads(line) for line in wavegen(*args, "--json", "--quiet", cwd=tmp_path).stdout.splitlines()
    ]
    assert machine["sgemm_gflops"] > 0 and machine["threads"] == 1  # the yardstick first
    assert [(r["engine"], r["batch"], r["precision"]) for r in lines] == [("torch", 1, "fp32"), ("torch", 2, "fp32")]
    assert all(r["samples_per_s"] > 0 for r in lines)

    table = wavegen(*args, cwd=tmp_path, env=BARS)
    header, *rows = table.stdout.splitlines()
    assert header.split()[:5] == ["engine", "batch", "device", "cond", "precision"] and "samples/s" in header
    assert [row.split()[:5] for row in rows] == [
        ["torch", "1", "cpu", "none", "fp32"],
        ["torch", "2", "cpu", "none", "fp32"],
    ]
    for line in table.stdout.splitlines():
        with pytest.raises(json.JSONDecodeError):
            json.loads(line)
    assert_bar(table.stderr, "bench", "config")
    # bench train: one row per implementation, its own columns
    trains = wavegen(
        "bench",
        "train",
        *TINY,
        "--batch",
        "1",
        "--segment",
        "100",
        "--steps",
        "1",
        "--threads",
        "1",
        "--set",
        "train.precision=fp32",
        "--quiet",
        cwd=tmp_path,
    )
    header, *rows = trains.stdout.splitlines()
    assert header.split()[:3] == ["impl", "device", "precision"] and "step s" in header
    assert sorted({row.split()[0] for row in rows}) == ["plain", "wavegen"]
    assert_no_bar(trains.stderr)


def test_quiet_leaves_no_bars_where_bars_are_forced(tmp_path):
    write_wav(tmp_path / "dataset" / "a.wav", tone(440, 3.0), 16000)
    train = ["train", *TINY, "--steps", "10", "--set", "train.log_every=1", "--set", "train.val_every=10"]
    synth = ["synth", "--seconds", "0.5"]
    quiet = [
        wavegen("prepare", "dataset", *TINY, "--quiet", cwd=tmp_path, env=BARS),
        wavegen(*train, "--quiet", cwd=tmp_path, env=BARS),
        wavegen(*synth, "--quiet", cwd=tmp_path, env=BARS),
    ]
    for proc in quiet:
        assert_no_bar(proc.stderr)
    assert "prepared 1 file" in quiet[0].stderr and "done: step 10" in quiet[1].stderr  # the report lines stay
    assert "samples/s" in quiet[2].stderr
    prepare = wavegen("prepare", "dataset", *TINY, cwd=tmp_path, env=BARS)
    assert_bar(prepare.stderr, "prepare", "file")
    trained = wavegen(*train, "--steps", "20", cwd=tmp_path, env=BARS)
    assert_bar(trained.stderr, "train", "step")
    assert re.search(r"bits=\d+\.\d+, samples/s=[\d,]+", trained.stderr), trained.stderr  # the bar's postfix
    assert_bar(wavegen(*synth, cwd=tmp_path, env=BARS).stderr, "synth", "sample")
    # WAVEGEN_PROGRESS unset and stderr not a terminal (a log, CI): no bars by default
    assert_no_bar(wavegen(*synth, cwd=tmp_path).stderr)


def run_on_a_terminal(args, cwd):
    """Run wavegen with stderr on a pseudo-terminal (80 columns), bars in their default mode (redrawn
    at every update: a fast engine can finish within tqdm's usual 0.1 s); returns (status, stderr)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {**{key: value for key, value in ENV.items() if key != "WAVEGEN_PROGRESS"}, "TQDM_MININTERVAL": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "wavegen", *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=follower
    )
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], 120)
        if not ready:
            proc.kill()
            break
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return proc.wait(timeout=120), b"".join(chunks).decode(errors="replace")


def test_bars_show_on_a_terminal_by_default(trained):
    status, stderr = run_on_a_terminal(["synth", "--seconds", "0.5", "--out", "tty"], trained)
    assert status == 0, stderr
    assert_bar(stderr, "synth", "sample")
    status, stderr = run_on_a_terminal(["synth", "--seconds", "0.5", "--out", "tty", "--quiet"], trained)
    assert status == 0 and "real time" in stderr
    assert "%|" not in stderr
