"""The central property: a tiny WaveNet trained briefly on a tone generates that tone back, at any
pitch in the musical range, for any seed.

The pitches are drawn across 100–2000 Hz (log-uniformly, off round numbers) with a different
seed each: one fixed pitch hid octave errors at others. ``-m slow`` runs the whole sweep.
"""

import numpy as np
import pytest
import soundfile as sf

from wavegen.audio.io import write_wav
from wavegen.config import apply_overrides
from wavegen.data.prepare import prepare
from wavegen.recipe import load_recipe
from wavegen.runs import pick_checkpoint
from wavegen.synthesis.synth import synthesize
from wavegen.train.loop import train

from helpers import spectrum_peak, tone

pytestmark = pytest.mark.slow  # (make test-fast leaves these out; make test runs them)

STEPS = 400


def _sweep(count: int, seed: int) -> list[float]:
    """``count`` pitches spread log-uniformly over 100–2000 Hz, one drawn in each of ``count``
    equal (log) bands, so every draw covers the range."""
    rng = np.random.default_rng(seed)
    edges = np.linspace(np.log(100.0), np.log(2000.0), count + 1)
    return [round(float(np.exp(rng.uniform(lo, hi))), 1) for lo, hi in zip(edges[:-1], edges[1:])]


# (pitch, seed, precision); bf16: autocast, as train.precision=auto picks where it is native
CASES = [(hz, seed, "fp32") for seed, hz in enumerate(_sweep(4, seed=13))] + [(_sweep(1, seed=5)[0], 4, "bf16")]
SLOW = [(hz, seed, "fp32") for seed in (5, 6) for hz in _sweep(8, seed=seed) + [100.0, 2000.0]]


def learns_and_plays_back(folder, pitch: float, seed: int, precision: str) -> None:
    write_wav(folder / "dataset" / "tone.wav", tone(pitch, 10.0), 16000)
    config = apply_overrides(
        load_recipe("tiny"), [f"train.steps={STEPS}", f"train.precision={precision}", f"train.seed={seed}"]
    )
    prepare(folder / "dataset", folder / "prepared", config.data, progress=False)
    result = train(config, folder / "prepared", folder / "run", device="cpu", progress=False)

    first_bits, last_bits = result.val_history[0][1], result.val_history[-1][1]
    assert first_bits > 7.5, "an untrained model should start near 8 bits/sample"
    assert last_bits < 1.0, f"{pitch} Hz: validation stayed at {last_bits:.2f} bits/sample"

    for temperature in (1.0, 0.7):
        out = synthesize(
            pick_checkpoint(folder / "run"),
            folder / f"samples-{temperature}",
            seconds=1.0,
            n=3,
            seed=seed,
            temperature=temperature,
            device="cpu",
            progress=False,
        )
        for path in out.files:
            audio, rate = sf.read(path)
            assert rate == 16000 and len(audio) == 16000
            peak, flatness = spectrum_peak(audio, rate)
            rms = float(np.sqrt(np.mean((audio - audio.mean()) ** 2)))
            where = f"{pitch} Hz, seed {seed}, T={temperature}, {path.name}"
            assert abs(peak - pitch) / pitch < 0.02, f"{where}: peak at {peak:.1f} Hz"
            assert flatness < 0.1, f"{where}: noisy output (flatness {flatness:.3f})"
            assert 0.1 < rms < 0.6, f"{where}: level {rms:.3f} (silence or clipping)"


@pytest.mark.parametrize("pitch, seed, precision", CASES)
def test_tiny_model_learns_a_tone_and_generates_it_back(tmp_path, pitch, seed, precision):
    learns_and_plays_back(tmp_path, pitch, seed, precision)


@pytest.mark.sweep
@pytest.mark.parametrize("pitch, seed, precision", SLOW)
def test_every_pitch_of_a_wider_sweep(tmp_path, pitch, seed, precision):
    learns_and_plays_back(tmp_path, pitch, seed, precision)
