"""Training benchmark: audio samples per second through forward + backward + optimizer step.

Every configuration runs several implementations of the same network in the same process,
one step each in turn (a shared, noisy machine slows them alike), on the same random windows:

- ``wavegen``: ``model.WaveNet`` stepped as ``train`` steps it (``steps.TrainStep``: trimmed
  layers, table-lookup input, fused gate, fused Adam, the moving average, no device reads, on a
  GPU a CUDA graph after its first steps: ``wavegen+graph``; ``train.precision``, so bf16
  autocast where the device has native bf16; optionally ``torch.compile`` or recomputed
  activations);
- ``plain``: a straightforward PyTorch WaveNet (``PlainWaveNet``) in float32: ``nn.Conv1d``
  layers over the whole window with left padding, a one-hot input, separate tanh and sigmoid,
  skips and head at every position, the loss taken on the predicted positions;
- ``plain+bf16``: the same under the same bf16 autocast as wavegen (when wavegen runs in
  bf16), so that ``speedup_vs_plain_same_precision`` separates what the precision buys from
  what wavegen's layers buy.

On a CPU all are measured twice, with glibc's default allocator and then keeping freed memory
for the next step as ``train`` does (``memory.keep_freed_memory``; see ``run``). Both see windows of ``receptive_field + segment`` codes and predict the last ``segment``, so
"audio samples" are predicted (trained) samples. The plain model is loaded with the wavegen
model's weights, and the largest logit difference between them is reported: it is the same
function, computed two ways.
"""

from __future__ import annotations

import statistics
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..model.network import WaveNet
from ..train import precision as precisions
from ..train.graph import WARMUP
from ..train.memory import freed_memory_kept, keep_freed_memory
from .steps import Contender, TrainStep

GLIBC_DEFAULT, KEEP_FREED = "glibc default", "keep freed"  # the CPU allocator phases


