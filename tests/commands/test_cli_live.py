"""`wavegen synth --out -`, run as a user runs it: a WAV (or raw PCM) on standard output as it
is made, the messages on stderr, and a player that quits early ends it quietly."""

import io
import os
import pty
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

import wavegen
from wavegen.audio.io import pcm16
from wavegen.bench.startup import as_trained, write_checkpoint

from helpers import ENV

pytestmark = pytest.mark.slow  # (make test-fast leaves these out; make test runs them)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("live") / "tiny.pt"
    return write_checkpoint(as_trained(wavegen.load_recipe("tiny")), path)


@pytest.fixture(scope="module")
def expected(checkpoint):
    return wavegen.load(checkpoint).generate(seconds=0.3, n=2, seed=0).audio  # (2, 4800)


def synth(checkpoint, *args):
    command = [sys.executable, "-m", "wavegen", "synth", "--checkpoint", str(checkpoint), *args]
    proc = subprocess.run(command, env=ENV, capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    return proc.stdout, proc.stderr.decode()


def test_a_wav_on_standard_output_holds_the_streams_as_channels(checkpoint, expected, tmp_path):
    data, stderr = synth(checkpoint, "--seconds", "0.3", "-n", "2", "--out", "-")
    audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    assert rate == 16000 and audio.shape == (4800, 2)
    np.testing.assert_allclose(audio.T, expected, atol=1 / 32767)  # channel i = stream i
    assert data[44:] == pcm16(expected)  # converted as the WAV files are
    assert "synthesising 2 × 0.3 s" in stderr and "streamed 2 × 0.3 s to standard output" in stderr
    assert "%|" not in stderr and "Traceback" not in stderr  # no bars
    assert not (tmp_path / "samples").exists()


def test_raw_pcm_on_standard_output(checkpoint, expected):
    data, stderr = synth(checkpoint, "--seconds", "0.3", "-n", "2", "--out", "-", "--format", "raw")
    assert data == pcm16(expected) and "streamed" in stderr


def test_a_player_that_quits_ends_generation_quietly(checkpoint):
    # An hour of audio, minutes for the tiny model here: only a stop on the closed pipe ends it soon.
    command = [sys.executable, "-m", "wavegen", "synth", "--checkpoint", str(checkpoint), "--seconds", "3600"]
    proc = subprocess.Popen([*command, "--out", "-"], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = proc.stdout.read(20000)  # a header and some audio, then the player quits
    proc.stdout.close()
    closed_at = time.monotonic()
    try:
        status = proc.wait(timeout=60)
    finally:
        proc.kill()
    stderr = proc.stderr.read().decode()
    assert head[:4] == b"RIFF" and len(head) == 20000
    assert status == 0, stderr
    assert time.monotonic() - closed_at < 30
    assert "Traceback" not in stderr and "Exception ignored" not in stderr and "BrokenPipe" not in stderr, stderr
    assert "stopped: standard output was closed after 1 ×" in stderr


def test_ctrl_c_stops_a_stream_as_it_stops_any_command(checkpoint):
    command = [sys.executable, "-m", "wavegen", "synth", "--checkpoint", str(checkpoint), "--seconds", "3600"]
    proc = subprocess.Popen([*command, "--out", "-"], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert len(proc.stdout.read(20000)) == 20000  # under way
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130 and stderr.decode().splitlines()[-1] == "interrupted", stderr.decode()
    assert b"Traceback" not in stderr


def test_audio_is_not_written_to_a_terminal(checkpoint):
    leader, follower = pty.openpty()
    try:
        command = [sys.executable, "-m", "wavegen", "synth", "--checkpoint", str(checkpoint), "--out", "-"]
        proc = subprocess.run(command, env=ENV, stdout=follower, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(follower)
        os.close(leader)
    assert proc.returncode == 2 and "pipe it into a player" in proc.stderr and "Traceback" not in proc.stderr
