import pytest
import torch

from wavegen.config import ModelConfig
from wavegen.model.layers import CausalConv1d
from wavegen.model.network import WaveNet


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
    ModelConfig(
        cycles=1,
        layers_per_cycle=4,
        kernel_size=3,
        input_kernel_size=3,
        residual_channels=8,
        gate_channels=8,
        skip_channels=16,
    ),
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


# -- the trimmed training forward ------------------------------------------------------------
from wavegen.model.conditioning import StackedTerms  # noqa: E402
from wavegen.model.layers import gated  # noqa: E402


def padded_logits(model, codes, output_from, cond=None):
    """The padded, one-hot path: every layer over every position."""
    onehot = torch.nn.functional.one_hot(codes, 256).transpose(1, 2).float()
    return model.forward_onehot(onehot, output_from, cond=cond)


def grads(model, logits):
    found = torch.autograd.grad(logits.square().mean(), list(model.parameters()), allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(model.parameters(), found)]


@pytest.mark.parametrize("config", SHAPES)
@pytest.mark.parametrize("cond_kind", ["none", "per-sample", "fixed"])
def test_trimmed_forward_computes_what_the_padded_one_does(config, cond_kind):
    torch.manual_seed(2)
    model = WaveNet(config)
    rf = model.receptive_field
    codes = torch.randint(0, 256, (3, rf + 40))
    cond = None
    if cond_kind != "none":
        width = codes.shape[1] if cond_kind == "per-sample" else 1
        cond = StackedTerms(torch.randn(3, len(model.blocks), 2 * config.gate_channels, width))
    for output_from in (rf, rf + 9):
        trimmed, padded = model(codes, output_from, cond), padded_logits(model, codes, output_from, cond)
        assert trimmed.shape == padded.shape == (3, 256, codes.shape[1] - output_from)
        assert torch.allclose(trimmed, padded, atol=1e-5)
        for a, b in zip(grads(model, trimmed), grads(model, padded)):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-6 * b.abs().max().item())


