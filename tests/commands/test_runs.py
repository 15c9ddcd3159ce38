"""Runs that end badly, for real: `wavegen train` killed with SIGKILL or stopped by SIGINT and
SIGTERM, then run again; checkpoints and WAVs written to a disk that fills up."""

import csv
import errno
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from wavegen.audio.io import write_wav
from wavegen.config import apply_overrides
from wavegen.data.prepare import prepare
from wavegen.errors import WriteError
from wavegen.model import checkpoint as ckpt
from wavegen.recipe import load_recipe

from helpers import tone

pytestmark = pytest.mark.slow  # (make test-fast leaves these out; make test runs them)

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
STEPS = 60  # ~20 ms each (after ~4 s to start): long enough to be stopped halfway
SETTINGS = [
    "train.batch_size=2",
    "train.segment_length=200",
    "train.checkpoint_every=10",
    "train.val_every=30",
    "train.log_every=1",
    "train.warmup_steps=5",
    "train.ema=0.9",
]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A folder with prepared data (a 3 s tone) for the runs of this module."""
    root = tmp_path_factory.mktemp("runs")
    write_wav(root / "dataset" / "a.wav", tone(440, 3.0), 16000)
    prepare(root / "dataset", root / "prepared", load_recipe("tiny").data, progress=False)
    return root


def train_command(root: Path, run: Path, precision: str = "fp32", extra: tuple[str, ...] = ()) -> list[str]:
    sets = [part for item in SETTINGS + [f"train.precision={precision}", *extra] for part in ("--set", item)]
    return [
        sys.executable,
        "-m",
        "wavegen",
        "train",
        "--data",
        str(root / "prepared"),
        "--run",
        str(run),
        "--recipe",
        "tiny",
        "--steps",
        str(STEPS),
        "--device",
        "cpu",
        "--quiet",
        *sets,
    ]


def finish(command: list[str], cwd: Path, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(command, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)
    if ok:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def uninterrupted(root):
    """The run each interrupted one must end up as: the same settings, never stopped (one per
    precision, made when first asked for; here, which saves a process start)."""
    from wavegen.train.loop import train

    runs = {}

    def run(precision: str) -> Path:
        if precision not in runs:
            runs[precision] = root / f"straight-{precision}"
            config = apply_overrides(
                load_recipe("tiny"), SETTINGS + [f"train.precision={precision}", f"train.steps={STEPS}"]
            )
            train(config, root / "prepared", runs[precision], device="cpu", progress=False, recipe="tiny")
        return runs[precision]

    return run


def logged_step(run: Path) -> int:
    """The last step in the run's log.csv (-1 before there is one)."""
    try:
        lines = (run / "log.csv").read_text().splitlines()[1:]
    except FileNotFoundError:
        return -1
    return max((int(line.split(",")[0]) for line in lines if line.split(",")[0].isdigit()), default=-1)


