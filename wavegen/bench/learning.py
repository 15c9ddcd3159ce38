"""Learning benchmark (``wavegen bench --learn DATA``): how far training gets in a budget.

Speed per step says little about what a user hears; what matters is how low the validation
loss gets in the time (or the steps) one can give. This trains several *variants* on the same
prepared data, one after another in one process, each for the same wall-clock budget of
training steps (``minutes``) or the same number of steps, and scores each with the rule of
``wavegen eval`` (``evaluate.validation_bits``: every held-out sample once, with its full
receptive field of context, in fp32).

A variant is the recipe with some settings changed (``NAME:key=value,key=value``), trained by
``train.Trainer`` exactly as ``wavegen train`` trains it (noise, warm-up, moving average,
precision...), or the built-in ``plain`` baseline: ``baseline.StandardWaveNet``, the field's
standard WaveNet trained the field's way (windows of ``segment`` codes with the loss on every
position, Adam at a constant ``train.lr``, clipping at ``train.grad_clip``, no input noise), of
the recipe's shape, batch and segment. ``default`` is the recipe as it is.

Several budgets (``--minutes 7 --minutes 15``) cost one run per variant: the weights are kept at
each mark and scored afterwards. Only training steps count towards a budget: building the
model, keeping the weights and scoring them do not. Budgets in minutes depend on the machine:
compare the variants of one run (``bench`` prints ``lscpu``'s model name beside them).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..config import Config, ConfigError, apply_overrides
from ..data.prepared import PreparedData
from ..data.windows import WindowSampler
from ..model import loss
from ..model.baseline import StandardWaveNet
from ..train import precision as precisions
from ..train.memory import keep_freed_memory
from ..train.trainer import Trainer
from ..train.validation import validation_bits
from .machine import cpu_name

PLAIN, DEFAULT = "plain", "default"  # the built-in variants


@dataclass
class Variant:
    """A named set of ``section.key=value`` changes to the recipe; ``plain`` is the baseline."""

    name: str
    overrides: list[str] = field(default_factory=list)

    @property
    def plain(self) -> bool:
        return self.name == PLAIN


def parse_variant(text: str) -> Variant:
    """``NAME`` or ``NAME:key=value,key=value`` → a Variant (``plain`` takes no settings: it is
    the baseline of the recipe's shape and training budget). Errors are one-line ConfigErrors."""
    name, _, rest = text.partition(":")
    name = name.strip()
    if not name or not all(ch.isalnum() or ch in "-_.+" for ch in name):
        raise ConfigError(f"--variant {text!r}: expected NAME or NAME:key=value,... (NAME in letters, digits, -_.+)")
    overrides = [item.strip() for item in rest.split(",") if item.strip()]
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--variant {text!r}: {item!r} is not key=value")
    if name == PLAIN and overrides:
        raise ConfigError(f"--variant {text!r}: the plain baseline takes no settings (use --set for the shape)")
    return Variant(name, overrides)


def variant_config(base: Config, variant: Variant) -> Config:
    """The recipe (with the common ``--set``) plus the variant's settings, checked."""
    config = copy.deepcopy(base)
    try:
        apply_overrides(config, variant.overrides)
    except ConfigError as exc:
        raise ConfigError(f"--variant {variant.name}: {exc}") from None
    return config


class PlainRunner:
    """Trains the standard WaveNet the field's way (see the module docstring)."""

    def __init__(self, config: Config, data: PreparedData, device: torch.device) -> None:
        t = config.train
        torch.manual_seed(t.seed)
        self.config, self.device = config, device
        self.model = StandardWaveNet(config.model).to(device)
        self.precision = precisions.resolve(t.precision, device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=t.lr)
        self.sampler = WindowSampler(data.train, 0, t.segment_length, seed=t.seed)  # no context: loss everywhere

    def step(self) -> float:
        t = self.config.train
        batch = self.sampler.batch(t.batch_size)
        inputs = torch.from_numpy(batch.inputs).to(self.device)  # (B, segment)
        targets = torch.from_numpy(batch.targets).to(self.device)  # (B, segment): the same codes, padded past the end
        self.optimizer.zero_grad(set_to_none=True)
        with precisions.autocast(self.device, self.precision):
            logits = self.model(inputs)  # (B, classes, segment)
        bits = loss.bits(logits, targets)
        if not torch.isfinite(bits):
            return float("nan")
        bits.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip or float("inf"))
        self.optimizer.step()
        return bits.item()

    def scored_model(self) -> torch.nn.Module:
        return self.model

    def close(self) -> None:
        """Nothing to free: this runner writes no files."""


class WavegenRunner:
    """Trains a wavegen variant through ``train.Trainer``, as ``wavegen train`` does (nothing
    is written: the run folder is a temporary one that no checkpoint reaches)."""

    def __init__(self, config: Config, data: PreparedData, device: torch.device) -> None:

        config.train.val_batches = 0  # the benchmark scores the snapshots itself, on the whole split
        self._folder = tempfile.TemporaryDirectory(prefix="wavegen-bench-learn-")
        self.trainer = Trainer(config, data, Path(self._folder.name), device)
        self.model = self.trainer.model
        self.precision = self.trainer.precision

    def step(self) -> float:
        # (read at once: the budget is timed step by step, as the plain runner's is)
        return float(self.trainer.train_step().bits)

    def close(self) -> None:
        """Remove the temporary run folder."""
        self._folder.cleanup()

    def scored_model(self) -> torch.nn.Module:
        """What validation scores in ``train``: the moving average when there is one."""
        return self.trainer.ema.module if self.trainer.ema is not None else self.trainer.model


