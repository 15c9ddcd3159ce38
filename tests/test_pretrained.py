"""The models that ship with wavegen: by name, right after installing, with no download."""

import numpy as np
import pytest

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
