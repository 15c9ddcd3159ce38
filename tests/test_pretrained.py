"""The models that ship with wavegen: by name, right after installing, with no download."""

import numpy as np
import pytest
import soundfile as sf

import wavegen
from wavegen import pretrained
from wavegen.errors import CheckpointError

from helpers import spectrum_peak


def test_the_shipped_model_is_found_by_name_and_makes_tones_not_noise():
    assert pretrained.names() == ["melodies"] and "Melodies of harmonic tones" in pretrained.summary("melodies")
    model = wavegen.load("melodies")
    assert model.checkpoint == pretrained.SHIPPED / "melodies" and model.sample_rate == 16000
    for seed in (0, 1, 2):
        audio = model.generate(seconds=1.0, seed=seed).audio[0]
        peak, flatness = spectrum_peak(audio, 16000)
        assert flatness < 0.05 and 100 < peak < 2000 and audio.std() > 0.05, (seed, peak, flatness)


def test_a_path_wins_over_a_name_and_an_unknown_name_lists_the_models(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "melodies").mkdir()  # a folder of the user's by that name: theirs, not the shipped model
    with pytest.raises(CheckpointError, match="melodies: not a run folder"):
        wavegen.load("melodies")
    with pytest.raises(
        CheckpointError, match=r"--model birdsong: no such model ships with wavegen \(there are: melodies"
    ):
        pretrained.find("birdsong")
    assert np.isfinite(wavegen.load(pretrained.find("melodies")).generate(seconds=0.01).audio).all()


def test_synth_model_name_writes_the_shipped_models_audio_and_models_lists_it(tmp_path):
    from click.testing import CliRunner

    from wavegen.cli import main

    runner = CliRunner()
    listed = runner.invoke(main, ["models"])
    assert listed.exit_code == 0 and listed.output.startswith("melodies  (") and "harmonic tones" in listed.output
    done = runner.invoke(
        main, ["synth", "--model", "melodies", "--seconds", "0.25", "--seed", "3", "-q", "--out", str(tmp_path)]
    )
    assert done.exit_code == 0, done.output
    assert "wrote 1 file to" in done.output and "over 1 stream," in done.output  # (one of each, said so)
    (wav,) = tmp_path.glob("*.wav")
    written, _ = sf.read(wav, dtype="float32")
    expected = wavegen.load("melodies").generate(seconds=0.25, seed=3).audio[0]
    np.testing.assert_allclose(written, expected, atol=1 / 32767)
    for args in (["--model", "birdsong"], ["--model", "melodies", "--run", "runs/x"]):
        refused = runner.invoke(main, ["synth", *args, "--out", str(tmp_path / "no")])
        assert refused.exit_code in (1, 2) and "Error: " in refused.output and not (tmp_path / "no").exists()