@dataclass
class Snapshot:
    mark: float  # minutes or steps
    steps: int
    seconds: float
    train_bits: float | None  # mean loss of the last finite steps (None: none was finite)
    weights: dict


def run(
    base: Config,
    data_dir: Path,
    variants: list[Variant],
    minutes: list[float] | None = None,
    steps: list[int] | None = None,
    device: torch.device = torch.device("cpu"),
    threads: int | None = None,
    max_eval_seconds: float | None = 600.0,
    bar=None,
) -> Iterator[dict]:
    """Train each variant to every budget mark (``minutes`` of training steps, or ``steps``),
    then yield one result per variant and mark: steps, audio samples per second of training,
    training bits/sample (the mean of the last 20 steps before the mark) and validation
    bits/sample. ``bar`` (a tqdm) counts training seconds or steps. The data and every
    variant's settings are checked before this returns (one-line errors); training starts when
    the first result is asked for."""
    if bool(minutes) == bool(steps):
        raise ConfigError("bench --learn: give --minutes or --steps (one or more of either), not both")
    data = PreparedData(data_dir)
    base = copy.deepcopy(base)
    base.data.sample_rate = data.sample_rate
    # Every variant is unconditioned (the baseline has no conditioning): labels and mels in the
    # data are left unused.
    base.model = dataclasses.replace(base.model, labels=[], mel_channels=0, mel_hop=0)
    configs = [(variant, variant_config(base, variant)) for variant in variants]  # refuse bad settings first
    return _train_and_score(
        configs, data, sorted(set(minutes or steps or ())), bool(minutes), device, threads, max_eval_seconds, bar
    )


def _train_and_score(
    configs: list[tuple[Variant, Config]],
    data: PreparedData,
    marks: list[float],
    by_time: bool,
    device: torch.device,
    threads: int | None,
    max_eval_seconds: float | None,
    bar,
) -> Iterator[dict]:
    if threads and device.type == "cpu":
        torch.set_num_threads(threads)
    if device.type == "cpu":
        keep_freed_memory()  # as train does, before any variant runs: the same allocator for all
    if bar is not None:
        bar.reset(total=len(configs) * (marks[-1] * 60 if by_time else marks[-1]))
        bar.unit = "s" if by_time else "step"
    for variant, config in configs:
        runner = (PlainRunner if variant.plain else WavegenRunner)(config, data, device)
        t = config.train
        per_step = t.batch_size * t.accumulate * t.segment_length
        snapshots, spent, step, recent, times = [], 0.0, 0, list[float](), []  # recent: the last finite bits
        for mark in marks:
            limit = mark * 60 if by_time else mark
            while (spent if by_time else step) < limit:
                tick = time.perf_counter()
                bits = runner.step()
                took = time.perf_counter() - tick
                spent, step = spent + took, step + 1
                times.append(took)
                if math.isfinite(bits):
                    recent = (recent + [bits])[-20:]
                if bar is not None:  # by time: up to the budget, not the last step's overshoot past the total
                    bar.update(min(took, max(0.0, marks[-1] * 60 - (spent - took))) if by_time else 1)
                    said = {"bits": f"{np.mean(recent):.3f}"} if recent else {}  # (no number before one is measured)
                    bar.set_postfix({"variant": variant.name, "step": step, **said}, refresh=False)
            weights = {k: v.detach().to("cpu", copy=True) for k, v in runner.scored_model().state_dict().items()}
            snapshots.append(Snapshot(mark, step, spent, float(np.mean(recent)) if recent else None, weights))
        model = runner.scored_model()
        for snap in snapshots:
            model.load_state_dict(snap.weights)
            val_bits, _ = validation_bits(
                model, data, device, segment=t.segment_length, batch_size=t.batch_size, max_seconds=max_eval_seconds
            )
            model.train()
            yield {
                "bench": "learn",
                "variant": variant.name,
                "settings": "the field's standard WaveNet"
                if variant.plain
                else (",".join(variant.overrides) or "recipe"),
                "budget": f"{snap.mark:g} min" if by_time else f"{snap.mark:g} steps",
                "steps": snap.steps,
                "train_s": round(snap.seconds, 3),
                "step_s": round(statistics.median(times[1 : snap.steps] or times), 3),
                "samples_per_s": round(snap.steps * per_step / snap.seconds, 1),
                **({"train_bits": round(snap.train_bits, 4)} if snap.train_bits is not None else {}),
                "val_bits": round(val_bits, 4),
                "precision": runner.precision,
                "device": device.type,
                "threads": torch.get_num_threads() if device.type == "cpu" else None,
                "parameters": sum(p.numel() for p in model.parameters()),
                "cpu": cpu_name(),
            }
        runner.close()  # its temporary run folder goes now, not at exit with a ResourceWarning
        del runner, model, snapshots
