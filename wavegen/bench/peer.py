"""The peer's sampler: r9y9/wavenet_vocoder's incremental generation, run on wavegen's weights.

r9y9/wavenet_vocoder is the best-known open WaveNet in PyTorch, and its sampler
(``WaveNet.incremental_forward``) is the design most WaveNet code in PyTorch samples with.
``wavegen bench --engine peer`` runs that design on the same model as the other engines, in the
same run, so wavegen's speed is seen next to it on the same machine at the same moment, not next
to a figure from elsewhere. It is written here from the published design, step for step:

- every convolution keeps an input buffer of its last (k-1)·d+1 inputs, (B, (k-1)·d+1, C); each
  step shifts the buffer by one place (a copy) and writes the new input at its end, and the
  output is ``F.linear`` of the taps ``buffer[:, ::d]`` flattened, with the weight linearised
  once to (out, k·C_in);
- the first layer reads the one-hot vector of the last sample (a 256-wide ``F.linear``, no
  table lookup); 1×1 convolutions are ``F.linear`` of the step's vector;
- per layer: gated tanh·sigmoid, the skip and residual 1×1s, the skips summed; then the head
  (ReLU, 1×1, ReLU, 1×1), a softmax over the 256 classes and a categorical draw
  (``OneHotCategorical``), whose one-hot vector is the next step's input: one sample at a time,
  every operation a separate PyTorch call.

What differs, none of it the sampler's cost: it starts from wavegen's past (the block inputs of
one parallel pass over silence or the history, ``state.past_block_inputs``) where r9y9 starts
from zeroed buffers; it keeps the codes as bytes, not a list of (B, 256) one-hot rows (gigabytes
for a long benchmark); wavegen's layers have no √0.5 scaling of their own (it is in the
weights). It draws with torch's generator seeded by the first stream's seed, not with wavegen's
definition of sampling, so its codes are its own; its logits (the engine calls ``reset``,
``logits``, ``append``) are the same network's, which ``bench`` checks as for every engine.
Unconditioned models only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..generate.state import past_block_inputs
from ..model.network import WaveNet


class PeerUnavailable(RuntimeError):
    """The peer's sampler cannot run this model; the message says why."""


class BufferedConv:
    """A convolution stepped as the peer steps it: an input buffer shifted by one place a step,
    and ``F.linear`` on its taps."""

    def __init__(self, conv: nn.Conv1d) -> None:
        w = conv.weight.detach().float()  # (out, in, k); tap i reads (k-1-i)·d back (type A: one more)
        self.k, self.d = conv.kernel_size[0], conv.dilation[0]
        self.weight = w.transpose(1, 2).reshape(w.shape[0], -1).contiguous()  # (out, k·in), oldest tap first
        self.bias = conv.bias.detach().float()
        self.buffer: torch.Tensor | None = None  # (B, (k-1)·d+1, in)

    def start(self, past: torch.Tensor) -> None:
        """Fill the buffer from the inputs (B, in, n) before the next step (its last (k-1)·d);
        the first slot is shifted out before it is read."""
        width = (self.k - 1) * self.d + 1
        self.buffer = past.new_zeros(past.shape[0], width, past.shape[1])
        if width > 1:
            self.buffer[:, 1:] = past[:, :, past.shape[2] - (width - 1) :].transpose(1, 2)

    def step(self, x: torch.Tensor) -> torch.Tensor:
        """The output (B, out) for the next input ``x`` (B, in)."""
        if self.k > 1:
            assert self.buffer is not None, "start() first"  # it fills the buffer from the past
            self.buffer[:, :-1] = self.buffer[:, 1:].clone()
            self.buffer[:, -1] = x
            x = self.buffer[:, :: self.d].reshape(x.shape[0], -1)  # (B, k·in): a copy when d > 1
        return F.linear(x, self.weight, self.bias)


class PeerSampler:
    """r9y9/wavenet_vocoder's incremental sampler on a ``WaveNet`` (see the module docstring)."""

    name = "peer"

    def __init__(self, model: WaveNet, device: torch.device | str = "cpu") -> None:
        if model.conditioned:
            raise PeerUnavailable("the peer's sampler runs unconditioned models only (bench --cond none)")
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.classes = model.config.classes
        self.first = BufferedConv(model.input)
        self.layers = [(BufferedConv(b.conv), BufferedConv(b.skip), BufferedConv(b.residual)) for b in model.blocks]
        self.head = (BufferedConv(model.head[1]), BufferedConv(model.head[3]))
        self.pending: torch.Tensor | None = None  # (B, classes): the one-hot input of the next step
        self.computed: torch.Tensor | None = None  # (B, classes): the next step's logits, once run

    @torch.inference_mode()
    def reset(self, batch: int, history: torch.Tensor | None = None, conditioning=None) -> None:
        """Start from silence, or from the end of ``history`` (B, P) codes."""
        if conditioning is not None:
            raise PeerUnavailable("the peer's sampler runs unconditioned models only")
        past, inputs = past_block_inputs(self.model, batch, history, self.device)  # (b, P), [(b, R, (k-1)·d)]
        # The first layer reads codes t-k_in .. t-1: the last is the next step's input, the others fill its buffer.
        onehot = F.one_hot(past[:, -self.first.k :], self.classes).float().transpose(1, 2)  # (b, classes, k_in)
        onehot = onehot.expand(batch, -1, -1)
        self.first.start(onehot[:, :, :-1])
        self.pending = onehot[:, :, -1].contiguous()
        for (conv, _, _), x in zip(self.layers, inputs):
            conv.start(x.float().expand(batch, -1, -1))
        self.computed = None

    @torch.inference_mode()
    def logits(self) -> torch.Tensor:
        """The next sample's logits (B, classes): one step of every layer, run on the first call."""
        if self.computed is None:
            x = self.first.step(self.pending)  # (B, R)
            skips = None
            for conv, skip, residual in self.layers:
                a = conv.step(x)  # (B, 2G)
                gate = a.shape[1] // 2
                z = torch.tanh(a[:, :gate]) * torch.sigmoid(a[:, gate:])  # (B, G)
                s = skip.step(z)
                skips = s if skips is None else skips + s
                x = x + residual.step(z)
            hidden = F.relu(self.head[0].step(F.relu(skips)))
            self.computed = self.head[1].step(hidden)  # (B, classes)
        return self.computed

    @torch.inference_mode()
    def append(self, codes: torch.Tensor) -> None:
        """Advance by the codes (B,) drawn for the step ``logits`` ran."""
        self.logits()
        self.pending = F.one_hot(codes.to(self.device).long(), self.classes).float()
        self.computed = None

    @torch.inference_mode()
    def sample(self, num_samples: int, seeds: list[int], conditioning=None) -> torch.Tensor:
        """The peer's own loop: ``num_samples`` steps from silence of softmax and a categorical
        draw, the one-hot draw fed back; (B, num_samples) uint8 codes on the CPU."""
        self.reset(len(seeds), None, conditioning)
        codes = torch.empty(len(seeds), num_samples, dtype=torch.uint8, device=self.device)
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):  # the caller's random state is left as it was
            torch.manual_seed(seeds[0])
            for n in range(num_samples):
                probs = F.softmax(self.logits(), dim=1)
                onehot = torch.distributions.OneHotCategorical(probs=probs).sample()  # (B, classes)
                codes[:, n] = onehot.argmax(1)
                self.pending, self.computed = onehot, None
        return codes.cpu()
