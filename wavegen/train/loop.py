"""Training: random windows → cross-entropy over 256 classes → Adam, with resumable runs.

A run folder holds everything about one model:

    RUN/config.toml             the resolved config (recipe + overrides), which a user may edit
    RUN/log.csv                 one row per logged step: loss and validation in bits per sample,
                                and how many steps were skipped so far (non-finite loss or gradient)
    RUN/checkpoints/latest.pt   model, optimizer, step and every RNG state (resume point)
    RUN/checkpoints/best.pt     the same, at the lowest validation loss so far
    RUN/samples/stepN.wav       every train.sample_every steps: a sample, with .png and .json
    RUN/tensorboard/            the logged numbers and samples for TensorBoard, when installed
                                (``monitor``)

Running ``train`` on a folder that has a checkpoint resumes it, from the checkpoint's config with
the changes ``run_config`` allows (edits to config.toml, ``--set``, ``--steps``; a changed
schedule continues from the rate reached, ``continue_schedule``), and first clears what a killed
run left behind: log rows past the checkpoint (they are trained again) and
half-written temporary files.

Under torchrun the same loop runs in every process (``distributed.World``): the model is wrapped
in DistributedDataParallel, which averages the gradients, each process draws its own windows,
and only rank 0 logs, validates and writes the run folder.
"""
from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..audio.features import MelSettings, check_same_analysis
from ..audio.mulaw import decode, encode
from ..config import (
    Config,
    ConfigError,
    apply_overrides,
    differences,
    load_recipe,
    load_toml,
    to_toml,
    validate,
)
from ..data.prepared import PreparedData
from ..data.windows import IGNORE, Batch, WindowSampler
from ..devices import resolve_device
from ..errors import (
    CheckpointError,
    OutOfMemory,
    TrainingDiverged,
    TrainingInterrupted,
    WavegenError,
    WriteError,
)
from ..files import atomic_write_text
from ..model import checkpoint as ckpt
from ..model.conditioning import WindowTerms
from ..model.network import WaveNet
from ..outputs import leaves_no_empty_folder
from ..run_config import (
    CONFIG_FILE,
    Change,
    changes,
    merge_changes,
    read_edits,
    refuse_fixed,
)
from ..runs import append_row, checkpoint_paths, clear_leftovers, resume_log
from ..train import precision as precisions
from .distributed import World
from .memory import check_fits, describe_shortfall, free_bytes, keep_freed_memory

LN2 = math.log(2.0)


def _quiet(message: str) -> None:
    """A log that says nothing (every process's but rank 0's)."""


# The model settings a recipe gives; a run's own config adds what its data carries (labels, mels).
SHAPE_KEYS = ("cycles", "layers_per_cycle", "kernel_size", "input_kernel_size", "residual_channels",
              "gate_channels", "skip_channels", "cond_channels")


def _recipe(recipe: str | Config | None) -> Config:
    """A fresh copy of the recipe's config: a name or path (``default`` if None), or a ``Config``
    given in Python (checked like a recipe: types, then ``validate``)."""
    if isinstance(recipe, Config):
        config = Config.from_dict(recipe.to_dict(), source="config")
        validate(config)
        return config
    return load_recipe(recipe or "default")


def resolve_config(run: Path, recipe: str | Config | None, overrides: list[str], steps: int | None,
                   log: Callable[[str], None] = _quiet) -> tuple[Config, bool, list[Change]]:
    """The config a ``train`` call will use, whether it resumes an existing run, and what it
    changes in that run's settings (``run_config``: edits to RUN/config.toml, ``--set``,
    ``--steps``; a change to a setting fixed once trained is refused).

    A new run starts from the recipe (``default`` if none), or from the config.toml of an attempt
    that saved no checkpoint when no recipe is given; an existing run from its checkpoint's
    config with the user's edits to its config.toml.
    """
    latest = checkpoint_paths(run)["latest"]
    saved_file = Path(run) / CONFIG_FILE
    resuming = latest.is_file()
    stages: list[list[Change]] = []
    if resuming:
        payload = ckpt.load(latest)
        saved = ckpt.config_of(payload, latest)
        if recipe is not None:
            _check_recipe(run, recipe, saved, log)
        config = read_edits(run, saved)
        stages.append(changes(saved, config, str(saved_file)))
    elif recipe is None and saved_file.is_file():  # an attempt that saved no checkpoint: its settings, as edited
        config = load_toml(saved_file)
        validate(config)
        log(f"using the settings in {saved_file} (this run has no checkpoint yet)")
    else:
        config = _recipe(recipe)
        if saved_file.is_file():
            what = "the given config" if isinstance(recipe, Config) else f"recipe '{recipe}'"
            log(f"replacing {saved_file} (of an attempt that saved no checkpoint) with {what}")
    for source, items in (("--set", overrides), ("--steps", [] if steps is None else [f"train.steps={steps}"])):
        before = Config.from_dict(config.to_dict())
        apply_overrides(config, items)
        stages.append(changes(before, config, source))
    found = merge_changes(stages)
    if resuming:
        refuse_fixed(found, run)
        if config.train.steps < int(payload.get("step", 0)):  # it would train nothing, silently
            raise ConfigError(f"{run}: already trained to step {payload.get('step')}; --steps {config.train.steps} "
                              "is behind it: give a larger --steps to train on, or --run NEW_DIR to start again")
    return config, resuming, found if resuming else []