@pytest.mark.parametrize("config", SHAPES)
def test_trimmed_logits_depend_on_exactly_the_receptive_field(config):
    """Change one code; exactly the logits at the next RF positions (in the output) move."""
    torch.manual_seed(3)
    model = WaveNet(config).eval()
    rf = model.receptive_field
    codes = torch.randint(0, 256, (1, 2 * rf + 10))
    with torch.no_grad():
        base = model(codes, output_from=rf)
        for p in (0, rf // 2, rf, rf + 5, codes.shape[1] - 1):
            changed = codes.clone()
            changed[0, p] = (changed[0, p] + 128) % 256
            moved = (model(changed, output_from=rf) - base).abs().amax(dim=1)[0] > 0  # (T - rf,)
            positions = {rf + i for i in torch.nonzero(moved).flatten().tolist()}
            assert positions == {t for t in range(rf, codes.shape[1]) if p < t <= p + rf}


def logits_and_saved_bytes(model, codes, output_from, **kwargs):
    """The logits, and the bytes autograd keeps for their backward pass."""
    storages = {}

    def pack(tensor):
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits = model(codes, output_from, **kwargs)
    return logits, sum(storages.values())


def test_recomputed_activations_give_identical_gradients_and_keep_less():
    torch.manual_seed(4)
    model = WaveNet(SHAPES[0])
    rf = model.receptive_field
    codes = torch.randint(0, 256, (2, rf + 300))
    plain, kept = logits_and_saved_bytes(model, codes, rf)
    again, kept_recomputing = logits_and_saved_bytes(model, codes, rf, recompute=True)
    assert all(torch.equal(a, b) for a, b in zip(grads(model, plain), grads(model, again)))
    assert kept_recomputing < 0.6 * kept


def test_fused_gate_has_the_gradient_of_the_plain_expression():
    torch.manual_seed(5)
    pre = torch.randn(2, 16, 50, requires_grad=True)
    weight = torch.randn(2, 8, 50)
    fused = torch.autograd.grad((gated(pre) * weight).sum(), pre)[0]
    filt, gate = pre.chunk(2, dim=1)
    plain = torch.autograd.grad((torch.tanh(filt) * torch.sigmoid(gate) * weight).sum(), pre)[0]
    assert torch.equal(gated(pre), torch.tanh(filt) * torch.sigmoid(gate))
    assert torch.equal(fused, plain)


def _explicitly_scaled_logits(model: WaveNet, codes: torch.Tensor) -> torch.Tensor:
    """The field's standard network written out: x_{l+1} = √0.5·(x_l + R_l z_l + r_l), head on
    √(1/L)·Σ skips, with the raw (unfolded) weights of ``model``'s parameters."""
    import math

    import torch.nn.functional as F

    half, layers = math.sqrt(0.5), len(model.blocks)
    x = model.input(F.one_hot(codes, 256).transpose(1, 2).float())  # (B, R, T)
    skips = 0
    for index, block in enumerate(model.blocks):
        pre = F.conv1d(
            F.pad(x, (block.conv.left_pad, 0)),
            block.conv.weight / half**index,
            block.conv.bias,
            dilation=block.dilation,
        )
        filt, gate = pre.chunk(2, dim=1)
        z = torch.tanh(filt) * torch.sigmoid(gate)
        x = half * (x + F.conv1d(z, block.residual.weight * half**index, block.residual.bias * half**index))
        skips = skips + F.conv1d(z, block.skip.weight * math.sqrt(layers), block.skip.bias * math.sqrt(layers))
    return model.head(skips / math.sqrt(layers))


@pytest.mark.parametrize("config", SHAPES)
def test_scaled_sums_compute_the_standard_network_with_plain_weights(config):
    """``scale_sums`` folds the √0.5 and √(1/L) factors into the weights the engines read: the
    model's logits are the explicitly scaled network's, for its own parameters."""
    torch.manual_seed(1)
    model = WaveNet(config)
    assert config.scale_sums and config.weight_norm
    with torch.no_grad():
        for p in model.parameters():  # away from the initial values, so every factor matters
            p.add_(0.1 * torch.randn_like(p))
        codes = torch.randint(0, 256, (2, model.receptive_field + 30))
        expected = _explicitly_scaled_logits(model, codes)
        assert torch.allclose(model(codes), expected, atol=1e-5, rtol=1e-4)
        rf = model.receptive_field
        assert torch.allclose(model(codes, output_from=rf), expected[..., rf:], atol=1e-5, rtol=1e-4)


def test_plain_state_dict_loads_into_an_unparameterised_model_and_computes_the_same():
    import dataclasses

    from wavegen.config import LEGACY_MODEL

    torch.manual_seed(2)
    config = SHAPES[0]
    model = WaveNet(config)
    plain = WaveNet(dataclasses.replace(config, **LEGACY_MODEL))
    plain.load_state_dict(model.plain_state_dict())
    codes = torch.randint(0, 256, (2, 60))
    with torch.no_grad():
        assert torch.allclose(model(codes), plain(codes), atol=1e-5)
    assert not any(".parametrizations." in key for key in plain.state_dict())


@pytest.mark.parametrize("init", ["kaiming", "torch"])
@pytest.mark.parametrize("weight_norm", [True, False])
def test_every_parameterisation_keeps_the_receptive_field(init, weight_norm):
    import dataclasses

    torch.manual_seed(3)
    model = WaveNet(dataclasses.replace(SHAPES[1], init=init, weight_norm=weight_norm))
    rf = model.receptive_field
    onehot = torch.nn.functional.one_hot(torch.randint(0, 256, (1, rf + 10)), 256).transpose(1, 2).float()
    seen = dependence(lambda x: model.forward_onehot(x)[..., rf + 5], onehot)
    assert set(torch.nonzero(seen).flatten().tolist()) == set(range(5, rf + 5))


def test_recomputing_without_context_gives_identical_gradients_and_keeps_less():
    """train.full_context = false runs the padded forward; checkpointing works there too."""
    torch.manual_seed(6)
    model = WaveNet(SHAPES[0])
    codes = torch.randint(0, 256, (2, 400))
    plain, kept = logits_and_saved_bytes(model, codes, 0)
    again, kept_recomputing = logits_and_saved_bytes(model, codes, 0, recompute=True)
    assert torch.equal(plain, again)
    assert all(torch.equal(a, b) for a, b in zip(grads(model, plain), grads(model, again)))
    assert kept_recomputing < 0.75 * kept  # (the one-hot input and the head are kept either way)


@pytest.mark.parametrize("weight_norm", [True, False])
def test_a_model_run_in_inference_mode_first_still_trains(weight_norm):
    """``layer_weights`` keeps the stack's fixed factors from its first call: a sampler's
    inference mode must not make them tensors that training cannot use."""
    model = WaveNet(ModelConfig(cycles=2, layers_per_cycle=3, residual_channels=8, gate_channels=8, skip_channels=8))
    if not weight_norm:
        model = WaveNet(ModelConfig(cycles=2, layers_per_cycle=3, weight_norm=False))
    codes = torch.randint(0, 256, (2, 40))
    with torch.inference_mode():
        first = model(codes)
    again = model(codes)
    again.logsumexp(1).sum().backward()
    assert torch.equal(first, again.detach()) and all(p.grad is not None for p in model.parameters())