def start_and_wait(command: list[str], cwd: Path, run: Path, step: int) -> subprocess.Popen:
    """Start training and return once its log reaches ``step`` (the loop, with its signal
    handlers, is running then)."""
    proc = subprocess.Popen(command, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while logged_step(run) < step:
        if proc.poll() is not None:
            pytest.fail(f"training ended before step {step}: {proc.communicate()[1][-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"training did not reach step {step} in 120 s")
        time.sleep(0.02)
    return proc


def assert_identical(a, b, where: str = "checkpoint") -> None:
    """Every tensor equal bit for bit (torch.equal), every other value equal, at every depth."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_identical(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_run(run: Path, reference: Path) -> None:
    """Both checkpoints hold the same everything (weights, Adam's moments, the moving average,
    every RNG state, the validation history), and the logs the same rows (timings aside)."""
    for name in ("latest.pt", "best.pt"):
        assert_identical(ckpt.load(run / "checkpoints" / name), ckpt.load(reference / "checkpoints" / name), name)

    def rows(folder):
        return [
            {k: v for k, v in row.items() if k not in ("samples_per_s", "elapsed_s")}
            for row in csv.DictReader(open(folder / "log.csv"))
        ]

    assert rows(run) == rows(reference)  # each step once: no row of the killed run is left over


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_killed_run_resumes_to_the_weights_of_an_uninterrupted_one(root, uninterrupted, precision):
    reference = uninterrupted(precision)
    run = root / f"killed-{precision}"
    command = train_command(root, run, precision)
    proc = start_and_wait(command, root, run, 25)  # past the checkpoint of step 20
    proc.kill()
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    saved, logged = ckpt.load(run / "checkpoints" / "latest.pt")["step"], logged_step(run)
    assert 20 <= saved <= logged < STEPS  # the log went further than the checkpoint, but for a kill just after a save
    # What a kill during a save leaves: a temporary file beside the checkpoint; and a log row
    # that a kill during an append cuts short.
    (run / "checkpoints" / ".latest.pt.k1lled00.tmp").write_bytes(b"PK\x03\x04 half a checkpoint")
    with open(run / "log.csv", "a") as log:
        log.write("99,7.9")

    again = finish(command, root)
    assert f"resuming {run} at step {saved}" in again.stderr
    assert re.search(
        r"removed \d+ unfinished temporary files? of an interrupted write \(.*\.latest\.pt\.k1lled00\.tmp", again.stderr
    ), again.stderr
    dropped = re.search(rf"dropped \d+ log rows? that an interrupted run wrote after step {saved}", again.stderr)
    assert bool(dropped) == (logged > saved), again.stderr
    assert not list(run.rglob("*.tmp"))
    assert_same_run(run, reference)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_saves_where_training_stopped_and_the_rerun_finishes_the_same_run(root, uninterrupted, signum):
    reference = uninterrupted("fp32")
    run = root / f"stopped-{signum.name}"
    command = train_command(root, run)
    proc = start_and_wait(command, root, run, 5)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum and "Traceback" not in stderr, stderr[-3000:]  # 130, 143
    said = [line for line in stderr.splitlines() if "interrupted" in line or "stopped" in line]
    assert len(said) == 1, stderr
    found = re.fullmatch(
        rf"interrupted at step (\d+); saved {run}/checkpoints/latest.pt. "
        "Run the same command to resume.",
        said[0],
    )
    assert found, said
    step = int(found.group(1))
    # Saved after the step under way finished: no half step, nothing logged beyond it.
    assert 5 <= step < STEPS and ckpt.load(run / "checkpoints" / "latest.pt")["step"] == step == logged_step(run)

    again = finish(command, root)
    assert f"resuming {run} at step {step}" in again.stderr and "dropped" not in again.stderr
    assert_same_run(run, reference)


# soundfile prints a write's error from its callback (an "unraisable" exception) and goes on:
# the WAV must meet the full disk through a plain write.
@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_a_full_disk_while_writing_a_wav_keeps_the_previous_one(root, tmp_path, full_disk):
    from wavegen.synthesis.synth import synthesize
    from wavegen.train.loop import train

    config = apply_overrides(load_recipe("tiny"), ["train.steps=2", "train.batch_size=2", "train.segment_length=200"])
    train(config, root / "prepared", tmp_path / "run", device="cpu", progress=False)
    latest = tmp_path / "run" / "checkpoints" / "latest.pt"
    args = dict(seconds=0.05, n=1, engine="torch", device="cpu", progress=False)
    [wav] = synthesize(latest, tmp_path / "samples", **args).files
    before = wav.read_bytes()
    full_disk.room = 1000  # (a 0.05 s WAV is 1644 bytes)
    with pytest.raises(WriteError) as failed:
        synthesize(latest, tmp_path / "samples", **args)
    assert str(failed.value) == f"{wav}: no space left on device (the previous file is intact)"
    assert wav.read_bytes() == before  # (and no temporary file is left beside it and its PNG and JSON)
    assert sorted(p.name for p in wav.parent.iterdir()) == sorted(
        wav.with_suffix(s).name for s in (".json", ".png", ".wav")
    )


# -- a real full disk: a small tmpfs, where it can be mounted ------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs, unmounted afterwards whatever happens; skipped (with the reason) where it
    cannot be mounted: not root, or a container without CAP_SYS_ADMIN."""
    where = tmp_path / "disk"
    where.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)  # busy: detach it now


def fill(disk: Path, leave: int) -> None:
    """Fill ``disk`` up, then free ``leave`` bytes of it."""
    chunk = b"\0" * 65536
    with open(disk / "filler", "wb", buffering=0) as filler:
        try:
            while True:
                filler.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    os.truncate(disk / "filler", (disk / "filler").stat().st_size - leave)


def one_line_error(proc: subprocess.CompletedProcess, expected: str) -> None:
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [f"Error: {expected}"], proc.stderr[-3000:]


def test_a_full_tmpfs_is_a_one_line_error_and_keeps_the_checkpoint_and_the_wav(root, small_disk):
    from wavegen.synthesis.synth import synthesize
    from wavegen.train.loop import train

    run, samples = small_disk / "run", small_disk / "samples"
    settings = ["train.batch_size=2", "train.segment_length=200", "train.val_batches=0", "train.log_every=1000"]
    train(
        apply_overrides(load_recipe("tiny"), settings + ["train.steps=2"]),
        root / "prepared",
        run,
        device="cpu",
        progress=False,
    )
    latest = run / "checkpoints" / "latest.pt"
    [wav] = synthesize(latest, samples, seconds=0.3, engine="torch", device="cpu", progress=False).files
    before = {path: path.read_bytes() for path in (latest, wav)}  # ~580 kB and ~10 kB
    fill(small_disk, leave=8192)  # room for config.toml, not for a checkpoint or a WAV

    wavegen = [sys.executable, "-m", "wavegen"]
    one_line_error(
        finish(
            wavegen
            + [
                "train",
                "--data",
                str(root / "prepared"),
                "--run",
                str(run),
                "--steps",
                "4",
                "--device",
                "cpu",
                "--quiet",
            ],
            root,
            ok=False,
        ),
        f"{latest}: no space left on device, so training stopped at step 4. Kept {latest} (step 2); "
        "running the same command resumes from the latest. Make room (or fix the folder), then run the "
        "same command again",
    )
    one_line_error(
        finish(
            wavegen
            + [
                "synth",
                "--run",
                str(run),
                "--out",
                str(samples),
                "--seconds",
                "0.3",
                "--engine",
                "torch",
                "--device",
                "cpu",
                "--quiet",
            ],
            root,
            ok=False,
        ),
        f"{wav}: no space left on device (the previous file is intact)",
    )
    assert {path: path.read_bytes() for path in before} == before
    assert not list(small_disk.rglob("*.tmp"))