def _check_recipe(run: Path, recipe: str | Config, saved: Config, log: Callable[[str], None]) -> None:
    """``--recipe`` given for an existing run: its model shape must be the run's; its other
    settings do not apply (the run's own do), which is said rather than done silently."""
    wanted = _recipe(recipe)
    what = "the given config" if isinstance(recipe, Config) else f"recipe '{recipe}'"
    shape = {k: getattr(saved.model, k) for k in SHAPE_KEYS}
    if {k: getattr(wanted.model, k) for k in SHAPE_KEYS} != shape:
        raise ConfigError(
            f"{run}: this run's model shape differs from {what}; "
            "resume without --recipe, or start a new run with --run NEW_DIR"
        )
    other = [key for key, _, _ in differences(saved, wanted) if key.startswith("train.")]
    if other:
        log(f"{what} differs from run {run} in {', '.join(other)}: the run's own settings apply "
            "(change them with --set or in its config.toml)")


def condition_on(config: Config, data: PreparedData, data_dir: Path, resuming: bool,
                 log: Callable[[str], None] = print) -> None:
    """Make the model condition on what the prepared data carries (label names, log-mel
    features with their analysis settings); a resumed run's data must carry the same."""
    m, d = config.model, config.data
    mel = data.mel or {}
    wanted = {"labels": list(data.labels), "mel_channels": int(mel.get("bands", 0)),
              "mel_hop": int(mel.get("hop", 0))}
    have = {"labels": list(m.labels), "mel_channels": m.mel_channels, "mel_hop": m.mel_hop}
    if resuming and wanted != have:
        def said(c):
            return (f"labels [{', '.join(c['labels'])}]" if c["labels"] else "no labels") + (
                f", {c['mel_channels']} mel bands every {c['mel_hop']} samples" if c["mel_channels"] else ", no mels")
        raise ConfigError(f"{data_dir}: the data has {said(wanted)} but the run was trained with {said(have)}; "
                          "prepare the data the same way or start a new run with --run NEW_DIR")
    if resuming and mel:  # the same bands and hop are not enough: every analysis setting must match
        check_same_analysis(mel, MelSettings.from_data(d, bands=m.mel_channels), data_dir, "this run")
    m.labels, m.mel_channels, m.mel_hop = wanted["labels"], wanted["mel_channels"], wanted["mel_hop"]
    if not resuming:  # the run records how its data was prepared, not what the recipe would have done
        d.val_fraction = float(data.manifest.get("val_fraction", d.val_fraction))
        d.labels = "folders" if data.labels else "none"
        d.channel = str(data.manifest.get("channel", d.channel))
    if mel:  # the run keeps the analysis settings, so vocode computes the same features
        d.mels, d.mel_hop, d.mel_n_fft = int(mel["bands"]), int(mel["hop"]), int(mel["n_fft"])
        d.mel_fmin, d.mel_fmax = float(mel["fmin"]), float(mel["fmax"])
    if not resuming and (m.labels or m.mel_channels):
        parts = [f"{len(m.labels)} labels ({', '.join(m.labels)})"] if m.labels else []
        parts += [f"{m.mel_channels}-band log-mels every {m.mel_hop} samples"] if m.mel_channels else []
        log("conditioning on " + " and ".join(parts))


