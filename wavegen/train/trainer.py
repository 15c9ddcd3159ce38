"""One process's training state and step: the model, optimizer, moving average, window sampler
and RNGs of a run, what a checkpoint holds of them, and what a stopped run says it kept."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from ..audio.mulaw import decode, encode
from ..config import Config
from ..data.prepared import PreparedData
from ..data.windows import Batch, WindowSampler
from ..errors import CheckpointError, OutOfMemory, TrainingDiverged, WavegenError, WriteError
from ..model import checkpoint as ckpt
from ..model.loss import bits
from ..model.network import WaveNet
from ..runs import checkpoint_paths
from . import graph
from . import precision as precisions
from .batches import batch_on_device, window_terms
from .distributed import World
from .ema import MovingAverage
from .graph import GraphedStep
from .memory import check_fits, describe_shortfall, free_bytes, keep_freed_memory
from .schedule import SCHEDULE_KEYS, continue_schedule, lr_at
from .step import StepResult, StepStats, finish_step, fused_adam, keep_fused, start_step


def rank_seeds(seed: int, rank: int, step: int | None = None) -> tuple[int | np.random.SeedSequence, int]:
    """Seeds of one process's window sampler and input-noise generator.

    Rank 0 of a new run keeps the single-process seeds (``seed``, ``seed + 1``), so a run in one
    process draws what it always drew; every other rank derives its own from (seed, rank), and a
    rank that resumes from a checkpoint without its state (more processes than before) from
    (seed, rank, step), so it does not replay windows it would have drawn at the start.
    """
    if rank == 0 and step is None:
        return seed, (seed + 1) % 2**64  # (train.seed goes up to 2**64 - 1, as torch's seeds do)
    sampler, noise = np.random.SeedSequence([seed, rank] + ([] if step is None else [step])).spawn(2)
    return sampler, int(noise.generate_state(1, np.uint64)[0] >> 1)  # torch takes < 2**63 here


@dataclass
class TrainResult:
    step: int
    train_bits: float | None  # mean of the last steps' losses (None: no step ran)
    val_bits: float | None
    best_val_bits: float | None
    val_history: list[tuple[int, float]] = field(default_factory=list)
    skipped_steps: int = 0
    seconds: float = 0.0


class Trainer:
    """Owns the model, optimizer, data sampler and RNGs of one run (of one process of it, in a
    distributed run: ``world`` says which; the device is then ``world.device``)."""

    def __init__(
        self, config: Config, data: PreparedData, run: Path, device: torch.device, world: World | None = None
    ) -> None:
        self.world = world or World(device=device)
        device = self.world.device if self.world.distributed else device
        self.config, self.data, self.run, self.device = config, data, Path(run), device
        t = config.train
        if t.threads > 0:
            torch.set_num_threads(t.threads)
        if device.type == "cpu":
            keep_freed_memory()
        torch.manual_seed(t.seed)  # the same initial weights in every process
        self.model = WaveNet(config.model).to(device)
        self.rf = self.model.receptive_field
        self.parameters = list(self.model.parameters())
        self.precision = precisions.resolve(t.precision, device)  # fp32 or bf16 (autocast)
        self.check_memory()  # before anything of batch size is built
        self.optimizer = fused_adam(self.parameters, t.lr)
        sampler_seed, noise_seed = rank_seeds(t.seed, self.world.rank)
        # Full context: windows of receptive field + segment codes, the loss on the last segment
        # (every prediction sees its whole past). Without: windows of segment codes with the
        # loss on every position, the first ones seeing silence before the window.
        context = self.rf if t.full_context else 0
        self.sampler = WindowSampler(
            data.train, context, t.segment_length, sampler_seed, t.start_fraction, start_silence=self.rf
        )
        self.noise = torch.Generator(device=device).manual_seed(noise_seed)
        # The network the training forward runs through. DDP averages the gradients over the
        # processes during backward; it holds self.model itself, so the weights, the optimizer
        # and the checkpoints stay those of the bare model (no "module." prefix). Every weight
        # gets a gradient (the last block's unread residual 1×1 a zero one, through the stacked
        # weights of ``layer_weights``), so DDP need not search each step's graph for unused ones.
        self.net: torch.nn.Module = self.model
        if self.world.distributed:
            from torch.nn.parallel import DistributedDataParallel

            self.net = DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=False
            )
        # The training forward: compiled on request (self.model keeps the weights and state dict).
        self.forward = torch.compile(self.net) if t.compile else self.net
        # On a GPU the step is captured as a CUDA graph where it can be; else why not ("" on a CPU).
        self.eager_reason = graph.plan(config, device, self.world.distributed)
        self.graphed = None if self.eager_reason is not None else GraphedStep(self)
        self.val_batches = self._validation_batches() if self.world.is_main else []  # only rank 0 validates
        self.step, self.best_val = 0, None
        # The loss, norm, skipped steps and those in a row (too many stop the run:
        # train.max_bad_steps) stay on the device; the loop reads them when it logs.
        self.stats = StepStats(device)
        self.mid_step = False  # inside train_step: an interrupt there leaves a state not to save
        self.saved_at: dict[str, int | None] = {"latest": None, "best": None}  # step of each checkpoint on disk
        self.val_history: list[tuple[int, float]] = []
        self.schedule: tuple[int, float] | None = None  # lr_at's anchor: where a changed schedule went on from
        self.schedule_before: float | None = None  # the rate the checkpoint's own settings gave (when they changed)
        # The moving average of the weights: what validation, best.pt and synth use (which only
        # rank 0 runs and writes).
        self.ema = MovingAverage(self.model, t.ema) if t.ema > 0 and self.world.is_main else None
        self.init_from: str | None = None  # the model a new run started from (--init-from), kept in its checkpoints
        self.recipe: str | None = None  # where a new run's settings came from (a recipe's name), kept likewise

    def _validation_batches(self) -> list[Batch]:
        """A fixed set of validation windows, so successive validations are comparable."""
        t = self.config.train
        if not self.data.val.spans or t.val_batches == 0:
            return []
        sampler = WindowSampler(self.data.val, self.rf, t.segment_length, seed=12345)
        return [sampler.batch(t.batch_size) for _ in range(t.val_batches)]

    # -- state ---------------------------------------------------------------------------------
    def rng_state(self) -> dict:
        """This process's data RNG states: its window sampler and its input noise."""
        return {"sampler": self.sampler.state(), "noise": self.noise.get_state()}

    def state(self, ranks: list[dict] | None = None) -> dict:
        """Everything to resume from. ``ranks``: every process's ``rng_state`` in a distributed
        run (saved under rng.ranks; rng.sampler and rng.noise stay rank 0's, as in one process)."""
        return {
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "best_val_bits": self.best_val,
            "val_history": [list(v) for v in self.val_history],
            "skipped_steps": self.skipped,
            "schedule": list(self.schedule) if self.schedule is not None else None,
            **({"ema": self.ema.module.state_dict(), "ema_updates": self.ema.count} if self.ema is not None else {}),
            **{key: value for key, value in (("init_from", self.init_from), ("recipe", self.recipe)) if value},
            "rng": {
                "torch": torch.get_rng_state(),
                "noise": self.noise.get_state(),
                "sampler": self.sampler.state(),
                **({"ranks": ranks} if ranks is not None and len(ranks) > 1 else {}),
            },
        }

    def load_state(self, payload: dict, saved: Config | None = None) -> None:
        try:
            self.model.load_state_dict(payload["model"])
            self.optimizer.load_state_dict(payload["optimizer"])
            keep_fused(self.optimizer)
            self.step = int(payload["step"])
            self.best_val = payload["best_val_bits"]
            self.init_from, self.recipe = payload.get("init_from"), payload.get("recipe")
            self.val_history = [tuple(v) for v in payload["val_history"]]
            self.stats.set_counts(int(payload.get("skipped_steps", 0)))
            self._continue_schedule(payload, saved)
            self.saved_at["latest"] = self.step
            self.saved_at["best"] = next((s for s, v in self.val_history if v == self.best_val), None)
            if self.ema is not None:  # a run that turns the average on starts it from its weights
                self.ema.load(payload.get("ema", payload["model"]), int(payload.get("ema_updates", 0)))
            torch.set_rng_state(payload["rng"]["torch"])
            mine = saved_rng(payload["rng"], self.world.rank)
            if mine is None:  # more processes than the checkpoint has states for
                sampler_seed, noise_seed = rank_seeds(self.config.train.seed, self.world.rank, self.step)
                self.sampler.set_state(np.random.default_rng(sampler_seed).bit_generator.state)
                self.noise.manual_seed(noise_seed)
            else:
                self.noise.set_state(mine["noise"])
                self.sampler.set_state(mine["sampler"])
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise CheckpointError(f"{self.run}: checkpoint cannot be resumed ({ckpt.in_words(exc)})") from None

    @property
    def skipped(self) -> int:
        """Steps skipped so far (a non-finite loss or gradient norm). Reads the device."""
        return int(self.stats.values[StepStats._SKIPPED].item())

    @property
    def bad_in_a_row(self) -> int:
        """Skipped steps in a row up to the last one. Reads the device."""
        return int(self.stats.values[StepStats._IN_A_ROW].item())

    def _continue_schedule(self, payload: dict, saved_config: Config | None) -> None:
        """Lay the learning-rate schedule out from the checkpoint's (its config: ``saved_config``, else
        parsed here): unchanged settings keep it, changed ones continue it from the rate reached."""
        saved = payload.get("schedule")
        anchor = None if saved is None else (int(saved[0]), float(saved[1]))
        if anchor is not None and not (anchor[0] >= 0 and math.isfinite(anchor[1]) and anchor[1] >= 0):
            raise ValueError(f"bad schedule {saved!r}")  # (a crafted file: refused like any bad field)
        before = saved_config if saved_config is not None else ckpt.config_of(payload, self.run)
        self.schedule = continue_schedule(self.step, before, self.config, anchor)
        if any(getattr(before.train, key) != getattr(self.config.train, key) for key in SCHEDULE_KEYS + ("lr",)):
            self.schedule_before = lr_at(self.step, before, anchor)

    def lr_at(self, step: int) -> float:
        """The learning rate of step ``step`` in this run's schedule."""
        return lr_at(step, self.config, self.schedule)

    def save(self, which: str = "latest", ranks: list[dict] | None = None) -> None:
        """Write a checkpoint. Weights that are no longer finite are never written over a good
        one, and a failed write (a full disk) stops training, saying what is kept."""
        path = checkpoint_paths(self.run)[which]
        if not self.weights_finite():
            raise TrainingDiverged(
                f"step {self.step}: the weights are no longer finite, so training stopped without "
                f"saving them. {self.on_disk()}. Lower train.lr (now {self.config.train.lr:g}), "
                "or look for broken data"
            )
        try:
            ckpt.save(path, self.state(ranks))
        except WriteError as exc:
            raise CheckpointError(
                f"{path}: {exc.reason}, so training stopped at step {self.step}. {self.on_disk()}. "
                "Make room (or fix the folder), then run the same command again"
            ) from None
        self.saved_at[which] = self.step

    def write_failed(self, exc: WriteError) -> WavegenError:
        """The error for a run stopped by a file it could not write (log.csv, a sample)."""
        return WavegenError(
            f"{exc.path}: {exc.reason}, so training stopped at step {self.step}. {self.on_disk()}. "
            "Make room (or fix the folder), then run the same command again"
        )

    def on_disk(self) -> str:
        """What a stopped run leaves on disk and where running it again starts, as a sentence."""
        paths = checkpoint_paths(self.run)
        kept = [
            f"{path} ({'step ' + str(self.saved_at[which]) if self.saved_at[which] is not None else 'as it was'})"
            for which, path in paths.items()
            if path.is_file()
        ]
        if paths["latest"].is_file():
            return f"Kept {' and '.join(kept)}; running the same command resumes from the latest"
        if kept:
            return f"Kept {kept[0]}, but no latest checkpoint, so running the command again starts afresh"
        return "No checkpoint was saved yet, so running the command again starts afresh"

    def weights_finite(self) -> bool:
        models = [self.model] + ([self.ema.module] if self.ema is not None else [])
        return bool(torch.stack([torch.isfinite(p).all() for m in models for p in m.parameters()]).all())

    # -- steps ---------------------------------------------------------------------------------
    def _noisy(self, codes: torch.Tensor) -> torch.Tensor:
        """Inputs with a little noise: robustness to the model's own sampling errors at
        generation time. ``input_noise`` adds it in the audio domain (the same size at every
        level), ``code_noise`` in µ-law steps (relative to the level). Targets stay clean."""
        t = self.config.train
        if t.input_noise:
            audio = decode(codes) + t.input_noise * torch.randn(codes.shape, generator=self.noise, device=codes.device)
            codes = encode(audio)
        if t.code_noise:
            jitter = t.code_noise * torch.randn(codes.shape, generator=self.noise, device=codes.device)
            codes = (codes + jitter).round_().clamp_(0, self.config.model.classes - 1).long()
        return codes

    def _bits(self, batch: Batch, noisy: bool = False, model: WaveNet | None = None) -> torch.Tensor:
        """Mean cross-entropy in bits over the targets (B, segment) of a batch of windows, by
        ``model``, or else by the training forward (through DDP when distributed, compiled on
        request, with activation checkpointing if asked)."""
        return self._loss(self._on_device(batch, noisy), model)

    def _on_device(self, batch: Batch, noisy: bool = False) -> Batch:
        """A batch's arrays as tensors on the device (inputs with their noise when ``noisy``)."""
        batch = batch_on_device(batch, self.device)
        return batch._replace(inputs=self._noisy(batch.inputs)) if noisy else batch

    def _loss(self, batch: Batch, model: WaveNet | None = None) -> torch.Tensor:
        """``_bits`` of a batch already on the device (``_on_device``)."""
        net = model or self.forward
        recompute = model is None and self.config.train.activation_checkpointing
        model = model or self.model
        inputs, targets = batch.inputs, batch.targets
        with precisions.autocast(self.device, self.precision):
            cond = window_terms(model, batch)
            context = inputs.shape[1] - targets.shape[1]  # rf, or 0 for windows without context
            logits = net(inputs, output_from=context, cond=cond, recompute=recompute)  # (B, classes, segment)
        return bits(logits, targets)

    @torch.no_grad()
    def validate(self, batches: Iterable | None = None) -> float | None:  # (batches: the val_batches, in a bar)
        if not self.val_batches:
            return None
        model = self.ema.module if self.ema is not None else self.model
        model.eval()
        first, *rest = [self._bits(batch, model=model) for batch in (batches or self.val_batches)]
        model.train()
        return sum(rest, first).item() / len(self.val_batches)  # (one read of the device)

    def check_memory(self) -> None:
        """Refuse, before the first step, a batch whose activations cannot fit (see ``memory``)."""
        t = self.config.train
        check_fits(
            self.model,
            t.batch_size,
            t.segment_length,
            self.device,
            t.activation_checkpointing,
            t.ema > 0,
            value_bytes=precisions.value_bytes(self.precision),
            full_context=t.full_context,
        )

    def out_of_memory(self) -> OutOfMemory:
        """The error for a step that ran out of memory after all."""
        t = self.config.train
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        free = free_bytes(self.device) or 0
        return OutOfMemory(
            describe_shortfall(
                self.model,
                t.batch_size,
                t.segment_length,
                self.device,
                free,
                t.activation_checkpointing,
                t.ema > 0,
                value_bytes=precisions.value_bytes(self.precision),
                full_context=t.full_context,
            )
            + f" (it ran out during step {self.step + 1}). {self.on_disk()}"
        )

    def train_step(self) -> StepResult:
        """One optimizer step; returns its loss in bits (averaged over the processes) and
        gradient norm as device tensors, read by nobody here. A non-finite loss in any process,
        or a non-finite gradient norm, makes every process skip the step: no weight, Adam
        moment or average changes, and ``stats`` counts it (``skipped``, ``bad_in_a_row``).
        On a GPU the step is a CUDA graph's replay after its first steps (``graph``)."""
        self.mid_step = True
        t = self.config.train
        lr = self.lr_at(self.step)
        # The windows are drawn and sent (with their noise) before the step's work: on a GPU
        # the host prepares the next batch while the device still runs this one.
        batches = [self._on_device(self.sampler.batch(t.batch_size), noisy=True) for _ in range(t.accumulate)]
        result = self.eager_step(batches, lr) if self.graphed is None else self.graphed.step(batches, lr)
        self.step += 1
        self.mid_step = False
        return result

    def eager_step(self, batches: list[Batch], lr: float) -> StepResult:
        """A step on ``batches`` (on the device, with their noise) at learning rate ``lr``."""
        start_step(self.optimizer, lr)
        return self.step_body(batches)

    def step_body(self, batches: list[Batch]) -> StepResult:
        """Forward, backward and update on batches on the device: what a CUDA graph captures.
        The micro-batches' gradients add up (each scaled by 1/n); DDP averages the sum over
        the processes in the last backward."""
        losses = []
        for micro, batch in enumerate(batches):
            with self._gradient_sync(micro == len(batches) - 1):
                bits = self._loss(batch)
                (bits / len(batches)).backward()
            losses.append(bits.detach())
        # Every process takes the same decision without a word: a process's non-finite loss is
        # non-finite in its gradients too, which DDP has averaged into every process's.
        mean = self.world.mean(torch.stack(losses).mean() if len(losses) > 1 else losses[0])
        t = self.config.train
        return finish_step(self.optimizer, self.model, self.parameters, mean, t.grad_clip, self.ema, self.stats)

    def _gradient_sync(self, synced: bool) -> contextlib.AbstractContextManager:
        """DDP's ``no_sync`` for the micro-batches before the last (nothing in one process)."""
        if synced or not self.world.distributed:
            return contextlib.nullcontext()
        return self.net.no_sync()


def saved_rng(rng: dict, rank: int) -> dict | None:
    """One rank's data RNG states in a checkpoint's ``rng``, or None if it has none: a
    single-process checkpoint holds rank 0's only, a distributed one those of each rank it ran."""
    ranks = rng.get("ranks") or [{"sampler": rng["sampler"], "noise": rng["noise"]}]
    return ranks[rank] if rank < len(ranks) else None
