"""What every sampling engine is: the protocol, and the one definition of a sample (counter-based random numbers per stream, inverse-CDF draw) they all share."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Protocol, runtime_checkable

import numpy as np
import torch

if TYPE_CHECKING:
    from ..model.conditioning import Conditioning
    from ..model.network import WaveNet


@runtime_checkable
class Engine(Protocol):
    """A sampling engine: a network's state for a batch of streams, advanced one sample at a time.

        engine.reset(batch, history, conditioning)   start from past codes (B, P), or from silence
        engine.logits()         logits (B, classes) for the next sample, from the state
        engine.append(codes)    advance the state by the sampled codes (B,)

    ``name`` is the engine's (``request.ENGINES``), ``precision`` the weights' in it (fp32 but in
    the native engine), ``model`` the network it runs. An engine may also have a loop of its own
    (``HostLoop``, ``DeviceLoop``), which ``engines.generate`` then uses; the codes are the same
    either way.
    """

    name: str
    precision: str
    model: WaveNet  # the network it runs (in the engine's own form: on its device, in its precision)

    def reset(
        self, batch: int, history: torch.Tensor | None = None, conditioning: Conditioning | None = None
    ) -> None: ...
    def logits(self) -> torch.Tensor: ...
    def append(self, codes: torch.Tensor) -> None: ...


@runtime_checkable
class HostLoop(Protocol):
    """An engine that samples many steps per call on the host (the native engine)."""

    def sample_steps(
        self, out: torch.Tensor, start: int, count: int, seeds: list[int], temps: np.ndarray, index: int | None = None
    ) -> None:
        """Write codes into ``out[:, start : start + count]`` ((B, N) uint8), drawing the uniforms
        of sample indices ``index ..`` (default ``start``) of each stream at temperature
        ``temps[b]`` (B,)."""


@runtime_checkable
class DeviceLoop(Protocol):
    """An engine that runs whole loops on its device (the graph and persistent engines)."""

    def generate_codes(
        self,
        num: int,
        temps: torch.Tensor,
        draw: Callable[[int], torch.Tensor],
        progress: Callable[[int], None] | None,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``num`` codes per stream, (B, num) uint8 on the CPU; ``draw(count)`` gives the next
        uniforms (count, B) float64, continuing each stream's counter. ``out`` (B, num) uint8:
        written in place, its columns in order, ``progress(count)`` called after each ``count``
        of them (a reader in another thread may take them then)."""


# Counter-based random numbers (SplitMix64's finaliser), computed identically in Python and in
# the native engine: the uniform for stream seed s and sample n is a pure function of (s, n), so
# a stream is reproducible on its own, whatever the batch, the engine or the thread count.
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
GOLDEN = 0x9E3779B97F4A7C15


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on uint64 arrays (arithmetic mod 2^64)."""
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def stream_uniforms(seeds: list[int], start: int, count: int) -> np.ndarray:
    """Uniforms in [0, 1) for samples ``start .. start + count - 1`` of each stream: (B, count) float64.

    u(s, n) = (mix(mix(s + GOLDEN) + (n + 1) * GOLDEN) >> 11) * 2^-53, all mod 2^64.
    """
    with np.errstate(over="ignore"):  # wrap-around is the definition, not an accident
        seed = np.array([int(s) % 2**64 for s in seeds], dtype=np.uint64)
        key = _mix(seed + np.uint64(GOLDEN))  # (B,)
        n = np.arange(start + 1, start + count + 1, dtype=np.uint64)  # (count,)
        bits = _mix(key[:, None] + n[None, :] * np.uint64(GOLDEN)) >> np.uint64(11)
    return bits.astype(np.float64) * 2.0**-53


def uniform_draws(seeds: list[int]) -> Callable[[int], torch.Tensor]:
    """``draw(count)``: the next ``count`` uniforms of every stream, (count, B) float64, counting
    samples from 0 (what a ``DeviceLoop`` takes)."""
    drawn = 0

    def draw(count: int) -> torch.Tensor:
        nonlocal drawn
        uniforms = stream_uniforms(seeds, drawn, count)
        drawn += count
        return torch.from_numpy(np.ascontiguousarray(uniforms.T))

    return draw


def temperatures(temperature: float | list[float], batch: int) -> torch.Tensor:
    """One temperature per stream, (B,) float64: ``temperature`` for each, or a list of them."""
    return torch.as_tensor(temperature if isinstance(temperature, list) else [temperature] * batch, dtype=torch.float64)


class StreamRandom:
    """One uniform per stream and sample, counting samples from 0; drawn ahead in chunks."""

    def __init__(self, seeds: list[int], chunk: int = 4096) -> None:
        self.seeds = [int(s) for s in seeds]
        self.chunk = chunk
        self.start = 0  # sample index of buffer[:, 0]
        self.buffer = np.empty((len(seeds), 0))
        self.used = 0

    def next(self) -> torch.Tensor:  # (B,) float64
        if self.used == self.buffer.shape[1]:
            self.start += self.used
            self.buffer = stream_uniforms(self.seeds, self.start, self.chunk)  # (B, chunk)
            self.used = 0
        self.used += 1
        return torch.from_numpy(self.buffer[:, self.used - 1].copy())


def sample_codes(logits: torch.Tensor, temperature: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """Draw one code per row of ``logits`` (B, C) by inverse CDF of softmax(logits / temperature).

    The definition the native engine mirrors step for step: m = max(l); e_i = exp((l_i - m) / T)
    in float64; cdf = running sum in index order; code = first i with cdf_i >= u * cdf[C-1].
    """
    logits = logits.double()  # float32 -> float64 is exact
    shifted = (logits - logits.max(dim=-1, keepdim=True).values) / temperature.to(logits.device)[:, None]
    cdf = torch.exp(shifted).cumsum(dim=-1)  # (B, C), unnormalised
    target = uniform.to(cdf.device) * cdf[:, -1]  # (B,)
    codes = torch.searchsorted(cdf, target[:, None].contiguous())  # first i with cdf_i >= target
    return codes.squeeze(1).clamp_(max=logits.shape[-1] - 1)
