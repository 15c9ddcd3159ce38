import pytest
import torch

from wavegen.config import ModelConfig
from wavegen.model import CausalConv1d, WaveNet


def dependence(output_at, x: torch.Tensor) -> torch.Tensor:
    """Per input time step, whether d output / d input is non-zero (bool (T,))."""
    x = x.clone().requires_grad_(True)
    output_at(x).sum().backward()
    return x.grad.abs().sum(dim=(0, 1)) > 0


@pytest.mark.parametrize("mask_type", ["A", "B"])
@pytest.mark.parametrize("kernel_size, dilation", [(2, 1), (2, 4), (3, 2), (4, 3)])
def test_causal_conv_sees_exactly_its_taps(mask_type, kernel_size, dilation):
    torch.manual_seed(0)
    conv = CausalConv1d(3, 5, kernel_size, dilation, mask_type)
    x = torch.randn(1, 3, 40)
    for t in (0, 5, 20, 39):
        seen = dependence(lambda x: conv(x)[..., t], x)
        first = 1 if mask_type == "A" else 0
        expected = {t - i * dilation for i in range(first, kernel_size + first) if t - i * dilation >= 0}
        assert set(torch.nonzero(seen).flatten().tolist()) == expected
    assert conv(x).shape == (1, 5, 40)


def test_tap_offsets_match_the_convolution():
    conv = CausalConv1d(1, 1, 3, 2, "A")
    assert conv.tap_offsets() == [6, 4, 2]
    assert CausalConv1d(1, 1, 3, 2, "B").tap_offsets() == [4, 2, 0]


SHAPES = [
    ModelConfig(cycles=2, layers_per_cycle=3, residual_channels=8, gate_channels=8, skip_channels=16),
    ModelConfig(cycles=1, layers_per_cycle=4, kernel_size=3, input_kernel_size=3,
                residual_channels=8, gate_channels=8, skip_channels=16),
]


@pytest.mark.parametrize("config", SHAPES)
def test_wavenet_output_depends_on_exactly_the_receptive_field(config):
    torch.manual_seed(0)
    model = WaveNet(config)
    rf = model.receptive_field
    length = rf + 20
    onehot = torch.nn.functional.one_hot(torch.randint(0, 256, (1, length)), 256).transpose(1, 2).float()
    for t in (length - 1, rf + 3, 5):
        seen = dependence(lambda x: model.forward_onehot(x)[..., t], onehot)
        expected = set(range(max(t - rf, 0), t))  # never t itself (type A), nothing after
        assert set(torch.nonzero(seen).flatten().tolist()) == expected


def test_receptive_field_of_the_default_shape():
    model = WaveNet(ModelConfig())
    assert model.dilations[:10] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    assert len(model.dilations) == 30
    assert model.receptive_field == 2 + 3 * 1023


def test_future_codes_do_not_change_past_logits_and_output_from_slices():
    torch.manual_seed(1)
    model = WaveNet(SHAPES[0]).eval()
    codes = torch.randint(0, 256, (2, 60))
    changed = codes.clone()
    changed[:, 30:] = torch.randint(0, 256, (2, 30))
    with torch.no_grad():
        full, other = model(codes), model(changed)
        assert torch.equal(full[..., :31], other[..., :31])  # logits at 30 see codes < 30
        assert not torch.allclose(full[..., 31:], other[..., 31:])
        assert torch.allclose(model(codes, output_from=25), full[..., 25:], atol=1e-6)
        assert full.shape == (2, 256, 60)
