import pytest
import torch
import torch.nn.functional as F

from wavegen.config import ModelConfig
from wavegen.errors import OutOfMemory
from wavegen.model.network import WaveNet
from wavegen.train.memory import (
    activation_bytes,
    check_fits,
    fixed_bytes,
    largest_batch,
    saved_weight_bytes,
)

SMALL = ModelConfig(cycles=2, layers_per_cycle=3, residual_channels=8, gate_channels=8, skip_channels=16)
REF = ModelConfig(cycles=2, layers_per_cycle=10)


def saved_by_autograd(model, batch, segment, context=True, **kwargs):
    """Bytes autograd keeps for a training loss over ``batch`` windows (new memory: tensors it
    keeps that are parameters themselves do not count); ``context``: windows of receptive
    field + segment codes predicting the last segment, else of segment codes, all predicted."""
    rf = model.receptive_field if context else 0
    codes = torch.randint(0, 256, (batch, rf + segment), generator=torch.Generator().manual_seed(0))
    storages = {}
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def pack(tensor):
        if tensor.untyped_storage().data_ptr() not in parameters:
            storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        F.cross_entropy(model(codes, rf, **kwargs), torch.zeros(batch, segment, dtype=torch.long))
    return sum(storages.values())


def saved_per_window(model, segment, **kwargs):
    """What one more window adds: the weights, and under autocast their bf16 copies, drop out."""
    return (saved_by_autograd(model, 3, segment, **kwargs) - saved_by_autograd(model, 1, segment, **kwargs)) / 2


@pytest.mark.parametrize("config", [SMALL, REF])
@pytest.mark.parametrize("segment", [300, 3000])
def test_activation_count_matches_what_autograd_keeps(config, segment):
    model = WaveNet(config)
    window = model.receptive_field + segment
    measured = saved_per_window(model, segment)
    assert activation_bytes(model, window, segment) == pytest.approx(measured, rel=0.03)
    # Recomputing keeps the block inputs; the count adds one block rebuilt during backward.
    kept = saved_per_window(model, segment, recompute=True)
    estimate = activation_bytes(model, window, segment, recompute=True)
    assert kept < estimate < kept + 0.5 * measured
    if config is REF:  # (in the small shape the 256-way head outweighs the blocks)
        assert estimate < 0.4 * activation_bytes(model, window, segment)


@pytest.mark.parametrize("config", [SMALL, REF])
@pytest.mark.parametrize("value_bytes", [4, 2])
def test_activation_count_of_windows_without_context(config, value_bytes):
    """train.full_context = false: windows of segment codes through the padded forward."""
    model, segment = WaveNet(config), 2000
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=value_bytes == 2):
        measured = saved_per_window(model, segment, context=False)
        kept = saved_per_window(model, segment, context=False, recompute=True)
    assert activation_bytes(model, segment, segment, value_bytes=value_bytes) == pytest.approx(measured, rel=0.03)
    estimate = activation_bytes(model, segment, segment, recompute=True, value_bytes=value_bytes)
    assert kept < estimate < kept + 0.5 * measured


@pytest.mark.parametrize("config", [SMALL, REF])
@pytest.mark.parametrize("segment", [300, 3000])
def test_activation_count_under_bf16_autocast(config, segment):
    """At 2 bytes a value: the convolutions keep bf16 copies, the loss and checkpointed block
    inputs stay float32. The weights' bf16 copies are a fixed cost, counted in fixed_bytes."""
    model = WaveNet(config)
    window = model.receptive_field + segment
    with torch.autocast("cpu", dtype=torch.bfloat16):
        measured = saved_per_window(model, segment)
        kept = saved_per_window(model, segment, recompute=True)
        whole = saved_by_autograd(model, 1, segment)
    assert activation_bytes(model, window, segment, value_bytes=2) == pytest.approx(measured, rel=0.03)
    if config is REF:  # about half of float32's (not in the small shape, where the float32 loss dominates)
        assert activation_bytes(model, window, segment, value_bytes=2) < 0.6 * activation_bytes(model, window, segment)
    estimate = activation_bytes(model, window, segment, recompute=True, value_bytes=2)
    assert kept < estimate < kept + 0.5 * measured
    copies = saved_weight_bytes(model, value_bytes=2)
    assert 0.5 * copies < whole - measured <= 1.02 * copies  # what a window does not explain: weight copies (and norms)


def test_check_names_the_largest_batch_that_fits():
    model = WaveNet(REF)
    segment, window = 8000, model.receptive_field + 8000
    per_window = activation_bytes(model, window, segment)
    free = fixed_bytes(model) + 10 * per_window + per_window // 2
    assert largest_batch(model, window, segment, free) == 10
    check_fits(model, 10, segment, torch.device("cpu"), free=free)  # fits: no error
    with pytest.raises(OutOfMemory) as caught:
        check_fits(model, 11, segment, torch.device("cpu"), free=free)
    message = str(caught.value)
    assert "largest batch that fits is 10" in message and "\n" not in message
    assert "activation_checkpointing" in message
    check_fits(model, 11, segment, torch.device("cpu"), recompute=True, free=free)


def test_check_of_windows_without_context_counts_segment_codes():
    model = WaveNet(REF)
    segment = 8000
    per_window = activation_bytes(model, segment, segment)
    assert per_window < activation_bytes(model, model.receptive_field + segment, segment)
    free = fixed_bytes(model) + 10 * per_window + per_window // 2
    check_fits(model, 10, segment, torch.device("cpu"), free=free, full_context=False)  # fits: no error
    with pytest.raises(OutOfMemory) as caught:
        check_fits(model, 11, segment, torch.device("cpu"), free=free, full_context=False)
    message = str(caught.value)
    assert "batch 11 × 8000 samples needs" in message and "largest batch that fits is 10" in message
