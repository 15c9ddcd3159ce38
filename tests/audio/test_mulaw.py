import numpy as np
import torch

from wavegen.audio import mulaw


def test_every_code_survives_decode_then_encode():
    codes = torch.arange(256)
    assert torch.equal(mulaw.encode(mulaw.decode(codes)), codes)


def test_audio_round_trip_error_is_within_one_quantisation_step():
    x = torch.linspace(-1, 1, 10001)
    y = mulaw.decode(mulaw.encode(x))
    # µ-law steps grow with amplitude: the largest step (at full scale) is about 0.03.
    assert (y - x).abs().max() < 0.035
    quiet = x.abs() < 0.01
    assert (y - x)[quiet].abs().max() < 0.0005  # fine resolution near zero is the point of µ-law


def test_silence_code_and_clipping():
    assert mulaw.encode(torch.tensor([0.0])).item() == mulaw.SILENCE_CODE
    assert mulaw.encode(torch.tensor([-5.0, 5.0])).tolist() == [0, 255]
    codes = mulaw.encode_uint8(np.array([-1.0, 0.0, 1.0], dtype=np.float32))
    assert codes.dtype == np.uint8 and codes.tolist() == [0, 128, 255]
