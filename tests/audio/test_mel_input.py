"""Log-mel frames as they come (``audio.mel_input``): from raw float32 on a pipe, a .npy file, or
audio, a WAV stream read in pieces giving the frames the whole-file analysis gives."""

from __future__ import annotations

import io
import os
import struct
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile as sf

from wavegen.audio.features import MelSettings, log_mel
from wavegen.audio.io import read_recording
from wavegen.audio.mel_input import MelFrames, frames_from_audio, frames_from_npy, frames_from_raw
from wavegen.errors import DataError


class Trickle(io.RawIOBase):
    """Bytes given at most ``piece`` at a time, as a slow pipe gives them."""

    def __init__(self, data: bytes, piece: int) -> None:
        self.data, self.piece, self.position = data, piece, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        size = self.piece if size < 0 else min(size, self.piece)
        out = self.data[self.position : self.position + size]
        self.position += len(out)
        return out


def joined(frames, bands: int) -> np.ndarray:
    frames = list(frames)
    assert all(f.dtype == np.float32 and f.ndim == 2 and len(f) for f in frames)
    return np.concatenate(frames) if frames else np.zeros((0, bands), np.float32)


def noise_wav(path, samples: int, rate: int, channels: int = 2, subtype: str = "PCM_16") -> None:
    audio = np.random.default_rng(samples).normal(0, 0.2, (samples, channels)).astype(np.float32)
    sf.write(path, audio, rate, subtype=subtype)


