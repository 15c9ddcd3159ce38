"""Live audio's sinks: a WAV or raw stream into a pipe, and the device player (with a stand-in
for sounddevice: no audio device is needed)."""

import io
import os
import struct
import sys

import numpy as np
import pytest
import soundfile as sf

from wavegen.audio.io import pcm16, write_wav
from wavegen.audio.live_out import (
    UNKNOWN_SIZE,
    DevicePlayer,
    RawStream,
    WavStream,
    load_sounddevice,
    prefill_seconds,
)
from wavegen.errors import PlayerUnavailable

from helpers import fake_sounddevice


def blocks(channels=2, sizes=(1000, 1000, 300), seed=0):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1.3, 1.3, (channels, n)).astype(np.float32) for n in sizes]  # some beyond full scale


def test_pcm16_converts_as_the_wav_writer_does(tmp_path):
    audio = blocks(1, (5000,))[0]
    write_wav(tmp_path / "a.wav", audio[0], 16000)
    assert pcm16(audio) == (tmp_path / "a.wav").read_bytes()[-2 * 5000 :]
    stereo = np.stack([audio[0], -audio[0]])
    pairs = np.frombuffer(pcm16(stereo), "<i2").reshape(-1, 2)  # interleaved: frame by frame
    np.testing.assert_array_equal(pairs[:, 0], np.frombuffer(pcm16(audio), "<i2"))
    assert pairs[:, 0].max() == 32767 and pairs[:, 0].min() == -32768  # clipped


@pytest.mark.parametrize("frames", [None, 2300])
def test_a_wav_stream_is_read_back_as_written(frames):
    out = io.BytesIO()
    sink = WavStream(out, 16000, 2, frames)
    given = blocks()
    for block in given:
        sink.write(block)
    sink.close()
    data = out.getvalue()
    riff, size = struct.unpack("<I", data[4:8])[0], struct.unpack("<I", data[40:44])[0]
    if frames is None:  # "until the end of the stream", as ffmpeg writes to a pipe
        assert riff == size == UNKNOWN_SIZE
    else:
        assert (riff, size) == (36 + 2300 * 4, 2300 * 4)
    assert data[:4] == b"RIFF" and data[8:16] == b"WAVEfmt " and data[36:40] == b"data"
    read, rate = sf.read(io.BytesIO(data), dtype="int16", always_2d=True)
    assert rate == 16000 and read.shape == (2300, 2)
    assert read.tobytes() == pcm16(np.concatenate(given, axis=1)) == data[44:]


def test_a_raw_stream_is_the_samples_alone_and_an_empty_wav_is_a_header():
    out = io.BytesIO()
    raw = RawStream(out, 2)
    given = blocks()
    for block in given:
        raw.write(block)
    raw.close()
    assert out.getvalue() == b"".join(pcm16(b) for b in given)
    with pytest.raises(ValueError, match="2 channels"):
        raw.write(given[0][:1])
    empty = io.BytesIO()
    WavStream(empty, 8000, 1).close()
    assert len(empty.getvalue()) == 44 and sf.info(io.BytesIO(empty.getvalue())).frames == 0


def test_a_closed_pipe_raises_once_then_its_descriptor_goes_nowhere():
    read_end, write_end = os.pipe()
    os.close(read_end)  # the player quit
    file = os.fdopen(write_end, "wb")
    sink = WavStream(file, 16000, 1)
    with pytest.raises(BrokenPipeError):
        sink.write(blocks(1)[0])
    with pytest.raises(BrokenPipeError):  # nothing more is written
        sink.write(blocks(1)[0])
    sink.close()  # quietly
    assert os.write(write_end, b"after") == 5  # /dev/null now: Python's flush at exit finds no broken pipe
    file.close()


def test_prefill_keeps_playback_from_running_dry():
    assert prefill_seconds(2.0, 10.0, 0.25) == 0.5  # keeps up: a cushion
    assert prefill_seconds(0.5, None, 0.25) == 5.0  # too slow with no end: gaps will come
    assert prefill_seconds(0.1, 10.0, 0.25) == 10.0  # all of it
    for rtf in (0.3, 0.6, 0.9):  # playback from the start, the rest arriving at rtf: never short
        buffered = prefill_seconds(rtf, 20.0, 0.25)
        t = np.linspace(0, 20.0, 2001)
        assert np.all(np.minimum(20.0, buffered + rtf * t) >= t)
        assert buffered < 20.0


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def sounddevice(monkeypatch):
    module = fake_sounddevice()
    monkeypatch.setitem(sys.modules, "sounddevice", module)
    return module


def test_the_player_prefills_then_plays_in_order_and_counts_gaps(sounddevice, said):
    clock = Clock()
    player = DevicePlayer(16000, 2, frames=None, clock=clock)
    stream = sounddevice.streams[0]
    assert (stream.rate, stream.channels, stream.dtype) == (16000, 2, "float32")
    given = blocks(2, (1600,) * 12, seed=1)  # 0.1 s each
    for i, block in enumerate(given[:5]):  # generated at 2x real time: 0.05 s each
        clock.now = 0.05 * i
        player.write(block)
        assert stream.state == ("started" if i == 4 else "open"), i  # 0.5 s buffered: playing
    assert not said
    for _ in range(8000 // 400):
        stream.pull(400)  # all 0.5 s
    stream.pull(400)  # the device asks, nothing has come: a gap (silence)
    stream.pull(400)  # the same gap
    assert player.gaps == 1
    for block in given[5:]:
        player.write(block)
    for _ in range(7 * 1600 // 400):
        stream.pull(400)
    player.close()  # at once: all is played
    assert stream.state == "stopped" and stream.closed and player.gaps == 1
    played = np.concatenate(stream.played)
    expected = np.clip(np.concatenate(given, axis=1).T, -1, 1)
    np.testing.assert_array_equal(played[:8000], expected[:8000])
    assert not played[8000:8800].any()  # the gap's silence
    np.testing.assert_array_equal(played[8800:], expected[8000:])  # then the rest, in order


def test_a_player_slower_than_real_time_waits_for_enough(sounddevice, said):
    clock = Clock()
    player = DevicePlayer(16000, 1, frames=16000 * 10, clock=clock)  # 10 s known
    stream = sounddevice.streams[0]
    block = np.zeros((1, 1600), np.float32)  # 0.1 s, made in 0.2 s: 0.5x real time
    for i in range(100):
        clock.now = 0.2 * i
        player.write(block)
        if stream.state == "started":
            break
    buffered = (i + 1) * 0.1
    assert 0.5 * 10 <= buffered < 10  # (1 - 0.5) x 10 s at least, not all of it
    assert said and "slower than playback" in said[0]


def test_without_sounddevice_or_a_device_the_player_says_so_in_one_line(monkeypatch, sounddevice):
    def no_device(**kwargs):
        raise sounddevice.PortAudioError("Error querying device -1\n(no default output device)")

    monkeypatch.setattr(sounddevice, "OutputStream", no_device)
    with pytest.raises(
        PlayerUnavailable, match=r"^cannot play on the default output device: Error querying device -1 \("
    ):
        DevicePlayer(16000, 1)
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # not installed
    with pytest.raises(PlayerUnavailable, match="pip install sounddevice") as missing:
        load_sounddevice()
    assert "\n" not in str(missing.value) and "--out -" in str(missing.value)
