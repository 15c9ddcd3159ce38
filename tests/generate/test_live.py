"""Live generation: blocks of codes as they are made are exactly ``generate``'s codes, whatever
the block size, the engine, the conditioning and the past; a vocoder's mel frames may arrive
while it generates, and are read no earlier than needed."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from wavegen.errors import ConfigError
from wavegen.generate.cuda_graph import CudaGraphEngine
from wavegen.generate.engines import generate
from wavegen.generate.live import MelFeed, generate_blocks
from wavegen.generate.native import check
from wavegen.generate.torch_engine import TorchEngine
from wavegen.model.conditioning import Conditioning

from helpers import native_or_skip, random_model

SHAPES = {name: dataclasses.replace(config, **check.COND) for name, config in check.SHAPES.items()}
SEEDS = [7, 8]
HOP = check.COND["mel_hop"]


def model_for(kind: str, shape: str = "k2", seed: int = 3):
    config = SHAPES[shape]
    if kind in ("none", "labels"):
        config = dataclasses.replace(config, mel_channels=0, mel_hop=0)
    if kind in ("none", "mels"):
        config = dataclasses.replace(config, labels=[])
    if kind == "none":
        config = dataclasses.replace(config, cond_channels=0)
    return random_model(config, seed)


def engine_for(name: str, model):
    if name.startswith("native"):
        precision = name.partition("-")[2] or "fp32"
        return native_or_skip().NativeEngine(model, threads=2, precision=precision)
    if name == "graph-eager":
        return CudaGraphEngine(model, "cpu", use_graph=False)
    return TorchEngine(model)


def mels_for(model, frames: int, seed: int = 0) -> torch.Tensor:  # (B, M, frames)
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(1, model.config.mel_channels, frames, generator=gen).expand(len(SEEDS), -1, -1) * 2 - 4


def conditioning_for(model, mels: torch.Tensor | None) -> Conditioning | None:
    if not model.conditioned:
        return None
    labels = torch.tensor([0, 2]) if model.config.labels else None
    return Conditioning(model, labels, mels if model.config.mel_channels else None)


def joined(blocks) -> torch.Tensor:
    return torch.cat(list(blocks), dim=1)


@pytest.mark.parametrize("engine", ["native-fp32", "native-int8", "torch", "graph-eager"])
@pytest.mark.parametrize("kind", ["none", "labels", "mels", "both"])
def test_blocks_are_generates_codes_whatever_their_size(engine, kind):
    model = model_for(kind)
    num, history = 333, torch.randint(0, 256, (2, 50), generator=torch.Generator().manual_seed(4))
    mels = mels_for(model, 25) if model.config.mel_channels else None
    whole = generate(engine_for(engine, model), num, SEEDS, 0.9, history, conditioning=conditioning_for(model, mels))
    for block in (1, 7, 64, 4096):
        if block == 1 and engine != "native-fp32":
            continue  # (one sample per block is slow in Python's loops; the native engine covers it)
        blocks = list(
            generate_blocks(engine_for(engine, model), num, SEEDS, 0.9, history, conditioning_for(model, mels), block)
        )
        assert all(b.shape == (2, block) for b in blocks[:-1]) and 0 < blocks[-1].shape[1] <= block
        assert torch.equal(joined(blocks), whole), (engine, kind, block)


def test_a_stream_without_an_end_continues_as_a_longer_generation_would():
    model = model_for("labels")
    engine = engine_for("native-int8", model)
    stream = generate_blocks(engine, None, SEEDS, 1.0, conditioning=conditioning_for(model, None), block=500)
    first = [next(stream) for _ in range(5)]
    stream.close()
    expected = generate(engine_for("native-int8", model), 2500, SEEDS, conditioning=conditioning_for(model, None))
    assert torch.equal(joined(first), expected)


class Arrivals:
    """Mel frames (frames, bands) handed out in chunks of the given sizes, counting what was taken."""

    def __init__(self, mels: torch.Tensor, sizes: list[int]) -> None:
        self.frames = mels[0].T.numpy()  # (frames, bands): every stream's
        self.sizes, self.taken = sizes, 0

    def __iter__(self):
        i = 0
        while self.taken < len(self.frames):
            size = self.sizes[i % len(self.sizes)]
            chunk = self.frames[self.taken : self.taken + size]
            self.taken += len(chunk)
            i += 1
            yield chunk[0] if size == 1 else chunk  # (bands,) for one frame, else (k, bands)


@pytest.mark.parametrize("engine", ["native-int8", "native-fp32", "torch"])
@pytest.mark.parametrize("sizes, block", [([1], 16), ([3, 1, 5], 37), ([40], 1000), ([2], 7)])
def test_mel_frames_that_arrive_while_generating_give_the_codes_of_all_frames_at_once(engine, sizes, block):
    model = model_for("both")
    frames = 30
    mels = mels_for(model, frames, seed=5)
    whole = generate(engine_for(engine, model), frames * HOP, SEEDS, 0.9, conditioning=conditioning_for(model, mels))
    arrivals = Arrivals(mels, sizes)
    live = conditioning_for(model, mels[:, :, :0])
    feed = MelFeed(live, arrivals, HOP, model.config.mel_channels)
    out, needed = [], []
    for codes in generate_blocks(
        engine_for(engine, model), None, SEEDS, 0.9, conditioning=live, block=block, feed=feed
    ):
        out.append(codes)
        end = sum(c.shape[1] for c in out)  # samples so far: the last, end - 1, reads frames up to (end - 1) // hop + 3
        needed.append((arrivals.taken, min(frames, (end - 1) // HOP + 4)))
    assert torch.equal(joined(out), whole)  # the audio ends with the last frame, as with all of them given
    # No frame is taken before a block needs it (beyond the rest of the arrival that brought it).
    assert all(taken < wanted + max(sizes) for taken, wanted in needed), needed


def test_engines_that_need_a_length_in_advance_say_so():
    model = model_for("none")
    graph = engine_for("graph-eager", model)
    with pytest.raises(ConfigError, match="needs a length known in advance"):
        next(generate_blocks(graph, None, SEEDS))


def test_mel_frames_of_the_wrong_shape_are_refused_in_one_line():
    model = model_for("mels")
    live = conditioning_for(model, mels_for(model, 0))
    feed = MelFeed(live, iter([np.zeros((2, 3), np.float32)]), HOP, model.config.mel_channels)
    with pytest.raises(Exception, match=r"expected log-mel features of shape \(frames, 5\)"):
        feed.ready(0, 16)
    feed = MelFeed(live, iter([np.full((1, 5), np.nan, np.float32)]), HOP, model.config.mel_channels)
    with pytest.raises(Exception, match="NaN or infinite"):
        feed.ready(0, 16)


def test_a_device_loop_engine_hands_its_codes_on_in_blocks_as_it_writes_them():
    model = model_for("labels")
    cond = conditioning_for(model, None)
    whole = generate(engine_for("graph-eager", model), 700, SEEDS, conditioning=cond)
    blocks = list(generate_blocks(engine_for("graph-eager", model), 700, SEEDS, conditioning=cond, block=100))
    assert [b.shape[1] for b in blocks] == [100] * 7 and torch.equal(joined(blocks), whole)
    stream = generate_blocks(engine_for("graph-eager", model), 5000, SEEDS, conditioning=cond, block=100)
    next(stream)
    stream.close()  # the generating thread stops at its next block and is joined