@pytest.mark.parametrize("rate, hop, n_fft", [(16000, 256, 1024), (22050, 275, 1024)])  # (an odd n_fft - hop)
@pytest.mark.parametrize("length", ["short", "whole hops", "ragged"])
def test_frames_of_a_wav_read_in_small_pieces_are_the_whole_files(tmp_path, rate, hop, n_fft, length):
    samples = {"short": 300, "whole hops": 37 * hop, "ragged": 12345}[length]
    settings = MelSettings(rate, 40, hop, n_fft, 0.0, rate / 2)
    path = tmp_path / "in.wav"
    noise_wav(path, samples, rate)
    whole = log_mel(read_recording(path, rate).audio, settings)  # what vocode analyses
    assert len(whole) == -(-samples // hop)
    streamed = joined(frames_from_audio(Trickle(path.read_bytes(), 777), settings), 40)
    assert streamed.shape == whole.shape and np.allclose(streamed, whole, atol=1e-5)
    from_path = joined(frames_from_audio(path, settings), 40)
    assert from_path.shape == whole.shape and np.allclose(from_path, whole, atol=1e-5)


@pytest.mark.parametrize("subtype, rate", [("PCM_24", 16000), ("FLOAT", 16000), ("PCM_U8", 16000), ("PCM_16", 22050)])
def test_other_encodings_and_rates_are_read_as_the_whole_file_is(tmp_path, subtype, rate):
    settings = MelSettings(16000, 40, 256, 1024, 0.0, 8000.0)
    path = tmp_path / "in.wav"
    noise_wav(path, 5000, rate, channels=1, subtype=subtype)
    whole = log_mel(read_recording(path, 16000).audio, settings)  # (resampled from 22050 Hz)
    streamed = joined(frames_from_audio(Trickle(path.read_bytes(), 501), settings), 40)
    assert streamed.shape == whole.shape and np.allclose(streamed, whole, atol=1e-5)


def test_a_frame_comes_once_its_window_has_arrived_and_not_before():
    settings = MelSettings(16000, 20, 256, 1024, 0.0, 8000.0)
    audio = np.random.default_rng(0).normal(0, 0.2, 5000).astype(np.float32)
    analysis, given = MelFrames(settings), 0
    for f in range(10):
        needed = (f + 1) * 256 + 384  # frame f's window ends (n_fft - hop) / 2 samples past its hop
        assert len(analysis.add(audio[given : needed - 1])) == 0  # one sample short of frame f's window
        frame = analysis.add(audio[needed - 1 : needed])
        assert len(frame) == 1 and np.allclose(frame[0], log_mel(audio, settings)[f], atol=1e-5)
        given = needed


def wav_header(rate: int, channels: int = 1, bits: int = 16, size: int = 0xFFFFFFFF) -> bytes:
    """A WAV header as a program writing to a pipe writes it: sizes unknown."""
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * bits // 8, channels * bits // 8, bits)
    return (
        b"RIFF"
        + struct.pack("<I", 0xFFFFFFFF)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", size)
    )


def test_frames_come_from_a_pipe_before_it_ends():
    settings = MelSettings(16000, 20, 256, 1024, 0.0, 8000.0)
    audio = (np.random.default_rng(1).normal(0, 3000, 4000)).astype("<i2")
    read_end, write_end = os.pipe()
    with open(read_end, "rb") as reading, open(write_end, "wb", buffering=0) as writing, ThreadPoolExecutor(1) as pool:
        frames = frames_from_audio(reading, settings)
        writing.write(wav_header(16000) + audio[: 3 * 256 + 384].tobytes())  # frames 0, 1 and 2
        first = pool.submit(next, frames).result(timeout=30)  # (a reader waiting for the end would hang here)
        assert len(first) == 3
        writing.write(audio[3 * 256 + 384 :].tobytes())
        writing.close()
        rest = joined(frames, 20)
    whole = log_mel(audio.astype(np.float32) / 32768, settings)
    assert np.allclose(np.concatenate([first, rest]), whole, atol=1e-5)


def test_raw_frames_come_from_a_pipe_as_they_are_written_and_a_partial_one_is_refused():
    frames = np.random.default_rng(2).normal(-4, 2, (5, 8)).astype("<f4")
    read_end, write_end = os.pipe()
    with open(read_end, "rb") as reading, open(write_end, "wb", buffering=0) as writing, ThreadPoolExecutor(1) as pool:
        got = frames_from_raw(reading, 8)
        writing.write(frames[:1].tobytes() + frames[1, :4].tobytes())  # a frame and a half
        first = pool.submit(next, got).result(timeout=30)
        assert np.array_equal(first, frames[:1])
        writing.write(frames[1, 4:].tobytes() + frames[2:].tobytes() + b"\0\0\0")
        writing.close()
        assert np.array_equal(next(got), frames[1:])
        with pytest.raises(DataError, match=r"ends with a partial frame \(3 of 32 bytes"):
            next(got)


def test_raw_frames_with_nan_are_refused():
    with pytest.raises(DataError, match="NaN or infinite"):
        list(frames_from_raw(io.BytesIO(np.full(8, np.nan, "<f4").tobytes()), 4))


@pytest.mark.parametrize("transposed", [False, True])
def test_npy_frames_come_in_chunks_either_way_round(tmp_path, transposed):
    mels = np.random.default_rng(3).normal(-4, 2, (150, 20)).astype(np.float32)
    np.save(tmp_path / "m.npy", mels.T if transposed else mels)
    chunks = list(frames_from_npy(tmp_path / "m.npy", 20, chunk=64))
    assert [len(c) for c in chunks] == [64, 64, 22] and np.array_equal(np.concatenate(chunks), mels)
    np.save(tmp_path / "bad.npy", mels[:, :10])
    with pytest.raises(DataError, match=r"expected log-mel features of shape \(frames, 20\)"):
        next(frames_from_npy(tmp_path / "bad.npy", 20))


def test_a_stream_that_is_not_a_wav_this_reads_is_one_error():
    settings = MelSettings(16000, 20, 256, 1024, 0.0, 8000.0)
    with pytest.raises(DataError, match="not a WAV stream"):
        next(frames_from_audio(io.BytesIO(b"fLaC" + bytes(100)), settings))
    header = wav_header(16000, bits=12)
    with pytest.raises(DataError, match="12 bits.*cannot be read as it comes"):
        next(frames_from_audio(io.BytesIO(header), settings))
    with pytest.raises(DataError, match="ends in its header"):
        next(frames_from_audio(io.BytesIO(header[:20]), settings))
