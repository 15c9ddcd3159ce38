"""Wrong values given to the Python API and the generation request: every one is the error the
docstrings promise (``ConfigError``, one line), never a bare ValueError or TypeError; seeds
outside 0..2**64 - 1 are refused, not wrapped; mel features in another scale are said."""

from __future__ import annotations

import math

import numpy as np
import pytest

import wavegen
from wavegen.audio import mel_input
from wavegen.audio.features import SILENCE
from wavegen.errors import ConfigError, OutOfRange
from wavegen.generate.request import GenerationRequest

SHIPPED = "melodies"  # the model that ships with wavegen: loads without training


@pytest.mark.parametrize(
    "fields, said",
    [
        ({"engine": "warp"}, "unknown engine 'warp'"),
        ({"engine": 3}, "engine must be a name"),
        ({"seconds": "1"}, "seconds must be a number of seconds, got str '1'"),
        ({"n": 1.5}, "n must be a whole number, got float 1.5"),
        ({"n": "2"}, "n must be a whole number"),
        ({"temperature": "hot"}, "temperature must be a number"),
        ({"labels": 5}, "labels must be a label name or a list of them"),
        ({"labels": ["a", 2]}, "labels must be label names"),
        ({"device": None}, "device must be a name"),
    ],
)
def test_a_request_of_the_wrong_type_is_a_config_error(fields, said):
    with pytest.raises(ConfigError, match=said):
        GenerationRequest(**fields)


@pytest.mark.parametrize(
    "seed, n",
    [
        (-1, None),
        (-(2**64), None),
        (2**64, None),
        (2**70, 1),
        (2**64 - 1, 2),
        (2**64 - 3, 4),
        (1.5, None),
        (True, None),
    ],
)
def test_seeds_outside_the_64_bit_range_are_refused_not_wrapped(seed, n):
    with pytest.raises(OutOfRange, match="--seed must be"):
        GenerationRequest(seed=seed, n=n)


@pytest.mark.parametrize("seed, n", [(0, None), (2**64 - 1, 1), (2**64 - 4, 4), (12345, 7)])
def test_every_seed_in_range_is_taken(seed, n):
    assert GenerationRequest(seed=seed, n=n).seed == seed


def test_the_command_line_refuses_such_a_seed_as_a_usage_error():
    from click.testing import CliRunner

    from wavegen.cli import main

    for args in (["--seed", "-1"], ["--seed", str(2**64)], ["--seed", str(2**64 - 1), "--n", "3"]):
        done = CliRunner().invoke(main, ["synth", "--checkpoint", SHIPPED, "--seconds", "0.01", *args])
        assert done.exit_code == 2 and "--seed must be in 0..2**64" in done.output, done.output


@pytest.fixture(scope="module")
def model():
    return wavegen.load(SHIPPED)


@pytest.mark.parametrize(
    "call, said",
    [
        (lambda m: m.generate(seconds=0.01, engine="warp"), "unknown engine 'warp'"),
        (lambda m: m.generate(seconds=0.01, seed=-5), "--seed must be in"),
        (lambda m: m.generate(seconds="0.5"), "seconds must be a number"),
        (lambda m: m.generate(seconds=0.01, n=2.0), "n must be a whole number"),
        (lambda m: next(iter(m.stream(seconds=0.01, chunk="big"))), "block of big samples"),
        (lambda m: next(iter(m.stream(seconds=0.01, seed=2**64))), "--seed must be in"),
        (lambda m: wavegen.load(5), "source must be a path or None"),
        (lambda m: wavegen.load_recipe(3), "recipe must be a name or a path"),
        (lambda m: wavegen.load_recipe("tiny").override(5), "expected a 'section.key=value' string"),
        (lambda m: wavegen.fit("nowhere", "runs/x", recipe="tiny", steps="5"), "steps must be a whole number"),
        (lambda m: wavegen.fit("nowhere", "runs/x", recipe="tiny", steps=0), "steps must be a whole number"),
        (lambda m: wavegen.fit("nowhere", "runs/x", recipe="tiny", device="tpu"), "device 'tpu': choose auto"),
        (lambda m: wavegen.fit("nowhere", "runs/x", recipe="tiny", overrides="train.lr=1"), "overrides must be a list"),
        (lambda m: wavegen.fit("nowhere", "runs/x", recipe="tiny", overrides=[3]), "overrides must be a list"),
    ],
)
def test_the_api_raises_the_errors_its_docstrings_promise(model, tmp_path, monkeypatch, call, said):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=said):
        call(model)
    assert not (tmp_path / "runs").exists()


def _log_mels(rng, frames=50, bands=20):
    """Features in log_mel's scale: ln magnitudes from its floor (silence) to a loud band."""
    return np.clip(rng.normal(-4.0, 2.5, (frames, bands)), SILENCE, 3.0).astype(np.float32)


@pytest.mark.parametrize("seed", range(4))
def test_natural_log_mels_get_no_note_and_other_scales_do(seed):
    rng = np.random.default_rng(seed)
    mels = _log_mels(rng)
    assert mel_input.scale_note(mels) is None
    assert mel_input.scale_note(np.full((3, 20), SILENCE, np.float32)) is None  # digital silence
    db = mels * 20 / math.log(10)  # decibels of magnitude (down to -100)
    power_db = mels * 10 / math.log(10) * 2 - 20  # decibels of power, another reference
    for other, guess in [
        (db, "decibels"),
        (power_db, "decibels"),
        (2 * mels, "the logarithm of power"),
        (np.exp(mels), "linear magnitudes or power"),
        (np.exp(2 * mels), "linear magnitudes or power"),
        (np.exp(mels) * 1e9, "linear"),
    ]:
        note = mel_input.scale_note(other.astype(np.float32))
        assert note is not None and guess in note and "not natural-log mel magnitudes" in note


def test_frames_as_they_come_are_noted_once(said):
    rng = np.random.default_rng(0)
    batches = [_log_mels(rng, 4) * 20 / math.log(10) for _ in range(5)]
    assert len(list(mel_input.noted_frames(iter(batches), "stdin"))) == 5
    assert len(said) == 1 and said[0].startswith("note: stdin: mel values from ")
    said.clear()
    assert len(list(mel_input.noted_frames(iter([_log_mels(rng, 4) for _ in range(3)]), "x"))) == 3 and not said