def lr_at(step: int, config: Config, anchor: tuple[int, float] | None = None) -> float:
    """The learning rate of step ``step``: a linear warm-up, then a cosine decay to
    ``lr * min_lr_ratio`` at the last step.

    ``anchor`` (step s, level a): the decay starts at step s from ``a * lr`` instead of from
    ``lr`` at the end of the warm-up. A run whose schedule changed part-way (``--steps`` raised,
    say) continues from where its rate was (``continue_schedule``) instead of jumping to where a
    run planned that long from the start would be.
    """
    t = config.train
    if anchor is None and step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    start, level = anchor or (t.warmup_steps, 1.0)
    progress = min(max(step - start, 0) / max(t.steps - start, 1), 1.0)
    floor = t.min_lr_ratio
    return t.lr * (floor + (level - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


# The fixed validation windows are val_batches batches of batch_size windows of segment_length.
VALIDATION_KEYS = ("train.batch_size", "train.segment_length", "train.val_batches")


SCHEDULE_KEYS = ("steps", "warmup_steps", "min_lr_ratio")  # what lays out the schedule (lr only scales it)


def continue_schedule(step: int, before: Config, after: Config,
                      anchor: tuple[int, float] | None) -> tuple[int, float] | None:
    """The ``lr_at`` anchor for a run at ``step`` whose schedule settings change from
    ``before``'s to ``after``'s: the decay goes on from the level the old schedule had reached
    at ``step`` (a run still warming up keeps warming up). ``train.lr`` scales the whole curve,
    so changing it alone keeps the anchor."""
    old, new = before.train, after.train
    if all(getattr(old, k) == getattr(new, k) for k in SCHEDULE_KEYS):
        return anchor
    if anchor is None and step < new.warmup_steps:
        return None
    return step, lr_at(step, before, anchor) / old.lr


def describe_schedule(step: int, config: Config, anchor: tuple[int, float] | None, was: float | None = None) -> str:
    """The schedule from ``step`` on, in words (``was``: the rate the previous settings gave)."""
    t = config.train
    now = lr_at(step, config, anchor)
    text = f"learning rate {now:.3g} at step {step}"
    if was is not None and not math.isclose(was, now, rel_tol=1e-3):
        text += f" (it was {was:.3g})"
    if anchor is None and step < t.warmup_steps:
        text += f", warming up to {t.lr:.3g} by step {t.warmup_steps}"
    elif anchor is not None and math.isclose(anchor[1], t.min_lr_ratio, rel_tol=1e-3):
        return text + (f": the end of its decay, where it stays until step {t.steps} (train.lr scales the whole "
                       "schedule)")
    return text + f", then cosine decay to {t.lr * t.min_lr_ratio:.3g} at step {t.steps}"


def rank_seeds(seed: int, rank: int, step: int | None = None) -> tuple[int | np.random.SeedSequence, int]:
    """Seeds of one process's window sampler and input-noise generator.

    Rank 0 of a new run keeps the single-process seeds (``seed``, ``seed + 1``), so a run in one
    process draws what it always drew; every other rank derives its own from (seed, rank), and a
    rank that resumes from a checkpoint without its state (more processes than before) from
    (seed, rank, step), so it does not replay windows it would have drawn at the start.
    """
    if rank == 0 and step is None:
        return seed, seed + 1
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

    def __init__(self, config: Config, data: PreparedData, run: Path, device: torch.device,
                 world: World | None = None) -> None:
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
        self.precision = precisions.resolve(t.precision, device)  # fp32 or bf16 (autocast)
        self.check_memory()  # before anything of batch size is built
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=t.lr)
        sampler_seed, noise_seed = rank_seeds(t.seed, self.world.rank)
        # Full context: windows of receptive field + segment codes, the loss on the last segment
        # (every prediction sees its whole past). Without: windows of segment codes with the
        # loss on every position, the first ones seeing silence before the window.
        context = self.rf if t.full_context else 0
        self.sampler = WindowSampler(data.train, context, t.segment_length, sampler_seed, t.start_fraction,
                                     start_silence=self.rf)
        self.noise = torch.Generator(device=device).manual_seed(noise_seed)
        # The network the training forward runs through. DDP averages the gradients over the
        # processes during backward; it holds self.model itself, so the weights, the optimizer
        # and the checkpoints stay those of the bare model (no "module." prefix). The last
        # block's residual output feeds nothing, so some weights get no gradient: DDP must look.
        self.net: torch.nn.Module = self.model
        if self.world.distributed:
            from torch.nn.parallel import DistributedDataParallel

            self.net = DistributedDataParallel(self.model, device_ids=[device.index] if device.type == "cuda" else None,
                                               find_unused_parameters=True)
        # The training forward: compiled on request (self.model keeps the weights and state dict).
        self.forward = torch.compile(self.net) if t.compile else self.net
        self.val_batches = self._validation_batches() if self.world.is_main else []  # only rank 0 validates
        self.step, self.best_val, self.skipped = 0, None, 0
        self.bad_in_a_row = 0  # consecutive skipped steps: too many stop the run (train.max_bad_steps)
        self.mid_step = False  # inside train_step: an interrupt there leaves a state not to save
        self.saved_at: dict[str, int | None] = {"latest": None, "best": None}  # step of each checkpoint on disk
        self.val_history: list[tuple[int, float]] = []
        self.schedule: tuple[int, float] | None = None  # lr_at's anchor: where a changed schedule went on from
        self.schedule_before: float | None = None  # the rate the checkpoint's own settings gave (when they changed)
        self.ema = None  # moving average of the weights: what validation, best.pt and synth use
        if t.ema > 0 and self.world.is_main:  # (which only rank 0 runs and writes)
            from torch.optim.swa_utils import AveragedModel

            self.ema = AveragedModel(self.model, multi_avg_fn=ema_update(t.ema), use_buffers=True)

    def _validation_batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
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
            **({"ema": self.ema.module.state_dict(), "ema_updates": int(self.ema.n_averaged)}
               if self.ema is not None else {}),
            "rng": {
                "torch": torch.get_rng_state(),
                "noise": self.noise.get_state(),
                "sampler": self.sampler.state(),
                **({"ranks": ranks} if ranks is not None and len(ranks) > 1 else {}),
            },
        }

    def load_state(self, payload: dict) -> None:
        try:
            self.model.load_state_dict(payload["model"])
            self.optimizer.load_state_dict(payload["optimizer"])
            self.step = int(payload["step"])
            self.best_val = payload["best_val_bits"]
            self.val_history = [tuple(v) for v in payload["val_history"]]
            self.skipped = int(payload.get("skipped_steps", 0))
            self._continue_schedule(payload)
            self.saved_at["latest"] = self.step
            self.saved_at["best"] = next((s for s, v in self.val_history if v == self.best_val), None)
            if self.ema is not None:  # a run that turns the average on starts it from its weights
                self.ema.module.load_state_dict(payload.get("ema", payload["model"]))
                self.ema.n_averaged.fill_(int(payload.get("ema_updates", 0)))
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
            raise CheckpointError(f"{self.run}: checkpoint cannot be resumed ({exc})") from None

    def _continue_schedule(self, payload: dict) -> None:
        """Lay the learning-rate schedule out from the checkpoint's: unchanged settings keep
        it, changed ones continue it from the rate reached (``continue_schedule``)."""
        saved = payload.get("schedule")
        anchor = None if saved is None else (int(saved[0]), float(saved[1]))
        if anchor is not None and not (anchor[0] >= 0 and math.isfinite(anchor[1]) and anchor[1] >= 0):
            raise ValueError(f"bad schedule {saved!r}")  # (a crafted file: refused like any bad field)
        before = ckpt.config_of(payload, self.run)
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
            raise TrainingDiverged(f"step {self.step}: the weights are no longer finite, so training stopped without "
                                   f"saving them. {self.on_disk()}. Lower train.lr (now {self.config.train.lr:g}), "
                                   "or look for broken data")
        try:
            ckpt.save(path, self.state(ranks))
        except WriteError as exc:
            raise CheckpointError(f"{path}: {exc.reason}, so training stopped at step {self.step}. {self.on_disk()}. "
                                  "Make room (or fix the folder), then run the same command again") from None
        self.saved_at[which] = self.step

    def write_failed(self, exc: WriteError) -> WavegenError:
        """The error for a run stopped by a file it could not write (log.csv, a sample)."""
        return WavegenError(f"{exc.path}: {exc.reason}, so training stopped at step {self.step}. {self.on_disk()}. "
                            "Make room (or fix the folder), then run the same command again")

    def on_disk(self) -> str:
        """What a stopped run leaves on disk and where running it again starts, as a sentence."""
        paths = checkpoint_paths(self.run)
        kept = [f"{path} ({'step ' + str(self.saved_at[which]) if self.saved_at[which] is not None else 'as it was'})"
                for which, path in paths.items() if path.is_file()]
        if paths["latest"].is_file():
            return f"Kept {' and '.join(kept)}; running the same command resumes from the latest"
        if kept:
            return f"Kept {kept[0]}, but no latest checkpoint, so running the command again starts afresh"
        return "No checkpoint was saved yet, so running the command again starts afresh"

    def weights_finite(self) -> bool:
        models = [self.model] + ([self.ema.module] if self.ema is not None else [])
        return all(bool(torch.isfinite(p).all()) for m in models for p in m.parameters())

    # -- steps ---------------------------------------------------------------------------------
    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        if self.device.type == "cuda":
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor

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
        net = model or self.forward
        recompute = model is None and self.config.train.activation_checkpointing
        model = model or self.model
        inputs, targets = self._to_device(batch.inputs), self._to_device(batch.targets)
        if noisy:
            inputs = self._noisy(inputs)
        with precisions.autocast(self.device, self.precision):
            cond = window_terms(model, batch, self._to_device)
            context = inputs.shape[1] - targets.shape[1]  # rf, or 0 for windows without context
            logits = net(inputs, output_from=context, cond=cond, recompute=recompute)  # (B, classes, segment)
        return F.cross_entropy(logits.float(), targets, ignore_index=IGNORE) / LN2

    @torch.no_grad()
    def validate(self) -> float | None:
        if not self.val_batches:
            return None
        model = self.ema.module if self.ema is not None else self.model
        model.eval()
        total = 0.0
        for batch in self.val_batches:
            total += self._bits(batch, model=model).item()
        model.train()
        return total / len(self.val_batches)

    def check_memory(self) -> None:
        """Refuse, before the first step, a batch whose activations cannot fit (see ``memory``)."""
        t = self.config.train
        check_fits(self.model, t.batch_size, t.segment_length, self.device, t.activation_checkpointing, t.ema > 0,
                   value_bytes=precisions.value_bytes(self.precision), full_context=t.full_context)

    def out_of_memory(self) -> OutOfMemory:
        """The error for a step that ran out of memory after all."""
        t = self.config.train
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        free = free_bytes(self.device) or 0
        return OutOfMemory(describe_shortfall(self.model, t.batch_size, t.segment_length, self.device, free,
                                              t.activation_checkpointing, t.ema > 0,
                                              value_bytes=precisions.value_bytes(self.precision),
                                              full_context=t.full_context)
                            + f" (it ran out during step {self.step + 1}). {self.on_disk()}")

    def train_step(self) -> tuple[float, float]:
        """One optimizer step; returns (loss in bits, averaged over the processes; gradient
        norm). A non-finite loss in any process, or a non-finite gradient norm, makes every
        process skip the step (counted in ``skipped`` and ``bad_in_a_row``)."""
        self.mid_step = True
        result = self._step()
        self.mid_step = False
        return result

    def _step(self) -> tuple[float, float]:
        t = self.config.train
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step)
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for micro in range(t.accumulate):  # gradients of the micro-batches add up (each scaled by 1/n)
            synced = micro == t.accumulate - 1  # DDP averages the sum once, in the last backward
            with self._gradient_sync(synced):
                bits = self._bits(self.sampler.batch(t.batch_size), noisy=True)
                # Every process must take the same branch here, or DDP's backward waits forever
                # for a process that skipped it: the mean is finite only if every loss is.
                mean = self.world.mean(bits)
                if not torch.isfinite(mean):
                    if synced and self.world.distributed:
                        (bits * 0).backward()  # finishes the reduction DDP's forward started; dropped below
                    return self._skip(float("nan"), float("nan"))
                (bits / t.accumulate).backward()
            total += mean.item()
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip or float("inf"))
        # A finite loss can still have an infinite gradient (an overflow in backward): clipping
        # would then scale every gradient by 0 * inf = NaN, and Adam write NaN into the weights.
        # The gradients were averaged over the processes already, so every one sees this norm.
        if not torch.isfinite(norm):
            return self._skip(total / t.accumulate, norm.item())
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.step += 1
        self.bad_in_a_row = 0
        return total / t.accumulate, norm.item()

    def _skip(self, bits: float, norm: float) -> tuple[float, float]:
        """A step that changes no weight (nor the moving average): it only counts."""
        self.optimizer.zero_grad(set_to_none=True)
        self.skipped += 1
        self.bad_in_a_row += 1
        self.step += 1
        return bits, norm

    def _gradient_sync(self, synced: bool) -> contextlib.AbstractContextManager:
        """DDP's ``no_sync`` for the micro-batches before the last (nothing in one process)."""
        if synced or not self.world.distributed:
            return contextlib.nullcontext()
        return self.net.no_sync()


