"""The sampling benchmark's yardsticks: the peer's sampler (the same network, stepped the peer's
way), the matmul peak and the arithmetic per sample."""

from __future__ import annotations

import math

import pytest
import torch
from generate.test_sampling import SHAPES

from wavegen.bench import sampling as bench
from wavegen.bench.machine import cpu_name, flops_per_sample, sgemm_gflops
from wavegen.bench.peer import PeerSampler, PeerUnavailable
from wavegen.generate.torch_engine import TorchEngine
from wavegen.recipe import load_recipe

from helpers import random_model

SMALL = SHAPES["k2"]


@pytest.mark.parametrize("shape", SHAPES)
def test_the_peer_steps_the_same_network(shape):
    """Teacher-forced from a history, every step's logits are those of one parallel forward pass
    over the whole sequence: the peer's buffers hold the right inputs and shift the right way."""
    model = random_model(SHAPES[shape], seed=1)
    rf = model.receptive_field
    history = torch.randint(0, 256, (2, 37), generator=torch.Generator().manual_seed(2))
    future = torch.randint(0, 256, (2, 3 * rf), generator=torch.Generator().manual_seed(3))
    peer = PeerSampler(model)
    peer.reset(2, history)
    steps = []
    for n in range(future.shape[1]):
        steps.append(peer.logits())
        assert peer.logits() is steps[-1]  # asked again before append: the same step, not another
        peer.append(future[:, n])
    stepped = torch.stack(steps, dim=2)  # (B, classes, N)
    with torch.no_grad():
        full = model(torch.cat([torch.full((2, rf), 128), history, future], dim=1), output_from=rf + 37)
    assert (stepped[:, :, 0] - full[:, :, 0]).abs().max() < 1e-4  # the first step, from the history alone
    assert (stepped - full).abs().max() < 1e-4


def test_the_peer_draws_codes_of_its_own_reproducibly():
    model = random_model(SMALL)
    peer = PeerSampler(model)
    before = torch.random.get_rng_state()
    codes = peer.sample(300, [5, 6, 7])
    assert codes.shape == (3, 300) and codes.dtype == torch.uint8
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's random state is untouched
    assert torch.equal(peer.sample(300, [5, 6, 7]), codes)  # the same seed, the same codes
    assert not torch.equal(peer.sample(300, [8, 6, 7]), codes)
    assert len(set(codes[0].tolist())) > 10 and not torch.equal(codes[0], codes[1])


def test_the_peer_refuses_a_conditioned_model():
    model = random_model(bench.conditioned(SMALL, "labels"))
    with pytest.raises(PeerUnavailable, match="unconditioned models only"):
        PeerSampler(model)


def test_flops_per_sample_counts_every_matrix_a_step_multiplies():
    model = random_model(load_recipe("tiny").model)
    packed = TorchEngine(model)  # the matrices a cached step multiplies, counted from the packed weights
    macs = sum(layer["conv"].numel() + layer["out"].numel() for layer in packed.layers)
    macs += packed.head[0].numel() + packed.head[2].numel()
    assert flops_per_sample(model) == 2 * macs == 2 * (7 * (2 * 32 * 2 * 16 + 32 * (16 + 32)) + 32 * (32 + 256))


def test_the_sgemm_peak_is_a_rate_and_leaves_the_threads_as_they_were():
    threads = torch.get_num_threads()
    small, large = sgemm_gflops(64, repeats=3, threads=1), sgemm_gflops(512, repeats=3, threads=1)
    assert torch.get_num_threads() == threads
    assert 0.05 < small < 1e5 and 0.05 < large < 1e5 and math.isfinite(large)
    assert "bf16" in cpu_name()
