"""The WaveNet network: causal dilated convolutions, gated units, residual and skip paths.

The network only: no sampling state (the engines read its weights and run their own step), and
its initialisation and parameterisation in ``parameterize``.

    codes (B, T) ──one-hot──▶ type-A causal conv (k_in taps, sees t-k_in .. t-1)
                                   │ x (B, R, T)
            ┌──────────────────────▼──────────────────────────────────┐
            │ residual block, dilation d (×cycles×layers_per_cycle)   │
            │   x ─▶ causal conv k, d (type B) ─▶ (B, 2G, T)          │
            │        tanh(a) · sigmoid(b) = z (B, G, T)               │
            │   x + 1×1(z) ─▶ next block      1×1(z) ─▶ skip (B, S, T) │
            └──────────────────────────────────────────────────────────┘
    Σ skips ─▶ ReLU ─▶ 1×1 (S→S) ─▶ ReLU ─▶ 1×1 (S→256) ─▶ logits (B, 256, T)

Logits at position t predict code t from codes t-RF .. t-1 only (RF = ``receptive_field``),
so training needs no shift between inputs and targets.

Training windows carry a full receptive field of context before the positions they predict
(``output_from >= receptive_field``). ``forward`` then runs "trimmed": every layer computes only
the positions that later layers still read, with unpadded convolutions, and the input layer is
a table lookup instead of a convolution over one-hot vectors. Same numbers, less work:

    window       |<-------- context (RF) -------->|<------ predicted (S) ------>|
    input layer    ·|──────────────────────────────────────────────────────────| T - k_in
    block 1 (d=1)    ·|────────────────────────────────────────────────────────| - 1
    ...                                   ...
    last block                                     |───────────────────────────| S
    skips, head                                    |───────────────────────────| S

A conditioned model adds a term per layer to (B, 2G, T) before the gate: a label embedding
and/or upsampled mel features (``conditioning``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..config import ModelConfig
from ..errors import ConfigError, OutOfMemory
from ..limits import available_memory
from .conditioning import CONTEXT_FRAMES, Conditioner, LayerTerms
from .layers import CausalConv1d, ResidualBlock, Weights
from .parameterize import layer_weights, parameterize


def receptive_field(config: ModelConfig) -> int:
    """How many past samples a model of this shape predicts from (``WaveNet.receptive_field``),
    without building it: ``prepare`` uses it to skip files too short to train on."""
    dilations = [2**i for _ in range(config.cycles) for i in range(config.layers_per_cycle)]
    return config.input_kernel_size + sum((config.kernel_size - 1) * d for d in dilations)


def parameter_count(config: ModelConfig) -> int:
    """How many parameters ``WaveNet(config)`` holds (``WaveNet.parameter_count``), counted from
    the shape alone: nothing is allocated, so a shape too large to build can be refused first."""
    c, layers = config, config.cycles * config.layers_per_cycle
    r, g, s = c.residual_channels, c.gate_channels, c.skip_channels
    convs = [(c.classes, r, c.input_kernel_size)] + [(r, 2 * g, c.kernel_size), (g, r, 1), (g, s, 1)] * layers
    convs += [(s, s, 1), (s, c.classes, 1)]  # the head
    # weights and biases; weight normalisation adds a magnitude per output channel
    count = sum(out * (cin * k + 1 + int(c.weight_norm)) for cin, out, k in convs)
    width = layers * 2 * g  # the conditioning terms of every layer
    count += len(c.labels) * width
    if c.mel_channels:
        h = c.cond_channels
        count += c.mel_channels * h * 3 + h + h * h * 3 + h + h * width + width + 3 * c.mel_hop
    return count


MAX_PARAMETERS = 2**30  # 4 GiB of float32 weights, 16 GiB to train: far beyond any recipe (the default: 4.6 M)
# Building a model holds about this many bytes per parameter (the weights, and weight
# normalisation's directions and initial weights while it is set up).
BUILD_BYTES_PER_PARAMETER = 12


def check_size(config: ModelConfig) -> int:
    """The parameter count of a model of this shape, refused before anything is allocated when
    it is beyond ``MAX_PARAMETERS`` (``ConfigError``) or building it would not fit in the
    memory available now (``OutOfMemory``)."""
    count, c = parameter_count(config), config
    shape = (
        f"model.residual_channels = {c.residual_channels}, gate_channels = {c.gate_channels}, "
        f"skip_channels = {c.skip_channels}, {c.cycles} cycles of {c.layers_per_cycle} layers"
    )
    if count > MAX_PARAMETERS:
        raise ConfigError(
            f"a model of {count:,} parameters ({shape}) is beyond the {MAX_PARAMETERS:,} wavegen builds; "
            "use fewer channels or layers"
        )
    free, need = available_memory(), count * BUILD_BYTES_PER_PARAMETER
    if free is not None and need > free:
        raise OutOfMemory(
            f"a model of {count:,} parameters ({shape}) needs about {need / 2**30:.1f} GiB to build, but "
            f"{free / 2**30:.1f} GiB of memory is available; use fewer channels or layers"
        )
    return count


class WaveNet(nn.Module):
    """Autoregressive model of µ-law codes: ``forward(codes)`` gives logits for every position."""

    def __init__(self, config: ModelConfig) -> None:
        check_size(config)  # before any tensor: a crafted or mistyped shape is one line, not gigabytes
        super().__init__()
        self.config = config
        c = config
        self.input = CausalConv1d(c.classes, c.residual_channels, c.input_kernel_size, 1, "A")
        self.blocks = nn.ModuleList(
            ResidualBlock(c.residual_channels, c.gate_channels, c.skip_channels, c.kernel_size, d)
            for d in self.dilations
        )
        self.head = nn.Sequential(
            nn.ReLU(),
            nn.Conv1d(c.skip_channels, c.skip_channels, 1),
            nn.ReLU(),
            nn.Conv1d(c.skip_channels, c.classes, 1),
        )
        parameterize(self)
        # Label embedding and mel network, when the config asks for conditioning.
        self.conditioner = Conditioner(c, len(self.blocks)) if c.labels or c.mel_channels else None

    @property
    def dilations(self) -> list[int]:
        c = self.config
        return [2**i for _ in range(c.cycles) for i in range(c.layers_per_cycle)]

    @property
    def receptive_field(self) -> int:
        """How many past samples the logits at t depend on: codes t-RF .. t-1."""
        return receptive_field(self.config)

    @property
    def mel_context(self) -> tuple[int, int]:
        """Mel frames before and after its own frame that a sample's logits can depend on:
        those of the positions its residual layers see, each widened by the mel network's
        ``CONTEXT_FRAMES``. (0, 0) without mel conditioning."""
        if not self.config.mel_channels:
            return 0, 0
        reach = self.receptive_field - self.config.input_kernel_size  # positions back that cond reaches from
        return -(-reach // self.config.mel_hop) + CONTEXT_FRAMES, CONTEXT_FRAMES

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def plain_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights as a plain stack holds them (``conv.weight``, ``conv.bias``: the
        parametrizations of ``parameterize`` applied), under the names of an unparameterised
        model of the same shape."""
        plain = {}
        for key, value in self.state_dict().items():
            owner, found, rest = key.partition(".parametrizations.")
            if not found:
                plain[key] = value
            else:  # e.g. blocks.3.conv.parametrizations.weight.original0 → blocks.3.conv.weight
                name = rest.split(".")[0]
                plain[f"{owner}.{name}"] = getattr(self.get_submodule(owner), name).detach()
        return plain

    @property
    def conditioned(self) -> bool:
        return self.conditioner is not None

    def forward(
        self,
        codes: torch.Tensor,
        output_from: int = 0,
        cond: LayerTerms | None = None,
        recompute: bool = False,
    ) -> torch.Tensor:
        """Logits (B, classes, T - output_from) for codes (B, T).

        ``output_from`` skips the skip/head work for the first positions, which training only
        uses as context; from ``receptive_field`` on, every layer is trimmed (see the module
        docstring). ``cond`` gives each residual layer's conditioning term, aligned with
        ``codes`` (see ``conditioning.LayerTerms``); a conditioned model needs it.
        ``recompute`` keeps just each block's input for the backward pass and recomputes the
        rest there: activation checkpointing, for long windows or deep stacks (the forward
        draws no random numbers, so no RNG state is kept for it: a CUDA graph could not).
        """
        if self.conditioned and cond is None:
            raise ValueError("this model is conditioned: pass cond (labels and/or mel features)")
        if output_from >= self.receptive_field:
            return self._forward_trimmed(codes, codes.shape[1] - output_from, cond, recompute)
        # The input layer as table lookups over codes led by k_in "nothing" codes: the zero
        # vectors the convolution's padding reads (no one-hot tensor, and no device read:
        # F.one_hot checks the codes' range on the host).
        k_in, classes = self.config.input_kernel_size, self.config.classes
        x = self._input_lookup(F.pad(codes, (k_in, 0), value=classes), nothing=True)  # (B, R, T)
        if torch.is_autocast_enabled(x.device.type):  # the residual sums in its dtype, as from a convolution
            x = x.to(torch.get_autocast_dtype(x.device.type))
        return self._blocks_and_head(x, output_from, cond=cond, recompute=recompute)

    def _input_lookup(self, codes: torch.Tensor, nothing: bool = False) -> torch.Tensor:
        """The type-A input layer at positions k_in .. T-1, as table lookups: (B, R, T - k_in).

        Tap i of the convolution multiplies a one-hot vector, so it just picks column
        ``codes[t - offset_i]`` of ``weight[:, :, i]``. With ``nothing``, code ``classes``
        stands for an all-zero input (it picks a zero row).
        """
        length = codes.shape[1] - self.config.input_kernel_size
        x = None
        for tap, offset in enumerate(self.input.tap_offsets()):
            start = self.config.input_kernel_size - offset
            table = self.input.weight[:, :, tap].t()  # (classes, R)
            if nothing:
                table = F.pad(table, (0, 0, 0, 1))  # (classes + 1, R)
            rows = F.embedding(codes[:, start : start + length], table)  # (B, T', R)
            x = rows if x is None else x + rows
        return (x + self.input.bias).transpose(1, 2)  # (B, R, T - k_in)

    def _forward_trimmed(
        self, codes: torch.Tensor, keep: int, cond: LayerTerms | None, recompute: bool
    ) -> torch.Tensor:
        x = self._input_lookup(codes)
        skips = None
        for index, (block, weights) in enumerate(zip(self.blocks, self._layer_weights(codes.device))):
            term = None if cond is None else cond.layer(index)
            last = index == len(self.blocks) - 1
            if recompute and torch.is_grad_enabled():
                x, skip = checkpoint(
                    block.forward_trimmed, x, keep, term, last, weights, use_reentrant=False, preserve_rng_state=False
                )
            else:
                x, skip = block.forward_trimmed(x, keep, term, last, weights)
            skips = skip if skips is None else skips + skip
        return self.head(skips)  # (B, classes, keep)

    def _layer_weights(self, device: torch.device) -> list[Weights]:
        """Every block's weights, computed for the whole stack at once (``layer_weights``),
        in the autocast dtype when autocast is on (one cast a stack instead of one a layer)."""
        dtype = torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else None
        return list(zip(*layer_weights(self, dtype)))

    def forward_onehot(
        self,
        onehot: torch.Tensor,
        output_from: int = 0,
        block_inputs: list | None = None,
        cond: LayerTerms | None = None,
        recompute: bool = False,
    ) -> torch.Tensor:
        """Same as ``forward`` on a float (B, classes, T) input, so gradients can flow to it.

        If ``block_inputs`` is a list, each residual block's input (B, R, T) is appended to it
        (the sampler uses these to start its caches from a given history).
        """
        if self.conditioned and cond is None:
            raise ValueError("this model is conditioned: pass cond (labels and/or mel features)")
        return self._blocks_and_head(self.input(onehot), output_from, block_inputs, cond, recompute)

    def _blocks_and_head(
        self,
        x: torch.Tensor,
        output_from: int = 0,
        block_inputs: list | None = None,
        cond: LayerTerms | None = None,
        recompute: bool = False,
    ) -> torch.Tensor:
        """The blocks and the head on the input layer's output ``x`` (B, R, T), padded."""
        skips = None
        for index, (block, weights) in enumerate(zip(self.blocks, self._layer_weights(x.device))):
            if block_inputs is not None:
                block_inputs.append(x)
            term = None if cond is None else cond.layer(index)
            if recompute and torch.is_grad_enabled():
                x, skip = checkpoint(
                    block, x, output_from, term, weights, use_reentrant=False, preserve_rng_state=False
                )
            else:
                x, skip = block(x, output_from, term, weights)
            skips = skip if skips is None else skips + skip
        return self.head(skips)  # (B, classes, T - output_from)