# A step slower than this on a CPU is a recipe sized for a GPU (the default takes ~10 s a step on
# a laptop CPU, the tiny one ~0.05 s): say once what the whole run would take, and train on.
SLOW_CPU_STEP_S = 2.0
SLOW_STEPS_MEASURED = 3  # steps timed after the first (which pays one-time costs: allocation, threads)


class SlowStepNote:
    """Watches the first steps of a session on a CPU and, when the median of steps 2..4 takes
    more than ``SLOW_CPU_STEP_S`` seconds, logs once how long a step takes, what the rest of
    ``train.steps`` would take in hours, and how to train something smaller."""

    def __init__(self, device: torch.device, step: int, steps: int, log: Callable[[str], None]) -> None:
        self.watching = device.type == "cpu"
        self.start, self.steps, self.log = step, steps, log
        self.times: list[float] = []

    def after(self, step: int, seconds: float) -> None:
        """Record that ``step`` (counted from 1, the run's own count) took ``seconds``."""
        if not self.watching or step == self.start + 1:  # (the first step of a session is not typical)
            return
        self.times.append(seconds)
        if len(self.times) < SLOW_STEPS_MEASURED:
            return
        self.watching = False
        each = float(np.median(self.times))
        if each > SLOW_CPU_STEP_S:
            hours = each * (self.steps - step) / 3600
            self.log(f"a training step takes {each:.1f} s on this CPU: the {self.steps - step:,} steps left to "
                     f"train.steps = {self.steps:,} would take about {hours:,.1f} hours. To try things out, train "
                     "--recipe tiny, or a smaller model or window (--set model.cycles=1, --set "
                     "train.segment_length=1000); training goes on")


