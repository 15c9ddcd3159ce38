"""`wavegen synth --play`, in this process with a stand-in for sounddevice (no audio device is
needed), and the options that do not go together."""

import sys

import numpy as np
import pytest

import wavegen
from wavegen.bench.startup import as_trained, write_checkpoint

from helpers import fake_sounddevice, one_line_error, run_in_process


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("play") / "tiny.pt"
    return write_checkpoint(as_trained(wavegen.load_recipe("tiny")), path)


class Proc:
    def __init__(self, status, stdout, stderr):
        self.returncode, self.stdout, self.stderr = status, stdout, stderr


def test_play_sends_the_audio_to_the_device_in_order(checkpoint, tmp_path, monkeypatch):
    device = fake_sounddevice(pull=True)
    monkeypatch.setitem(sys.modules, "sounddevice", device)
    status, stdout, stderr = run_in_process(
        "synth", "--checkpoint", str(checkpoint), "--seconds", "0.3", "-n", "2", "--play", cwd=tmp_path
    )
    assert status == 0, stderr
    [stream] = device.streams
    assert (stream.rate, stream.channels) == (16000, 2) and stream.state == "stopped" and stream.closed
    played = np.concatenate(stream.played)  # (frames, channels)
    expected = wavegen.load(checkpoint).generate(seconds=0.3, n=2, seed=0).audio
    np.testing.assert_array_equal(played[:4800], expected.T)  # the whole length was buffered first: no gap
    assert not played[4800:].any()
    assert stdout == "" and "played 2 × 0.3 s" in stderr and "gap" not in stderr
    assert not (tmp_path / "samples").exists()  # nothing written


def test_play_without_sounddevice_is_a_usage_error(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # not installed
    proc = Proc(*run_in_process("synth", "--checkpoint", str(checkpoint), "--play", cwd=tmp_path))
    one_line_error(proc, "pip install sounddevice")
    assert proc.returncode == 2


@pytest.mark.parametrize(
    "args, says",
    [
        (["--format", "raw"], "--format is for --out -"),
        (["--play", "--out", "-"], "--play writes nothing"),
        (["--play", "--out", "samples"], "--play writes nothing"),
    ],
)
def test_options_that_do_not_go_together(checkpoint, tmp_path, args, says):
    proc = Proc(*run_in_process("synth", "--checkpoint", str(checkpoint), *args, cwd=tmp_path))
    one_line_error(proc, says)
    assert proc.returncode == 2