class PlainBlock(nn.Module):
    """Padded causal conv → tanh, sigmoid → residual and skip 1×1, at every position."""

    def __init__(self, residual: int, gate: int, skip: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.pad = (kernel_size - 1) * dilation
        self.conv = nn.Conv1d(residual, 2 * gate, kernel_size, dilation=dilation)
        self.residual = nn.Conv1d(gate, residual, 1)
        self.skip = nn.Conv1d(gate, skip, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        filt, gate = self.conv(F.pad(x, (self.pad, 0))).chunk(2, dim=1)  # (B, G, T) each
        z = torch.tanh(filt) * torch.sigmoid(gate)
        return x + self.residual(z), self.skip(z)


class PlainWaveNet(nn.Module):
    """The straightforward implementation the benchmark compares against (same parameters
    and names as ``WaveNet``, so it loads its state dict; unconditioned shapes only)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        c = config
        self.classes, self.k_in = c.classes, c.input_kernel_size
        self.input = nn.Conv1d(c.classes, c.residual_channels, c.input_kernel_size)
        dilations = [2**i for _ in range(c.cycles) for i in range(c.layers_per_cycle)]
        self.blocks = nn.ModuleList(
            PlainBlock(c.residual_channels, c.gate_channels, c.skip_channels, c.kernel_size, d) for d in dilations
        )
        self.head = nn.Sequential(
            nn.ReLU(),
            nn.Conv1d(c.skip_channels, c.skip_channels, 1),
            nn.ReLU(),
            nn.Conv1d(c.skip_channels, c.classes, 1),
        )

    def forward(self, codes: torch.Tensor, output_from: int) -> torch.Tensor:
        onehot = F.one_hot(codes, self.classes).transpose(1, 2).float()  # (B, classes, T)
        # type A: pad k_in on the left and drop the last output, so output t sees t-k_in .. t-1
        x = self.input(F.pad(onehot, (self.k_in, 0)))[..., :-1]  # (B, R, T)
        skips = 0
        for block in self.blocks:
            x, skip = block(x)
            skips = skips + skip
        return self.head(skips)[..., output_from:]  # (B, classes, T - output_from)


def run(
    config: ModelConfig,
    batches: list[int],
    segments: list[int],
    device: torch.device = torch.device("cpu"),
    steps: int = 5,
    threads: int | None = None,
    compile: bool = False,
    recompute: bool = False,
    plain: bool = True,
    precision: str = "auto",
    bar=None,
) -> Iterator[dict]:
    """Yield one result per implementation, batch size and segment length: the median of
    ``steps`` timed steps after one warm-up step (two with ``compile``).

    On a CPU everything runs twice: first with glibc's default allocator (how a plain PyTorch
    script runs), then keeping freed memory as ``train`` does (``allocator`` in each result).
    The switch is one-way and process-wide, hence the order; a process that already switched
    measures the second phase only. ``speedup_vs_plain`` compares within one phase;
    ``speedup_vs_plain_default`` (second phase) compares wavegen as ``train`` runs it with the
    plain model as a plain script runs it. ``precision`` is wavegen's ``train.precision``;
    ``speedup_vs_plain_same_precision`` compares with the plain model at wavegen's precision.
    ``bar`` (a tqdm) counts the configurations (phase, batch, segment) measured.
    """
    if threads and device.type == "cpu":
        torch.set_num_threads(threads)
    if config.labels or config.mel_channels:
        raise ValueError("bench --train measures unconditioned shapes")
    contenders, rf, diff = _contenders(config, device, compile, recompute, plain, precisions.resolve(precision, device))
    phases = ["cuda caching allocator"]
    if device.type == "cpu":
        phases = ([] if freed_memory_kept() else [GLIBC_DEFAULT]) + [KEEP_FREED]
    plain_by_default: dict[tuple[int, int], float] = {}
    generator = torch.Generator().manual_seed(1)
    # (a CUDA graph: the eager steps before its capture, the capture and one replay go untimed)
    warmup = WARMUP + 2 if contenders[0].graphed is not None else 2 if compile else 1
    if bar is not None:
        bar.reset(total=len(phases) * len(batches) * len(segments))
    for phase in phases:
        if phase == KEEP_FREED:
            keep_freed_memory()
        for batch in batches:
            for segment in segments:
                medians, example = _medians(contenders, config, batch, rf, segment, steps, warmup, generator, device)
                if bar is not None:
                    bar.update(1)
                if plain and phase == GLIBC_DEFAULT:
                    plain_by_default[batch, segment] = medians["plain"]
                for contender in contenders:
                    result = _result(contender, medians[contender.name], example, phase, batch, segment, rf, device)
                    if plain:
                        seconds = medians[contender.name]
                        result["speedup_vs_plain"] = round(medians["plain"] / seconds, 3)
                        same = "plain" if contender.precision == "fp32" else f"plain+{contender.precision}"
                        result["speedup_vs_plain_same_precision"] = round(medians[same] / seconds, 3)
                        if (batch, segment) in plain_by_default and phase == KEEP_FREED:
                            result["speedup_vs_plain_default"] = round(plain_by_default[batch, segment] / seconds, 3)
                        result["max_logit_diff_vs_plain"] = diff
                    yield result


def _contenders(
    config: ModelConfig, device: torch.device, compile: bool, recompute: bool, plain: bool, precision: str
) -> tuple[list[Contender], int, float | None]:
    """wavegen's model as ``train`` runs it, and the plain model with the same weights (in fp32,
    and at wavegen's precision when that differs); the receptive field; the largest logit
    difference between the two models."""
    torch.manual_seed(0)
    model = WaveNet(config).to(device)
    rf = model.receptive_field
    forward = torch.compile(model) if compile else model
    graph = device.type == "cuda" and not compile
    contenders: list[Contender] = [
        TrainStep(
            "wavegen"
            + ("+compile" if compile else "")
            + ("+recompute" if recompute else "")
            + ("+graph" if graph else ""),
            model,
            lambda codes, start: forward(codes, output_from=start, recompute=recompute),
            device,
            precision,
            graph,
        )
    ]
    if not plain:
        return contenders, rf, None
    reference = PlainWaveNet(config).to(device)
    reference.load_state_dict(model.plain_state_dict())
    contenders.append(Contender("plain", reference, reference, device, "fp32"))
    if precision != "fp32":  # its own copy: the two plain models' Adam steps must not mix
        same = PlainWaveNet(config).to(device)
        same.load_state_dict(model.plain_state_dict())
        contenders.append(Contender(f"plain+{precision}", same, same, device, precision))
    with torch.no_grad():
        codes = torch.randint(0, config.classes, (2, rf + 64), device=device)
        diff = (model(codes, output_from=rf) - reference(codes, output_from=rf)).abs().max().item()
    return contenders, rf, diff


def _medians(
    contenders: list[Contender],
    config: ModelConfig,
    batch: int,
    rf: int,
    segment: int,
    steps: int,
    warmup: int,
    generator: torch.Generator,
    device: torch.device,
) -> tuple[dict[str, float], tuple]:
    """Each contender's median step time over ``steps`` steps after ``warmup``, the contenders
    taking turns (a busy machine slows them alike); and the last batch (codes, targets)."""
    times: dict[str, list[float]] = {c.name: [] for c in contenders}
    for _ in range(warmup + steps):
        codes = torch.randint(0, config.classes, (batch, rf + segment), generator=generator).to(device)  # (B, rf + S)
        targets = torch.randint(0, config.classes, (batch, segment), generator=generator).to(device)  # (B, S)
        for contender in contenders:
            times[contender.name].append(contender.step(codes, targets, rf))
    return {name: statistics.median(spent[warmup:]) for name, spent in times.items()}, (codes, targets)


def _result(
    contender: Contender,
    seconds: float,
    example: tuple,
    phase: str,
    batch: int,
    segment: int,
    rf: int,
    device: torch.device,
) -> dict:
    """One row of the table for one contender (its memory measured on ``example``)."""
    codes, targets = example
    ops = (
        contender.ops(codes, targets, rf) if not isinstance(contender, TrainStep) or contender.graphed is None else None
    )
    return {
        "bench": "train",
        "impl": contender.name,
        "device": device.type,
        "precision": contender.precision,
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
        "allocator": phase,
        "batch": batch,
        "segment": segment,
        "window": rf + segment,
        "step_s": round(seconds, 4),
        "samples_per_s": round(batch * segment / seconds, 1),
        "peak_memory_mb": round(contender.peak_memory(codes, targets, rf) / 2**20, 1),
        "memory": "cuda allocator peak" if device.type == "cuda" else "process rss growth in a step",
        # operator calls and reads of a device value in one eager step (a graph's replay makes none)
        "ops_per_step": ops.calls if ops else 0,
        "host_reads_per_step": ops.host_reads if ops else 0,
    }