def ema_update(decay: float) -> Callable:
    """The moving average's update for ``AveragedModel``, with a warm-up: the n-th update uses
    ``min(decay, (1 + n) / (10 + n))`` (as TensorFlow's ExponentialMovingAverage does with
    ``num_updates``), so the average follows the weights of a young run instead of holding on
    to its first steps (with 0.999 from the start, a run of 500 steps would still be 60 %
    its initial weights) and reaches ``decay`` after ~9000 updates."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], updates: torch.Tensor) -> None:
        n = int(updates)
        torch._foreach_lerp_(averaged, current, 1.0 - min(decay, (1 + n) / (10 + n)))

    return update


def saved_rng(rng: dict, rank: int) -> dict | None:
    """One rank's data RNG states in a checkpoint's ``rng``, or None if it has none: a
    single-process checkpoint holds rank 0's only, a distributed one those of each rank it ran."""
    ranks = rng.get("ranks") or [{"sampler": rng["sampler"], "noise": rng["noise"]}]
    return ranks[rank] if rank < len(ranks) else None


def window_terms(model: WaveNet, batch: Batch, to_device: Callable[[np.ndarray], torch.Tensor]) -> WindowTerms | None:
    """The conditioning of a batch of windows, for a conditioned model (else None)."""
    if not model.conditioned:
        return None

    def put(array: np.ndarray | None) -> torch.Tensor | None:
        return None if array is None else to_device(array)

    return WindowTerms(model.conditioner, batch.inputs.shape[1], labels=put(batch.labels),
                       mels=put(batch.mels), offsets=put(batch.offsets))


