"""The central property: a tiny WaveNet trained briefly on a tone generates that tone back."""
import numpy as np
import pytest
import soundfile as sf

from conftest import spectrum_peak, tone
from wavegen.audio import write_wav
from wavegen.config import apply_overrides, load_recipe
from wavegen.data import prepare
from wavegen.synth import pick_checkpoint, synthesize
from wavegen.train import train

TONE_HZ = 440.0


@pytest.mark.parametrize("steps", [400])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])  # bf16: autocast, as train.precision=auto picks where native
def test_tiny_model_learns_a_tone_and_generates_it_back(tmp_path, steps, precision):
    write_wav(tmp_path / "dataset" / "a440.wav", tone(TONE_HZ, 10.0), 16000)
    config = apply_overrides(load_recipe("tiny"), [f"train.steps={steps}", f"train.precision={precision}"])
    prepare(tmp_path / "dataset", tmp_path / "prepared", config.data, log=lambda m: None, progress=False)
    result = train(config, tmp_path / "prepared", tmp_path / "run", device="cpu", log=lambda m: None, progress=False)

    first_bits, last_bits = result.val_history[0][1], result.val_history[-1][1]
    assert first_bits > 7.5, "an untrained model should start near 8 bits/sample"
    assert last_bits < 1.5, f"validation stayed at {last_bits:.2f} bits/sample"

    for temperature in (1.0, 0.7):
        out = synthesize(pick_checkpoint(tmp_path / "run"), tmp_path / f"samples-{temperature}", seconds=1.0,
                         n=3, seed=0, temperature=temperature, device="cpu", log=lambda m: None, progress=False)
        for path in out.files:
            audio, rate = sf.read(path)
            assert rate == 16000 and len(audio) == 16000
            peak, flatness = spectrum_peak(audio, rate)
            rms = float(np.sqrt(np.mean((audio - audio.mean()) ** 2)))
            assert abs(peak - TONE_HZ) / TONE_HZ < 0.02, f"{path.name}: peak at {peak:.1f} Hz"
            assert flatness < 0.1, f"{path.name}: noisy output (flatness {flatness:.3f})"
            assert 0.1 < rms < 0.6, f"{path.name}: level {rms:.3f} (silence or clipping)"
