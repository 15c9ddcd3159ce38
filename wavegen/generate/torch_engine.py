"""The torch engine: per-layer ring buffers, one sample per step, batched streams."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..model.network import WaveNet
from .state import check_conditioning, past_block_inputs, ring_of
from .terms import FrameBlocks, TermParts

if TYPE_CHECKING:
    from ..model.conditioning import Conditioning


class TorchEngine:
    """Incremental step in plain PyTorch with per-layer ring buffers (no recomputation)."""

    name = "torch"
    precision = "fp32"  # the weights as trained

    def __init__(self, model: WaveNet, device: torch.device | str = "cpu") -> None:
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.rf = model.receptive_field
        self._silence: tuple[torch.Tensor, list[torch.Tensor]] | None = None
        with torch.no_grad():
            self._pack(model)

    def _pack(self, model: WaveNet) -> None:
        """Rearrange the conv weights into matrices for (B, features) @ (features, out) steps."""
        w = model.input.weight.detach().float()  # (R, classes, k_in)
        self.in_offsets = model.input.tap_offsets()  # all >= 1 (type A)
        self.in_tables = [w[:, :, i].t().contiguous() for i in range(w.shape[2])]  # (classes, R)
        self.in_bias = model.input.bias.detach().float()
        self.gate = model.config.gate_channels
        self.residual = model.config.residual_channels
        self.layers = []
        for block in model.blocks:
            cw = block.conv.weight.detach().float()  # (2G, R, k); tap i reads t - offsets[i]
            k = cw.shape[2]
            conv = cw.permute(2, 1, 0).reshape(k * cw.shape[1], cw.shape[0]).contiguous()  # (k·R, 2G)
            out = torch.cat([block.residual.weight[:, :, 0], block.skip.weight[:, :, 0]]).detach()
            out_bias = torch.cat([block.residual.bias, block.skip.bias]).detach()
            self.layers.append(
                dict(
                    offsets=block.conv.tap_offsets(),  # last one is 0: the current input
                    ring_length=(k - 1) * block.dilation,
                    conv=conv,
                    conv_bias=block.conv.bias.detach().float(),
                    out=out.float().t().contiguous(),  # (G, R + S)
                    out_bias=out_bias.float(),
                )
            )
        h1, h2 = model.head[1], model.head[3]
        self.head = (
            h1.weight[:, :, 0].detach().float().t().contiguous(),
            h1.bias.detach().float(),
            h2.weight[:, :, 0].detach().float().t().contiguous(),
            h2.bias.detach().float(),
        )

    @torch.inference_mode()
    def reset(self, batch: int, history: torch.Tensor | None = None, conditioning: Conditioning | None = None) -> None:
        """Fill the rings from a parallel forward pass over the history (silence by default),
        conditioned on ``conditioning`` where the model is."""
        check_conditioning(self.model, batch, conditioning)
        if history is None and conditioning is None:  # the same for every call: computed on the first
            self._silence = self._silence or past_block_inputs(self.model, 1, None, self.device)
            past, inputs = self._silence
        else:
            past, inputs = past_block_inputs(self.model, batch, history, self.device, conditioning)
        self.t = self.t0 = past.shape[1]  # time index of the next sample; t0: generation time 0
        self.parts = None if conditioning is None else TermParts(conditioning)
        self.fixed_term: torch.Tensor | None = None  # (L, B, 2G): the labels' terms
        self.frame_blocks: FrameBlocks | None = None  # blocks of (rows, L, B, 2G): the mels' frame terms
        if self.parts is not None and self.parts.fixed is not None:
            self.fixed_term = self.parts.fixed.to(self.device).transpose(0, 1).contiguous()
        if self.parts is not None and self.parts.kernel is not None:  # a kernel where there are mels
            self.kernel = self.parts.kernel.to(self.device)  # (3, hop)
            self.frame_blocks = FrameBlocks(
                self.parts,
                lambda frames: frames.to(self.device).permute(1, 2, 0, 3).contiguous(),
                self.parts.layers * self.parts.channels,
                row_dim=0,
            )
        self.rings = [  # (L, B, R) each
            ring_of(x, layer["ring_length"], self.t).float().expand(-1, batch, -1).contiguous()
            for layer, x in zip(self.layers, inputs)
        ]
        k_in = len(self.in_offsets)
        self.code_ring = ring_of(past[:, None, :], k_in, self.t)[:, :, 0].expand(k_in, batch).contiguous()
        self.pending: list[torch.Tensor] = []

    @torch.inference_mode()
    def logits(self) -> torch.Tensor:
        t, k_in = self.t, len(self.in_offsets)
        h = self.in_bias + sum(
            table[self.code_ring[(t - off) % k_in]] for table, off in zip(self.in_tables, self.in_offsets)
        )  # (B, R)
        skip = None
        self.pending = []
        terms = self.step_terms()
        for index, (layer, ring) in enumerate(zip(self.layers, self.rings)):
            n = layer["ring_length"]
            taps = [ring[(t - off) % n] if off else h for off in layer["offsets"]]
            a = torch.addmm(layer["conv_bias"], torch.cat(taps, dim=1), layer["conv"])  # (B, 2G)
            if terms is not None:
                a += terms[index]
            z = torch.tanh(a[:, : self.gate]) * torch.sigmoid(a[:, self.gate :])
            rs = torch.addmm(layer["out_bias"], z, layer["out"])  # (B, R + S)
            self.pending.append(h)
            h = h + rs[:, : self.residual]
            skip = rs[:, self.residual :] if skip is None else skip + rs[:, self.residual :]
        w1, b1, w2, b2 = self.head
        return torch.addmm(b2, torch.relu(torch.addmm(b1, torch.relu(skip), w1)), w2)

    def step_terms(self) -> torch.Tensor | None:
        """This step's conditioning (L, B, 2G), or None: ``TermParts``' arithmetic, in the native engine's order."""
        if self.frame_blocks is None:
            return self.fixed_term
        assert self.parts is not None  # the frame blocks are the parts' (__init__)
        t, hop = self.t - self.t0, self.parts.hop
        block, first, _ = self.frame_blocks.at(t)
        f = t // hop
        rows, k = block[f - 1 - first :], self.kernel[:, t - f * hop]
        term = (rows[0] * k[0] + rows[1] * k[1]) + rows[2] * k[2]
        return term if self.fixed_term is None else term + self.fixed_term

    @torch.inference_mode()
    def append(self, codes: torch.Tensor) -> None:
        t = self.t
        for layer, ring, h in zip(self.layers, self.rings, self.pending):
            if layer["ring_length"]:
                ring[t % layer["ring_length"]] = h
        self.code_ring[t % len(self.in_offsets)] = codes.to(self.device)
        self.t = t + 1