@leaves_no_empty_folder("run")
def train(
    config: Config,
    data_dir: Path,
    run: Path,
    device: str = "auto",
    log: Callable[[str], None] = print,
    progress: bool = True,
    world: World | None = None,
    changes: list[Change] = (),
) -> TrainResult:
    """Train (or resume) the run in ``run`` on the prepared data in ``data_dir``.

    ``world``: this process's place in a distributed run (``distributed.start``; its device
    replaces ``device``). Every process calls ``train``; rank 0 alone logs and writes files.
    ``changes``: what ``resolve_config`` changed in a resumed run's settings, to be named. A run
    already at ``train.steps`` trains nothing and says how to go on.
    """
    from ..progress import bar as progress_bar

    world = world or World(device=resolve_device(device))
    if not world.is_main:
        log, progress = _quiet, False
    run = Path(run)
    data = PreparedData(data_dir)
    if data.sample_rate != config.data.sample_rate:
        latest = checkpoint_paths(run)["latest"]
        if latest.is_file():
            raise ConfigError(
                f"{data_dir}: prepared at {data.sample_rate} Hz but run {run} is at "
                f"{config.data.sample_rate} Hz; prepare again with --sample-rate {config.data.sample_rate}"
            )
        log(f"using the prepared data's rate, {data.sample_rate} Hz (recipe said {config.data.sample_rate})")
        config.data.sample_rate = data.sample_rate
    condition_on(config, data, data_dir, resuming=checkpoint_paths(run)["latest"].is_file(), log=log)
    dev = world.device
    trainer = Trainer(config, data, run, dev, world)
    latest = checkpoint_paths(run)["latest"]
    if latest.is_file():  # every process reads it: the run folder must be visible to all
        payload = ckpt.load(latest)  # CPU tensors: RNG states must stay there
        trainer.load_state(payload)
        log(f"resuming {run} at step {trainer.step}" + (f" with {', '.join(map(str, changes))}" if changes else ""))
        if trainer.schedule_before is not None:
            log(describe_schedule(trainer.step, config, trainer.schedule, trainer.schedule_before))
        measure = [c.key for c in changes if c.key in VALIDATION_KEYS]
        if measure and trainer.best_val is not None:
            log(f"validation scores other windows from here on ({', '.join(measure)} changed): its figures are not "
                f"comparable with those before step {trainer.step}, and best.pt is kept only when one beats "
                f"{trainer.best_val:.3f}")
        if trainer.step >= config.train.steps:
            log(f"{run} is already at its last step ({trainer.step} of train.steps = {config.train.steps}); nothing "
                f"to train. To train on, give a larger --steps: wavegen train --run {run} --steps "
                f"{2 * trainer.step}")
            return TrainResult(trainer.step, None, trainer.val_history[-1][1] if trainer.val_history else None,
                               trainer.best_val, list(trainer.val_history), trainer.skipped)
        saved = len(payload["rng"].get("ranks") or [None])
        if world.size > saved:
            which = f"rank {saved}" if saved == world.size - 1 else f"ranks {saved}..{world.size - 1}"
            log(f"{which} draw{'s' if saved == world.size - 1 else ''} windows from new seeds "
                f"(the checkpoint holds the sampling state of {saved} process{'es' if saved > 1 else ''})")
    if world.is_main:
        run.mkdir(parents=True, exist_ok=True)
        strays = clear_leftovers(run)
        if strays:
            log(f"removed {len(strays)} unfinished temporary file{'s' if len(strays) > 1 else ''} of an interrupted "
                f"write ({', '.join(p.name for p in strays)})")
        # (a new run keeps no row of an attempt killed before its first checkpoint)
        dropped = resume_log(run / "log.csv", trainer.step if latest.is_file() else -1)
        if dropped:
            rows = f"{dropped} log row{'s' if dropped > 1 else ''}"
            log(f"dropped {rows} that an interrupted run wrote after step {trainer.step} (its last checkpoint); "
                "they are trained again" if latest.is_file() else f"dropped {rows} of an attempt that saved no checkpoint")
        if not (run / CONFIG_FILE).is_file() or read_edits(run, config).to_dict() != config.to_dict():
            atomic_write_text(run / CONFIG_FILE, to_toml(config))  # (a file that says the same is left as written)
    from ..train import monitor

    board = monitor.open_tensorboard(run, trainer.step + 1 if latest.is_file() else None, log) if world.is_main else None
    t = config.train
    per_step = world.size * t.accumulate * t.batch_size
    log(
        f"training {trainer.model.parameter_count():,} parameters on {dev} in {trainer.precision}, receptive field "
        f"{trainer.rf} samples ({1000 * trainer.rf / data.sample_rate:.0f} ms), "
        f"steps {trainer.step}..{t.steps}"
        + (f"; {world.size} processes, {per_step} windows per step (batch_size {t.batch_size} × "
           f"accumulate {t.accumulate} × {world.size} processes)" if world.distributed else "")
    )
    if trainer.step == 0 and not trainer.val_history and world.is_main:
        first = trainer.validate()
        if first is not None:
            trainer.val_history.append((0, first))
            try:
                append_row(run / "log.csv", {"step": 0, "val_bits": round(first, 4), "elapsed_s": 0})
            except WriteError as exc:
                raise trainer.write_failed(exc) from None
            monitor.log_scalars(board, 0, {"val_bits": first})

    # Ctrl-C (SIGINT) or SIGTERM only asks to stop: the step under way finishes, then the
    # processes (torchrun passes on the signal it gets) agree on that step, rank 0 saves there,
    # and all stop together. An interrupt raised inside a step could land anywhere, between the
    # windows drawn and the step counted or halfway through Adam's update, and save a state that
    # no uninterrupted run ever had. A second signal stops at once (saving in one process when
    # it lands between steps).
    stop = threading.Event()

    def on_signal(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    in_main_thread = threading.current_thread() is threading.main_thread()
    signals = [signal.SIGTERM, signal.SIGINT]
    previous = {sig: signal.signal(sig, on_signal) for sig in signals} if in_main_thread else {}
    start, recent = time.perf_counter(), []
    bar = progress_bar(total=t.steps, initial=trainer.step, desc="train", unit="step", enabled=progress)
    slow = SlowStepNote(dev, trainer.step, t.steps, log)
    try:
        while trainer.step < t.steps:
            tick = time.perf_counter()
            try:
                bits, norm = trainer.train_step()
            except torch.OutOfMemoryError:
                raise trainer.out_of_memory() from None
            except RuntimeError as exc:  # a CPU allocation failure
                if "can't allocate memory" not in str(exc):
                    raise
                raise trainer.out_of_memory() from None
            took = time.perf_counter() - tick
            rate = per_step * t.segment_length / took  # every process's samples
            slow.after(trainer.step, took)
            if math.isfinite(bits):
                recent = (recent + [bits])[-50:]
            step, val = trainer.step, None
            if trainer.bad_in_a_row >= t.max_bad_steps:  # the same count in every process
                raise TrainingDiverged(
                    f"step {step}: {trainer.bad_in_a_row} steps in a row had a non-finite loss or gradient "
                    f"(train.max_bad_steps = {t.max_bad_steps}), so training stopped. {trainer.on_disk()}. "
                    f"Lower train.lr (now {t.lr:g}), or look for broken data" if world.is_main else "")
            stopping = world.any(stop.is_set())
            validating = (step % t.val_every == 0 or step == t.steps) and not stopping
            saving = step % t.checkpoint_every == 0 or step == t.steps or stopping
            # The checkpoints rank 0 may write now hold every process's sampling state.
            ranks = world.gather(trainer.rng_state()) if world.distributed and (validating or saving) else None
            if validating and world.is_main:
                val = trainer.validate()
                if val is not None:
                    trainer.val_history.append((step, val))
                    # (a NaN never becomes the best: nothing would ever beat it afterwards)
                    if math.isfinite(val) and (trainer.best_val is None or val < trainer.best_val):
                        trainer.best_val = val
                        trainer.save("best", ranks)
            if (step % t.log_every == 0 or val is not None) and world.is_main:
                append_row(run / "log.csv", {
                    "step": step, "train_bits": round(bits, 4),
                    "val_bits": "" if val is None else round(val, 4),
                    "lr": f"{trainer.lr_at(step - 1):.3g}", "grad_norm": round(norm, 4),
                    "samples_per_s": round(rate), "elapsed_s": round(time.perf_counter() - start, 1),
                    "skipped": trainer.skipped,
                })
                monitor.log_scalars(board, step, {"train_bits": bits, "val_bits": val, "lr": trainer.lr_at(step - 1),
                                                  "grad_norm": norm, "samples_per_s": rate, "skipped": trainer.skipped})
                postfix = {"bits": f"{np.mean(recent):.3f}"} if recent else {}  # (none measured yet: no number)
                postfix["samples/s"] = f"{rate:,.0f}"
                if trainer.val_history:
                    postfix["val"] = f"{trainer.val_history[-1][1]:.3f}"
                if trainer.skipped:
                    postfix["skipped"] = trainer.skipped
                bar.set_postfix(postfix, refresh=False)
            if saving and world.is_main:
                trainer.save("latest", ranks)
            if t.sample_every and step % t.sample_every == 0 and world.is_main and not stopping:
                monitor.training_sample(trainer, step, log, board)
            if stopping:
                bar.close()
                world.barrier()  # nobody exits before rank 0 has written latest.pt (torchrun would kill it)
                raise TrainingInterrupted(
                    f"interrupted at step {step}; saved {latest}. Run the same command to resume."
                    if world.is_main else "")
            bar.update(1)
        world.barrier()  # the run is done when rank 0 has written its last checkpoint
    except WriteError as exc:  # log.csv or a training sample (a checkpoint's own failure says more)
        raise trainer.write_failed(exc) from None
    except KeyboardInterrupt:
        bar.close()
        if world.distributed:  # saving needs every process (their sampling states), which may be gone
            raise TrainingInterrupted(f"stopped at step {trainer.step} without saving it. {trainer.on_disk()}"
                                      if world.is_main else "") from None
        if trainer.mid_step:  # a half-done step: keep the last checkpoint instead
            raise TrainingInterrupted(f"stopped during step {trainer.step + 1} without saving it. "
                                      f"{trainer.on_disk()}") from None
        trainer.save("latest")
        raise TrainingInterrupted(
            f"interrupted at step {trainer.step}; saved {latest}. Run the same command to resume."
        ) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        bar.close()
        if board is not None:
            board.close()
        # Drop DDP (its reducer holds the process group) here, not when ``trainer`` goes: an
        # exception's traceback keeps ``trainer`` alive through the caller's World.close, and
        # the group must be freed there (see World.close).
        trainer.net = trainer.forward = trainer.model
    result = TrainResult(
        step=trainer.step,
        train_bits=float(np.mean(recent)) if recent else None,
        val_bits=trainer.val_history[-1][1] if trainer.val_history else None,
        best_val_bits=trainer.best_val,
        val_history=list(trainer.val_history),
        skipped_steps=trainer.skipped,
        seconds=time.perf_counter() - start,
    )
    measured = [f"train {result.train_bits:.3f} bits/sample"] if result.train_bits is not None else []
    if result.val_bits is not None:  # (the best is finite whenever a finite validation was seen)
        best = f" (best {result.best_val_bits:.3f})" if result.best_val_bits is not None else ""
        measured.append(f"validation {result.val_bits:.3f}{best}")
    msg = f"done: step {result.step}" + "".join(f", {part}" for part in measured)
    if result.skipped_steps:
        msg += f"; skipped {result.skipped_steps} steps with a non-finite loss or gradient"
    log(msg + f"; checkpoints in {run / 'checkpoints'}")
    return result
