"""Conditioning works end to end, through the real command line: a labelled model generates the
pitch of the label it is asked for, and a vocoder follows the pitch of the recording it is given."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from wavegen.audio.features import MelSettings, log_mel, mel_distance
from wavegen.audio.io import write_wav
from wavegen.audio.mulaw import decode, encode

from helpers import glide, one_line_error, pitch_track, spectrum_peak, tone, wavegen

pytestmark = pytest.mark.slow  # (make test-fast leaves these out; make test runs them)

PITCHES = {"a": 220.0, "b": 330.0, "c": 440.0, "d": 660.0}


def test_labels_choose_the_pitch(tmp_path):
    for name, hz in PITCHES.items():
        write_wav(tmp_path / "dataset" / name / "tone.wav", tone(hz, 3.0), 16000)
    write_wav(tmp_path / "dataset" / "stray.wav", tone(500, 1.0), 16000)  # no label folder: skipped
    prep = wavegen("prepare", "dataset", "--recipe", "tiny", "--labels", "folders", "--quiet", cwd=tmp_path, ok=False)
    assert prep.returncode == 3, prep.stderr  # prepared, but a file was skipped
    assert "labels: a (1 file), b (1 file), c (1 file), d (1 file)" in prep.stderr
    assert "stray.wav: not inside a label folder" in prep.stderr
    train = wavegen("train", "--recipe", "tiny", "--steps", "400", "--quiet", cwd=tmp_path)
    assert "conditioning on 4 labels (a, b, c, d)" in train.stderr

    info = wavegen("info", cwd=tmp_path)
    assert "labels           a, b, c, d" in info.stdout
    # Two streams per label, the labels given one per stream.
    labels = [x for name in PITCHES for x in ("--label", name)] * 2
    synth = wavegen("synth", *labels, "--n", "8", "--seconds", "1", "--out", "out", "--quiet", cwd=tmp_path)
    assert "native" in synth.stderr or "torch" in synth.stderr
    files = sorted((tmp_path / "out").glob("*.wav"))
    assert len(files) == 8
    for path in files:
        label = path.stem.split("-")[-2]  # tiny-step400-LABEL-seedK
        audio, rate = sf.read(path)
        peak, flatness = spectrum_peak(audio[2000:], rate)  # after the first 1/8 s
        want = PITCHES[label]
        assert abs(peak - want) / want < 0.02, f"{path.name}: peak at {peak:.1f} Hz, label {label} is {want} Hz"
        assert flatness < 0.1, f"{path.name}: noisy (flatness {flatness:.3f})"

    one_line_error(
        wavegen("synth", "--label", "zz", cwd=tmp_path, ok=False), "--label zz: unknown label (known: a, b, c, d)"
    )


MEL_SETTINGS = [
    "--set",
    "data.mel_bands=40",
    "--set",
    "data.mel_hop=128",
    "--set",
    "data.mel_n_fft=512",
    "--set",
    "data.mel_fmax=2000",
]


def semitones(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    n = min(len(a), len(b))
    return np.abs(12 * np.log2(a[:n] / b[:n]))


def test_a_vocoder_follows_the_pitch_of_its_input(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(6):  # training glides: random pitch moves between 200 and 800 Hz
        knots = np.exp(rng.uniform(np.log(200), np.log(800), size=11))
        write_wav(tmp_path / "dataset" / f"glide{i}.wav", glide(list(knots), 0.4), 16000)
    wavegen("prepare", "dataset", "--recipe", "tiny", *MEL_SETTINGS, "--quiet", cwd=tmp_path)
    train = wavegen(
        "train", "--recipe", "tiny", "--steps", "400", "--set", "model.cond_channels=32", "--quiet", cwd=tmp_path
    )
    assert "conditioning on 40-band log-mels every 128 samples" in train.stderr
    info = wavegen("info", cwd=tmp_path)
    assert "a sample in frame f depends on mel frames f-4..f+3" in info.stdout  # RF 129: 1 frame back + 3

    # Unseen inputs: up, down, up again over more than an octave.
    inputs = {"up": [250, 600, 300, 700], "down": [700, 280, 500, 240]}
    for name, knots in inputs.items():
        write_wav(tmp_path / f"{name}.wav", glide(knots, 0.4), 16000)
    vocoded = wavegen("vocode", "up.wav", "down.wav", "--out", "vocoded", "--quiet", cwd=tmp_path)
    assert "log-mel distance to up.wav" in vocoded.stderr
    for name in inputs:
        original, _ = sf.read(tmp_path / f"{name}.wav")
        output, rate = sf.read(tmp_path / "vocoded" / f"{name}-vocoded.wav")
        assert len(output) == len(original)
        want, got = pitch_track(original), pitch_track(output)
        assert want.max() / want.min() > 2  # the input really moves
        error = semitones(got, want)
        assert np.median(error) < 0.3 and np.mean(error < 0.5) > 0.75, (name, np.median(error), np.mean(error < 0.5))
    # The printed log-mel distance is much smaller to the input than to the other input.
    settings = MelSettings(16000, 40, 128, 512, 0.0, 2000.0)

    def quantised_features(path):
        audio = sf.read(path, dtype="float32")[0]
        return log_mel(decode(encode(torch.from_numpy(audio))).numpy(), settings)

    up, down = quantised_features(tmp_path / "up.wav"), quantised_features(tmp_path / "down.wav")
    out = quantised_features(tmp_path / "vocoded" / "up-vocoded.wav")
    printed = float(vocoded.stderr.split("log-mel distance to up.wav ")[1].split(" dB")[0])
    assert printed == pytest.approx(mel_distance(up, out), abs=0.5)
    assert printed < mel_distance(down, out) - 3

    # synth --mel takes the features directly (as prepare stores them: frames × bands).
    features = log_mel(sf.read(tmp_path / "up.wav", dtype="float32")[0], settings)
    np.save(tmp_path / "up.npy", features)
    wavegen("synth", "--mel", "up.npy", "--out", "from-mel", "--quiet", cwd=tmp_path)
    (made,) = (tmp_path / "from-mel").glob("*.wav")
    audio, _ = sf.read(made)
    assert len(audio) == len(features) * 128
    assert np.median(semitones(pitch_track(audio), pitch_track(sf.read(tmp_path / "up.wav")[0]))) < 0.3

    report = wavegen("eval", "--json", "--seconds", "0.5", "--files", "2", "--quiet", cwd=tmp_path)
    scores = json.loads(report.stdout)
    assert scores["val_bits"] < 4 and 0 < scores["mel_distance_db"] < 25
    assert "validation:" in report.stderr and "log-mel distance" in report.stderr

    one_line_error(wavegen("synth", cwd=tmp_path, ok=False), "give --mel FILE.npy")
    one_line_error(wavegen("synth", "--mel", "up.wav", cwd=tmp_path, ok=False), "up.wav: cannot read mel features")
