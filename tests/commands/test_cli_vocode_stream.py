"""`wavegen vocode --stream`, run as a user runs it: log-mel frames or audio read as they come
(a .npy file, raw float32 frames or a WAV on standard input), a WAV out on standard output as it
is made, exactly the samples the Python API gives for the same frames."""

import io
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

import wavegen
from wavegen.audio.features import MelSettings
from wavegen.audio.io import pcm16
from wavegen.audio.mel_input import frames_from_audio
from wavegen.bench.startup import as_trained, write_checkpoint

from helpers import ENV, tone

pytestmark = pytest.mark.slow  # (make test-fast leaves these out; make test runs them)
BANDS, HOP = 20, 128


@pytest.fixture(scope="module")
def vocoder(tmp_path_factory):
    config = wavegen.load_recipe("tiny").override(
        f"data.mel_bands={BANDS}", f"data.mel_hop={HOP}", "data.mel_fmax=8000"
    )
    return write_checkpoint(as_trained(config), tmp_path_factory.mktemp("vocoder") / "vocoder.pt")


def vocode(checkpoint, *args, stdin=b""):
    command = [sys.executable, "-m", "wavegen", "vocode", "--checkpoint", str(checkpoint), "--stream", *args]
    proc = subprocess.run(command, env=ENV, input=stdin, capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    return proc.stdout, proc.stderr.decode()


def wav_samples(data: bytes) -> np.ndarray:
    audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    assert rate == 16000
    return audio[:, 0]


@pytest.mark.parametrize("frames, seed", [(9, 0), (23, 4)])
def test_frames_from_a_file_or_a_pipe_give_the_apis_samples(vocoder, tmp_path, frames, seed):
    mels = np.random.default_rng(seed).normal(-4, 2, (frames, BANDS)).astype(np.float32)
    np.save(tmp_path / "mels.npy", mels)
    expected = wavegen.load(vocoder).generate(mel=mels, seed=seed).audio[0]
    assert len(expected) == frames * HOP
    data, stderr = vocode(vocoder, str(tmp_path / "mels.npy"), "--seed", str(seed))
    assert data[44:] == pcm16(expected[None])
    assert "streamed 1 ×" in stderr and "Traceback" not in stderr
    piped, _ = vocode(vocoder, "-", "--seed", str(seed), "--format", "raw", "--out", "-", stdin=mels.tobytes())
    assert piped == pcm16(expected[None])  # raw float32 frames on stdin, raw PCM out


def test_a_wav_on_standard_input_is_analysed_as_it_comes(vocoder, tmp_path):
    path = tmp_path / "tone.wav"
    sf.write(path, tone(330, 0.4), 16000, subtype="PCM_16")
    model = wavegen.load(vocoder)
    settings = MelSettings.from_data(_config(vocoder).data, bands=BANDS)
    with open(path, "rb") as stream:
        frames = np.concatenate(list(frames_from_audio(stream, settings)))
    expected = model.generate(mel=frames, seed=1).audio[0]
    data, _ = vocode(vocoder, "-", "--seed", "1", stdin=path.read_bytes())
    assert len(wav_samples(data)) == len(expected) and data[44:] == pcm16(expected[None])


def _config(checkpoint):
    from wavegen.model import checkpoint as ckpt

    return ckpt.load_model(checkpoint)[2]


def test_stream_mistakes_are_usage_errors(vocoder, tmp_path):
    for args, message in [
        (["a.wav", "b.wav"], "a stream takes one INPUT"),
        (["a.wav", "--out", str(tmp_path)], "--stream writes to standard output"),
    ]:
        command = [sys.executable, "-m", "wavegen", "vocode", "--checkpoint", str(vocoder), "--stream", *args]
        proc = subprocess.run(command, env=ENV, capture_output=True, timeout=60)
        assert proc.returncode == 2 and message in proc.stderr.decode()
    command = [sys.executable, "-m", "wavegen", "vocode", "--checkpoint", str(vocoder), "-"]
    proc = subprocess.run(command, env=ENV, capture_output=True, timeout=60)
    assert proc.returncode == 2 and "INPUT '-' (standard input) is read with --stream" in proc.stderr.decode()
