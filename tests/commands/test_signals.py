"""SIGINT (Ctrl-C) and SIGTERM (kill, timeout, systemd, docker stop) sent to real `wavegen`
processes at several points: each stops with one line and exit status 130 / 143, and leaves no
temporary file and no partial set of files; a later run sweeps what a kill left."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import wavegen
from wavegen.audio.io import write_wav
from wavegen.bench.startup import as_trained, write_checkpoint

from helpers import ENV, tone

pytestmark = pytest.mark.slow  # (make test-fast leaves these out; make test runs them)

SIGNALS = pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
WORD = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_checkpoint(as_trained(wavegen.load_recipe("tiny")), tmp_path_factory.mktemp("sig") / "tiny.pt")


def start(*args: str, cwd: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "wavegen", *args]
    return subprocess.Popen(command, cwd=cwd, env=ENV, stderr=subprocess.PIPE, text=True)


def wait_for_line(proc: subprocess.Popen, text: str) -> list[str]:
    lines = []
    while not lines or text not in lines[-1]:
        lines.append(proc.stderr.readline())
        assert lines[-1], f"ended before {text!r}: {''.join(lines)}"
    return lines


def wait_for_file(proc: subprocess.Popen, folder: Path, deadline_s: float = 60) -> None:
    """Until anything appears in ``folder`` (the first sample's temporary file): writing began."""
    deadline = time.monotonic() + deadline_s
    while not (folder.is_dir() and any(folder.iterdir())):
        assert proc.poll() is None and time.monotonic() < deadline, "no file was written"
        time.sleep(0.002)


def stopped(proc: subprocess.Popen, signum: int, before: list[str] = ()) -> str:
    """Send ``signum``; the last line of stderr, after checking the exit status and that the
    stop said one line and nothing else (no traceback, no "Exception ignored")."""
    proc.send_signal(signum)
    _, rest = proc.communicate(timeout=60)
    stderr = "".join(before) + rest
    assert proc.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr and "Error" not in stderr, stderr
    said = [line for line in stderr.splitlines() if line.startswith(WORD[signum])]
    assert len(said) == 1 and stderr.splitlines()[-1] == said[0], stderr
    return said[0]


def whole_sets(folder: Path) -> list[str]:
    """The samples in ``folder``, after checking that each is a whole set and nothing else is there."""
    names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    stems = sorted({name.split(".")[0] for name in names})
    assert names == sorted(f"{stem}.{ext}" for stem in stems for ext in ("json", "png", "wav")), names
    return stems


@SIGNALS
def test_synth_stopped_while_it_generates_writes_nothing(checkpoint, tmp_path, signum):
    proc = start("synth", "--checkpoint", str(checkpoint), "--seconds", "600", "--out", "o", cwd=tmp_path)
    before = wait_for_line(proc, "synthesising")
    time.sleep(0.3)
    assert stopped(proc, signum, before) == f"{WORD[signum]}; no sample was written to o"
    assert not (tmp_path / "o").exists()


@SIGNALS
@pytest.mark.parametrize("seed", [0, 7])
def test_synth_stopped_while_it_writes_keeps_whole_samples_only(checkpoint, tmp_path, signum, seed):
    # 3 streams of 2 s: the first sample's files are being written when the signal comes
    args = ["--checkpoint", str(checkpoint), "--seconds", "2", "-n", "3", "--seed", str(seed), "--out", "o"]
    proc = start("synth", *args, cwd=tmp_path)
    wait_for_file(proc, tmp_path / "o")
    line = stopped(proc, signum)
    stems = whole_sets(tmp_path / "o")
    assert (
        1 <= len(stems) < 3
        and line == f"{WORD[signum]}; kept {len(stems)} of 3 samples in o, each whole (.wav, .png, .json)"
    )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """Recordings whose first (by name) is no audio: its "skipped" line says prepare has begun
    on the files, with the others still to do."""
    root = tmp_path_factory.mktemp("recordings")
    (root / "0-broken.wav").write_text("not audio")
    for i in range(40):
        write_wav(root / f"take{i:02d}.wav", tone(200 + 20 * i, 2.0, rate=44100), 44100)
    return root


@SIGNALS
def test_prepare_stopped_keeps_the_earlier_set_and_leaves_no_temporary_file(dataset, tmp_path, signum):
    write_wav(tmp_path / "one" / "a.wav", tone(440, 1.0), 16000)
    command = [sys.executable, "-m", "wavegen", "prepare", "one", "--out", "p", "--recipe", "tiny"]
    first = subprocess.run(command, cwd=tmp_path, env=ENV, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    earlier = {p.name: p.read_bytes() for p in (tmp_path / "p").iterdir()}
    proc = start("prepare", str(dataset), "--out", "p", "--recipe", "tiny", "--trim-silence", cwd=tmp_path)
    before = wait_for_line(proc, "skipped")
    assert stopped(proc, signum, before) == f"{WORD[signum]}; p is as it was"
    assert {p.name: p.read_bytes() for p in (tmp_path / "p").iterdir()} == earlier


@SIGNALS
def test_prepare_stopped_into_a_new_folder_leaves_no_folder(dataset, tmp_path, signum):
    proc = start("prepare", str(dataset), "--out", "new/p", "--recipe", "tiny", "--trim-silence", cwd=tmp_path)
    before = wait_for_line(proc, "skipped")
    assert stopped(proc, signum, before) == f"{WORD[signum]}; nothing was written to new/p"
    assert not (tmp_path / "new").exists()


def test_a_later_run_removes_what_a_kill_left_and_nothing_else(checkpoint, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    left = [".tiny-step0-seed3.wav.k1lled00.tmp", ".tiny-step0-seed3.png.a_b9c8d7.tmp", ".train.u8.zzzzzzzz.tmp"]
    mine = [".notes.tmp", ".x.wav.toolong99.tmp", ".x.txt.abcdefgh.tmp", "x.wav.abcdefgh.tmp", ".x.wav.ABCDEFGH.tmp"]
    for name in left + mine:
        (out / name).write_bytes(b"half")
    os.symlink(out / ".notes.tmp", out / ".y.wav.abcdefgh.tmp")  # a link is nobody's temporary file
    proc = subprocess.run(
        [sys.executable, "-m", "wavegen", "synth", "--checkpoint", str(checkpoint), "--seconds", "0.1", "--out", "o"],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".tmp") == sorted(mine + [".y.wav.abcdefgh.tmp"])


def test_a_live_write_is_not_taken_for_a_leftover(tmp_path):
    from wavegen import files

    with files.atomic_open(tmp_path / "a.wav") as handle:
        handle.write(b"first half")
        [live] = tmp_path.glob(".a.wav.*.tmp")
        files._swept.clear()  # (as another process would: it has not swept this folder yet)
        assert files.sweep_leftovers(tmp_path) == [] and live.exists()
        handle.write(b", second half")
    assert (tmp_path / "a.wav").read_bytes() == b"first half, second half"


@pytest.mark.parametrize("where", ["in a __del__", "in a weakref callback"])
def test_an_interrupt_that_a_callback_swallows_still_stops_the_write(tmp_path, where):
    """Python prints "Exception ignored" for an exception raised in a __del__ or a weakref
    callback and goes on: matplotlib's figures have both. The write still stops."""
    import weakref

    from wavegen import files, interrupts

    class Finalised:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # (the handler runs here, between bytecodes)
                pass

    target = tmp_path / "a.png"
    target.write_bytes(b"old")
    with interrupts.signals_handled():
        with pytest.raises(KeyboardInterrupt):
            with files.atomic_open(target) as handle:
                handle.write(b"new")
                if where == "in a __del__":
                    Finalised()
                else:
                    anchor = type("Anchor", (), {})()
                    ref = weakref.ref(anchor, lambda _: Finalised.__del__(None))  # noqa: F841
                    del anchor
                handle.write(np.zeros(10).tobytes())
    assert target.read_bytes() == b"old" and not list(tmp_path.glob("*.tmp"))
