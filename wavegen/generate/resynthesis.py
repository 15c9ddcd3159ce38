"""Copy-synthesis's generation: log-mel features in, audio out, every input a stream of one
batch. ``synthesis.vocode`` reads the recordings and writes the files.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..audio.features import SILENCE
from ..audio.mulaw import decode
from ..limits import generation_memory
from ..model.network import WaveNet
from ..progress import bar as progress_bar
from .choice import choose
from .engines import generate
from .request import GenerationRequest, as_request
from .streams import make_conditioning


@dataclass
class Resynthesis:
    audio: list[np.ndarray]  # one per input, each as long as its input
    samples_per_s: float
    engine: str
    took_s: float = 0.0  # wall time of the generation (every stream together)
    device: str = "cpu"
    precision: str = "fp32"  # the weights' precision in the engine


def resynthesize(
    model: WaveNet,
    features: list[np.ndarray],
    lengths: list[int],
    request: GenerationRequest | None = None,
    labels: list[str] | None = None,
    progress: bool = True,
    **asked,
) -> Resynthesis:
    """Generate audio for log-mel features (frames, bands), all inputs as streams of one batch:
    input i's stream uses ``request.seed + i``, and is ``lengths[i]`` samples long; shorter
    inputs are padded with silence frames. ``request`` (or its fields as keywords, ``asked``)
    gives the seed, temperature, engine, device and precision; ``labels`` one label per stream
    for a labelled model. Raises ``ConfigError`` for an engine and precision that cannot run."""
    request = as_request(request, asked)
    hop = model.config.mel_hop
    frames = max(len(f) for f in features)
    mels = np.full((len(features), frames, features[0].shape[1]), SILENCE, np.float32)
    for i, f in enumerate(features):
        mels[i, : len(f)] = f
    num = max(lengths)
    assert num <= frames * hop
    chosen = choose(request, len(features), model)
    gen, dev = chosen.engine, chosen.device
    conditioning = make_conditioning(model, labels, mels)
    seeds = [request.seed + i for i in range(len(features))]
    with progress_bar(total=num, desc="vocode", unit="sample", unit_scale=True, enabled=progress, leave=False) as bar:
        tick = time.perf_counter()
        with generation_memory(f"{len(seeds)} × {num:,} samples"):
            codes = generate(gen, num, seeds, request.temperature, progress=bar.update, conditioning=conditioning)
        elapsed = time.perf_counter() - tick
    audio = decode(codes).numpy()
    return Resynthesis(
        [audio[i, :n] for i, n in enumerate(lengths)],
        len(seeds) * num / elapsed,
        gen.name,
        elapsed,
        str(dev),
        gen.precision,
    )
