import pytest
import torch
import torch.nn.functional as F

from wavegen.config import ModelConfig
from wavegen.errors import OutOfMemory
from wavegen.memory import activation_bytes, check_fits, fixed_bytes, largest_batch
from wavegen.model import WaveNet

SMALL = ModelConfig(cycles=2, layers_per_cycle=3, residual_channels=8, gate_channels=8, skip_channels=16)
REF = ModelConfig(cycles=2, layers_per_cycle=10)


def saved_by_autograd(model, batch, segment, **kwargs):
    """Bytes of the activations autograd keeps for a training loss (weights not counted)."""
    rf = model.receptive_field
    codes = torch.randint(0, 256, (batch, rf + segment), generator=torch.Generator().manual_seed(0))
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages = {}

    def pack(tensor):
        pointer = tensor.untyped_storage().data_ptr()
        if pointer not in weights:
            storages[pointer] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        F.cross_entropy(model(codes, rf, **kwargs), torch.zeros(batch, segment, dtype=torch.long))
    return sum(storages.values())


@pytest.mark.parametrize("config", [SMALL, REF])
@pytest.mark.parametrize("segment", [300, 3000])
def test_activation_count_matches_what_autograd_keeps(config, segment):
    model = WaveNet(config)
    window = model.receptive_field + segment
    measured = saved_by_autograd(model, 2, segment) / 2
    assert activation_bytes(model, window, segment) == pytest.approx(measured, rel=0.03)
    # Recomputing keeps the block inputs; the count adds one block rebuilt during backward.
    kept = saved_by_autograd(model, 2, segment, recompute=True) / 2
    estimate = activation_bytes(model, window, segment, recompute=True)
    assert kept < estimate < kept + 0.5 * measured
    if config is REF:  # (in the small shape the 256-way head outweighs the blocks)
        assert estimate < 0.4 * activation_bytes(model, window, segment)


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
