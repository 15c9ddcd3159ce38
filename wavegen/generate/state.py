"""What a sampling engine starts from: its state, from the past.

- ``past_block_inputs``: every residual block's input over the past (one receptive field of
  silence, then the history), computed by one parallel pass, which the engines turn into their
  ring buffers (``ring_of``). Streams that share codes and conditioning share the pass.

The conditioning terms themselves, as the engines read them, are ``terms``'.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from ..audio.mulaw import SILENCE_CODE
from ..model.conditioning import CONTEXT_FRAMES, LayerTerms, StackedTerms
from ..model.network import WaveNet
from .terms import TermParts

if TYPE_CHECKING:
    from ..model.conditioning import Conditioning


def silence(batch: int, length: int, device: torch.device | str = "cpu") -> torch.Tensor:
    return torch.full((batch, length), SILENCE_CODE, dtype=torch.long, device=device)


def check_conditioning(model: WaveNet, batch: int, conditioning: Conditioning | None) -> None:
    """Refuse a conditioning that does not fit the model (or its absence where one is needed)."""
    if conditioning is None:
        if model.conditioned:
            raise ValueError("this model is conditioned: pass conditioning (labels and/or mel features)")
        return
    if not model.conditioned:
        raise ValueError("this model is not conditioned: generate without conditioning")
    if conditioning.layers != len(model.blocks) or conditioning.channels != 2 * model.config.gate_channels:
        raise ValueError("the conditioning was made for another model")
    if conditioning.batch != batch:
        raise ValueError(f"the conditioning is for {conditioning.batch} streams, not {batch}")


def _forward_past(model: WaveNet, past: torch.Tensor, cond: LayerTerms | None) -> list[torch.Tensor]:
    """Every block's input over the last (k-1)·d times of ``past`` (b, P), what its ring holds."""
    inputs: list[torch.Tensor] = []
    onehot = F.one_hot(past, model.config.classes).transpose(1, 2).float()  # (b, C, P)
    model.forward_onehot(onehot, output_from=past.shape[1] - 1, block_inputs=inputs, cond=cond)
    k = model.config.kernel_size
    return [x[:, :, x.shape[2] - (k - 1) * block.dilation :].clone() for x, block in zip(inputs, model.blocks)]


@torch.inference_mode()
def past_block_inputs(
    model: WaveNet,
    batch: int,
    history: torch.Tensor | None,
    device: torch.device | str,
    conditioning: Conditioning | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The codes before the first sample (b, P) and every block's input over the last (k-1)·d of
    them (b, R, (k-1)·d): what the block's ring holds when generation starts.

    The past is one receptive field of silence, then the last receptive field of the history if
    given (nothing older can reach the next sample), at times -P .. -1 of the conditioning. When
    every stream has the same past (the same history or none, the same conditioning or none) it
    is computed once: b = 1 then, else b = batch.

    Conditioned streams with the same codes (no history, or one for all) share what their
    conditioning lets them: with labels alone, the streams of a label share the whole pass; with
    mel features, the times before -CONTEXT_FRAMES·hop, where every stream's features are
    silence, are run once per label and only the rest for each stream.
    """
    rf = model.receptive_field
    if history is not None:
        history = history[:, -rf:].to(device).long()
        if torch.equal(history, history[:1].expand_as(history)):
            history = history[:1]
    past = silence(1 if history is None else history.shape[0], rf, device)
    if history is not None:
        past = torch.cat([past, history], 1)
    if conditioning is None:
        return past, _forward_past(model, past, None)
    length, shared = past.shape[1], past.shape[0] == 1
    past = past.expand(batch, -1)
    parts = TermParts(conditioning)
    # The distinct label terms: stream s has those of streams[which[s]].
    streams, which = torch.zeros(1, dtype=torch.long), torch.zeros(batch, dtype=torch.long)
    if parts.fixed is not None:
        _, first, which = np.unique(
            parts.fixed.flatten(1).double().cpu().numpy(), axis=0, return_index=True, return_inverse=True
        )
        streams, which = torch.from_numpy(first), torch.from_numpy(which.reshape(-1))
    if not parts.hop:
        if not shared:
            streams, which = torch.arange(batch), torch.arange(batch)
        fixed = TermParts(conditioning, streams).fixed
        assert fixed is not None  # without mel features the terms are the labels'
        terms = StackedTerms(fixed.to(device)[:, :, :, None])
        inputs = _forward_past(model, past[streams.to(device)], terms)
        return (past[:1], inputs) if len(streams) == 1 else (past, [x[which.to(device)] for x in inputs])
    suffix = CONTEXT_FRAMES * parts.hop  # before, every stream's mel frames are silence
    if not shared or suffix >= length:
        return past, _forward_past(model, past, parts.window(-length, length))
    return past, _forward_past_split(model, past, TermParts(conditioning, streams), which, parts, suffix)


@torch.inference_mode()
def _forward_past_split(
    model: WaveNet, past: torch.Tensor, common: TermParts, which: torch.Tensor, parts: TermParts, suffix: int
) -> list[torch.Tensor]:
    """``_forward_past`` for streams that share their codes and whose conditioning differs in the
    last ``suffix`` times only: the rest is run for the distinct streams of ``common`` (stream s
    is ``which[s]`` of them), the suffix for every stream of ``parts``, continuing from it."""
    length = past.shape[1]
    split = length - suffix
    device = past.device
    which = which.to(device)
    inputs: list[torch.Tensor] = []
    onehot = F.one_hot(past[:1], model.config.classes).transpose(1, 2).float()  # (1, C, P)
    model.forward_onehot(
        onehot[:, :, :split].expand(common.batch, -1, -1),
        output_from=split - 1,
        block_inputs=inputs,
        cond=common.window(-length, split),
    )
    x = model.input(onehot)[:, :, split:].expand(parts.batch, -1, -1)  # the same codes: the same input
    terms = parts.window(-suffix, suffix)
    rings, k = [], model.config.kernel_size
    for index, (block, before) in enumerate(zip(model.blocks, inputs)):
        keep = (k - 1) * block.dilation  # what the conv reads before the suffix (and the ring's length)
        before = F.pad(before[:, :, max(0, split - keep) :], (max(0, keep - split), 0))  # zeros before the past
        x = torch.cat([before[which], x], dim=2)  # (B, R, keep + suffix)
        rings.append(x[:, :, x.shape[2] - keep :].clone())
        # The block's own forward; its first `keep` outputs read its zero padding and are dropped.
        x, _ = block(x, x.shape[2] - 1, F.pad(terms.layer(index), (keep, 0)))
        x = x[:, :, keep:]
    return rings


def ring_of(x: torch.Tensor, length: int, t: int) -> torch.Tensor:
    """The last ``length`` time steps of ``x`` (b, F, T) as a ring (length, b, F) in which the
    value of time s sits at slot s mod length; ``t`` is the time just after x's last step."""
    ring = torch.empty(length, x.shape[0], x.shape[1], dtype=x.dtype, device=x.device)
    if length:
        times = torch.arange(t - length, t, device=x.device)
        ring[times % length] = x[:, :, -length:].permute(2, 0, 1)
    return ring
