"""Conditioning: the label and mel terms, their alignment, and what each sample depends on."""

import numpy as np
import pytest
import torch

from wavegen.audio.features import SILENCE, MelSettings, log_mel, mel_distance
from wavegen.config import DataConfig, ModelConfig
from wavegen.model.conditioning import (
    CONTEXT_FRAMES,
    Conditioning,
    WindowTerms,
    mel_window,
    slice_frames,
)
from wavegen.model.network import WaveNet

from helpers import tone

HOP = 16
CONFIG = ModelConfig(
    cycles=1,
    layers_per_cycle=4,
    residual_channels=8,
    gate_channels=8,
    skip_channels=16,
    labels=["a", "b", "c"],
    mel_channels=5,
    mel_hop=HOP,
    cond_channels=12,
)


def conditioned_model(seed: int = 0, **changes) -> WaveNet:
    torch.manual_seed(seed)
    config = ModelConfig(**{**CONFIG.__dict__, **changes})
    model = WaveNet(config).eval()
    if config.mel_channels:  # a kernel that is not plain interpolation, so any misalignment shows
        with torch.no_grad():
            model.conditioner.upsample_kernel.add_(0.3 * torch.randn_like(model.conditioner.upsample_kernel))
    return model


def test_window_terms_equal_the_whole_recording_computed_at_once():
    """Training computes terms per window from a slice of frames (silence outside the file);
    generation from all frames. Both must give the same term for every sample."""
    model = conditioned_model()
    mels = torch.randn(2, 5, 30) * 2 - 4
    labels = torch.tensor([2, 0])
    whole = Conditioning(model, labels, mels)
    length = 100
    for starts in ([0, 0], [-37, 5], [123, 401], [470, -100]):  # a row each; ends past the file too
        slices, offsets = [], []
        for row, start in enumerate(starts):
            first, count = mel_window(start, length, HOP)
            slices.append(slice_frames(mels[row : row + 1], first, count)[0])
            offsets.append(start % HOP)
        with torch.no_grad():
            window = WindowTerms(model.conditioner, length, labels, torch.stack(slices), torch.tensor(offsets))
            for row, start in enumerate(starts):
                expected = whole.bias(start, length)[row]  # (length, L, 2G)
                for layer in range(len(model.blocks)):
                    got = window.layer(layer)[row].T  # (length, 2G)
                    assert torch.allclose(got, expected[:, layer], atol=1e-5), (starts, row, layer)


def test_bias_is_the_same_whatever_the_chunking():
    model = conditioned_model(labels=[])
    cond = Conditioning(model, None, torch.randn(3, 5, 12))
    whole = cond.bias(-40, 240)
    pieces = torch.cat([cond.bias(s, 17) for s in range(-40, 200, 17)], dim=1)[:, :240]
    assert torch.allclose(whole, pieces, atol=1e-6)


def test_labels_alone_give_a_constant_term_per_stream():
    model = conditioned_model(mel_channels=0, mel_hop=0)
    cond = Conditioning(model, torch.tensor([0, 1, 0]))
    bias = cond.bias(-5, 20)  # (B, T, L, 2G)
    assert cond.time_invariant and bias.shape == (3, 20, 4, 16)
    assert torch.equal(bias[:, :1].expand_as(bias), bias)
    assert torch.equal(bias[0], bias[2]) and not torch.equal(bias[0], bias[1])
    with pytest.raises(ValueError, match="must match the model"):
        Conditioning(model, None, torch.zeros(1, 5, 4))


def dependence(fn, x: torch.Tensor) -> set[int]:
    x = x.clone().requires_grad_(True)
    fn(x).sum().backward()
    return set(torch.nonzero(x.grad.abs().sum(dim=(0, 1)) > 0).flatten().tolist())


def test_a_sample_depends_on_the_mel_frames_around_its_own_and_on_past_codes_only():
    model = conditioned_model(labels=[])
    frames, length = 20, 20 * HOP
    mels = torch.randn(1, 5, frames) * 2 - 4
    codes = torch.randint(0, 256, (1, length))
    rf = model.receptive_field
    for t in (0, 5 * HOP + 3, 11 * HOP, length - 1):

        def logits_at(m, t=t):
            first, count = mel_window(0, length, HOP)
            window = WindowTerms(
                model.conditioner, length, mels=slice_frames(m, first, count), offsets=torch.tensor([0])
            )
            return model(codes, cond=window)[..., t]

        # The terms of positions t - (RF - k_in) .. t reach the logits at t (through the
        # residual path), and each position reads the frames within CONTEXT_FRAMES of its own.
        oldest = t - (rf - CONFIG.input_kernel_size)
        expected = set(range(max(oldest // HOP - CONTEXT_FRAMES, 0), min(t // HOP + CONTEXT_FRAMES, frames - 1) + 1))
        assert dependence(logits_at, mels) == expected
        before, after = model.mel_context
        assert min(expected) >= t // HOP - before and max(expected) <= t // HOP + after
        onehot = torch.nn.functional.one_hot(codes, 256).transpose(1, 2).float()
        terms = Conditioning(model, None, mels).terms(0, length)
        seen = dependence(lambda x: model.forward_onehot(x, cond=terms)[..., t], onehot)
        assert seen == set(range(max(t - rf, 0), t))  # conditioning leaves the codes causal


def test_a_conditioned_model_refuses_to_run_without_its_conditioning():
    with pytest.raises(ValueError, match="conditioned"):
        conditioned_model()(torch.zeros(1, 10, dtype=torch.long))


SETTINGS = MelSettings(sample_rate=16000, bands=20, hop=128, n_fft=512, fmin=0.0, fmax=4000.0)


def test_log_mel_frames_are_aligned_with_the_samples():
    audio = np.zeros(16000, np.float32)
    audio[40 * 128 : 60 * 128] = tone(1000, 20 * 128 / 16000)  # a burst filling frames 40..59 exactly
    feats = log_mel(audio, SETTINGS)
    assert feats.shape == (125, 20) and feats.dtype == np.float32
    loud = feats.max(axis=1) > SILENCE + 1
    # Frames whose window (n_fft centred on the hop) touches the burst: the burst's frames and,
    # with a 512-sample window over 128-sample hops, one and a half hops either side.
    assert np.flatnonzero(loud).tolist() == list(range(38, 62))
    assert np.all(feats[:30] == np.float32(SILENCE))  # digital silence is exactly SILENCE
    assert log_mel(audio[:1000], SETTINGS).shape == (8, 20)  # ceil(1000 / 128)
    assert mel_distance(feats, feats) == 0.0
    # Half the amplitude is 6.02 dB less wherever neither is clamped at the silence floor.
    half = log_mel(0.5 * audio, SETTINGS)
    strong = half > SILENCE + 1
    assert mel_distance(feats[strong][:, None], half[strong][:, None]) == pytest.approx(20 * np.log10(2), rel=1e-3)


def test_mel_settings_come_from_the_data_config():
    s = MelSettings.from_data(DataConfig(mel_bands=80, mel_fmax=0.0))
    assert (s.bands, s.hop, s.n_fft, s.fmax) == (80, 256, 1024, 8000.0)
