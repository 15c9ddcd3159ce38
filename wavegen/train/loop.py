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
the changes ``run_config`` allows (``settings.resolve_config``: edits to config.toml, ``--set``,
``--steps``; a changed schedule continues from the rate reached, ``schedule``), and first clears
what a killed run left behind: log rows past the checkpoint (they are trained again) and
half-written temporary files.

``train`` reads as its phases: open the data and the run (``_open``), say what resuming changes
(``_say_resumed``), tidy the run folder (``_tidy_run_folder``), score the untrained model
(``monitor.first_validation``), then the steps (``_steps``: each step, then ``_after_step``'s
validation, log row, checkpoint and sample), and the summary (``_summary``).

Under torchrun the same loop runs in every process (``distributed.World``): the model is wrapped
in DistributedDataParallel, which averages the gradients, each process draws its own windows,
and only rank 0 logs, validates and writes the run folder.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from ..config import Config, to_toml
from ..data.prepared import PreparedData
from ..devices import resolve_device
from ..errors import TrainingDiverged, TrainingInterrupted, WriteError
from ..files import atomic_write_text
from ..locks import holds_run
from ..messages import silenced
from ..model import checkpoint as ckpt
from ..progress import bar as progress_bar
from ..run_config import CONFIG_FILE, CONFIG_MARKER, Change, read_run_file, says
from ..runs import append_row, checkpoint_paths, clear_leftovers, resume_log
from . import monitor
from .distributed import World, rank_zero_speaks
from .init_from import Source, start_from
from .schedule import VALIDATION_KEYS, describe_schedule
from .settings import fit_to_data
from .signals import stop_requests
from .slow import SlowStepNote, gpu_sized_note
from .step import Figures
from .trainer import Trainer, TrainResult

logger = logging.getLogger(__name__)


@rank_zero_speaks
@holds_run("run")
def train(
    config: Config,
    data_dir: Path,
    run: Path,
    device: str = "auto",
    progress: bool = True,
    world: World | None = None,
    changes: Sequence[Change] = (),
    checkpoint: ckpt.Checkpoint | None = None,
    config_file_current: bool | None = None,
    data: PreparedData | None = None,
    init: Source | None = None,
    recipe: str | None = None,
) -> TrainResult:
    """Train (or resume) the run in ``run`` on the prepared data in ``data_dir``.

    ``config``: as ``settings.resolve_config`` returns it (a recipe's is fitted to the data here as
    it would be). ``world``: this process's place in a distributed run (``distributed.start``; its
    device replaces ``device``). Every process calls ``train``; rank 0 alone logs and writes
    files. ``changes``, ``checkpoint``, ``config_file_current``, ``data``, ``init``: what ``resolve_config``
    changed in a resumed run's settings, the checkpoint it read, whether RUN/config.toml says the
    config (None: found out here), the prepared data it opened (None: opened here) and the model a
    new run starts from (``--init-from``). A run already at ``train.steps`` trains nothing and says how to go on.
    """
    world = world or World(device=resolve_device(device))
    progress = progress and world.is_main  # (rank 0 alone speaks: rank_zero_speaks)
    run = Path(run)
    trainer, payload = _open(config, data or PreparedData(Path(data_dir)), run, world, checkpoint)
    if init is not None and payload is None:  # a new run from a model's weights (--init-from)
        start_from(trainer, init)
    if payload is None:
        trainer.recipe = recipe
    if payload is not None:
        _say_resumed(trainer, payload, changes)
        if trainer.step >= trainer.config.train.steps:
            return _already_done(trainer)
    if world.is_main:
        _tidy_run_folder(trainer, resumed=payload is not None, current=config_file_current)
    board = monitor.open_tensorboard(run, trainer.step + 1 if payload is not None else None) if world.is_main else None
    _say_start(trainer)
    if payload is None and world.is_main and (note := gpu_sized_note(trainer.config, trainer.device)):
        logger.warning(note)  # before the first validation, which alone can take minutes with such a recipe
    try:
        monitor.first_validation(trainer, board, progress)
        result = _steps(trainer, board, progress)
    finally:
        if board is not None:
            board.close()
        # Drop DDP (its reducer holds the process group) here, not when ``trainer`` goes: an
        # exception's traceback keeps ``trainer`` alive through the caller's World.close, and
        # the group must be freed there (see World.close).
        trainer.net = trainer.forward = trainer.model
    logger.info(_summary(result, run))
    return result


def _open(
    config: Config, data: PreparedData, run: Path, world: World, got: ckpt.Checkpoint | None
) -> tuple[Trainer, dict | None]:
    """The trainer with the final config on ``data``, and the run's checkpoint loaded into it
    when there is one (``got``, when the caller read it already; its payload is returned too:
    None for a new run)."""
    latest = checkpoint_paths(run)["latest"]
    with silenced():
        fitted = fit_to_data(config, data, data.folder, run, latest.is_file(), check=False)
    if fitted != config:  # not resolve_config's: fitted here, saying what resolve_config would
        fitted = fit_to_data(config, data, data.folder, run, latest.is_file())
    trainer = Trainer(fitted, data, run, world.device, world)
    if not latest.is_file():
        return trainer, None
    # every process reads it (CPU tensors: RNG states must stay there), once: resolve_config's read
    payload, saved = got if got is not None else ckpt.read(latest)
    trainer.load_state(payload, saved)
    return trainer, payload


def _say_resumed(trainer: Trainer, payload: dict, changes: Sequence[Change]) -> None:
    """What resuming changes: settings, the schedule, the validation windows, new ranks' seeds."""
    config, world = trainer.config, trainer.world
    logger.info(
        f"resuming {trainer.run} at step {trainer.step}" + (f" with {', '.join(map(str, changes))}" if changes else "")
    )
    if trainer.schedule_before is not None:
        logger.info(describe_schedule(trainer.step, config, trainer.schedule, trainer.schedule_before))
    measure = [c.key for c in changes if c.key in VALIDATION_KEYS]
    if measure and trainer.best_val is not None:
        logger.info(
            f"validation scores other windows from here on ({', '.join(measure)} changed): its figures are not "
            f"comparable with those before step {trainer.step}, and best.pt is kept only when one beats "
            f"{trainer.best_val:.3f}"
        )
    saved = len(payload["rng"].get("ranks") or [None])
    if world.size > saved and trainer.step < config.train.steps:
        which = f"rank {saved}" if saved == world.size - 1 else f"ranks {saved}..{world.size - 1}"
        logger.info(
            f"{which} draw{'s' if saved == world.size - 1 else ''} windows from new seeds "
            f"(the checkpoint holds the sampling state of {saved} process{'es' if saved > 1 else ''})"
        )


def _already_done(trainer: Trainer) -> TrainResult:
    """A run already at its last step: nothing is trained or written; say how to go on."""
    run, steps = trainer.run, trainer.config.train.steps
    logger.info(
        f"{run} is already at its last step ({trainer.step} of train.steps = {steps}); nothing to train. To train "
        f"on, give a larger --steps: wavegen train --run {run} --steps {2 * trainer.step}"
    )
    return TrainResult(
        trainer.step,
        None,
        trainer.val_history[-1][1] if trainer.val_history else None,
        trainer.best_val,
        list(trainer.val_history),
        trainer.skipped,
    )


def _tidy_run_folder(trainer: Trainer, resumed: bool, current: bool | None) -> None:
    """Clear what a killed run left (temporary files, log rows past its checkpoint) and write
    config.toml unless it already says what the run is (``current``: whether it does, None: read
    it here; a user's file is left as written)."""
    run, config = trainer.run, trainer.config
    run.mkdir(parents=True, exist_ok=True)
    strays = clear_leftovers(run)
    if strays:
        logger.info(
            f"removed {len(strays)} unfinished temporary file{'s' if len(strays) > 1 else ''} of an interrupted "
            f"write ({', '.join(p.name for p in strays)})"
        )
    # (a new run keeps no row of an attempt killed before its first checkpoint)
    dropped = resume_log(run / "log.csv", trainer.step if resumed else -1)
    if dropped:
        rows = f"{dropped} log row{'s' if dropped > 1 else ''}"
        logger.info(
            f"dropped {rows} that an interrupted run wrote after step {trainer.step} (its last checkpoint); "
            "they are trained again"
            if resumed
            else f"dropped {rows} of an attempt that saved no checkpoint"
        )
    if current is None:
        current = says(read_run_file(run), run, config)
    if not current:
        atomic_write_text(run / CONFIG_FILE, f"{CONFIG_MARKER}\n{to_toml(config)}")


def _say_start(trainer: Trainer) -> None:
    t, world = trainer.config.train, trainer.world
    per_step = world.size * t.accumulate * t.batch_size
    graphed = "; the step is captured as a CUDA graph after its first steps" if trainer.graphed is not None else ""
    eager = f"; the step runs eagerly: {trainer.eager_reason}" if trainer.eager_reason else ""
    logger.info(
        f"training {trainer.model.parameter_count():,} parameters on {trainer.device} in {trainer.precision}, "
        f"receptive field {trainer.rf} samples ({1000 * trainer.rf / trainer.data.sample_rate:.0f} ms), "
        f"steps {trainer.step}..{t.steps}{graphed}{eager}"
        + (
            f"; {world.size} processes, {per_step} windows per step (batch_size {t.batch_size} × "
            f"accumulate {t.accumulate} × {world.size} processes)"
            if world.distributed
            else ""
        )
    )


@dataclass
class _Progress:
    """What the steps report as they go: the mean loss of the last interval read (the bar and
    the summary), when the steps started and when the figures were last read (the rate), and
    the progress bar."""

    bar: Any  # a tqdm (progress.bar)
    slow: SlowStepNote
    start: float = field(default_factory=time.perf_counter)
    recent: float | None = None
    read_at: tuple[float, int] | None = None  # (time, step) of the last read


def _steps(trainer: Trainer, board, progress: bool) -> TrainResult:
    """Train from ``trainer.step`` to ``train.steps``; a stop request, a second signal or a
    failed write ends it with the message that says what is kept."""
    t, world = trainer.config.train, trainer.world
    latest = checkpoint_paths(trainer.run)["latest"]
    state = _Progress(
        progress_bar(total=t.steps, initial=trainer.step, desc="train", unit="step", enabled=progress),
        SlowStepNote(trainer.device, trainer.step, t.steps),
    )
    try:
        with stop_requests() as stop:
            while trainer.step < t.steps:
                _one_step(trainer, state)
                stopping = _after_step(trainer, stop, state, board)
                if stopping:
                    state.bar.close()
                    world.barrier()  # nobody exits before rank 0 has written latest.pt (torchrun would kill it)
                    raise TrainingInterrupted(
                        f"interrupted at step {trainer.step}; saved {latest}. Run the same command to resume."
                        if world.is_main
                        else ""
                    )
                state.bar.update(1)
            world.barrier()  # the run is done when rank 0 has written its last checkpoint
    except WriteError as exc:  # log.csv or a training sample (a checkpoint's own failure says more)
        raise trainer.write_failed(exc) from None
    except KeyboardInterrupt:
        state.bar.close()
        raise _interrupted(trainer) from None
    finally:
        state.bar.close()
    return TrainResult(
        step=trainer.step,
        train_bits=state.recent,
        val_bits=trainer.val_history[-1][1] if trainer.val_history else None,
        best_val_bits=trainer.best_val,
        val_history=list(trainer.val_history),
        skipped_steps=trainer.skipped,
        seconds=time.perf_counter() - state.start,
    )


def _one_step(trainer: Trainer, state: _Progress) -> None:
    """One optimizer step, queued: nothing of it is read here (``_read``). Running out of
    memory is one line saying what to lower."""
    tick = time.perf_counter()
    if state.read_at is None:
        state.read_at = (tick, trainer.step)
    try:
        trainer.train_step()
    except torch.OutOfMemoryError:
        raise trainer.out_of_memory() from None
    except RuntimeError as exc:  # a CPU allocation failure
        if "can't allocate memory" not in str(exc):
            raise
        raise trainer.out_of_memory() from None
    state.slow.after(trainer.step, time.perf_counter() - tick)  # (a CPU's steps: they run as they are queued)


def _read(trainer: Trainer, state: _Progress) -> tuple[Figures, float]:
    """The step figures and the audio samples per second of every process since the last
    read: one wait for the device. A run of bad steps stops here (the same count in every
    process): each changed no weight, so reading them late loses nothing."""
    t, world, figures = trainer.config.train, trainer.world, trainer.stats.read()
    assert state.read_at is not None  # the first step (_one_step) set it
    now, (then, step) = time.perf_counter(), state.read_at
    rate = world.size * t.accumulate * t.batch_size * t.segment_length * (trainer.step - step) / max(now - then, 1e-9)
    state.read_at = (now, trainer.step)
    if figures.mean_bits is not None:
        state.recent = figures.mean_bits
    if figures.in_a_row >= t.max_bad_steps:
        raise TrainingDiverged(
            f"step {trainer.step}: {figures.in_a_row} steps in a row had a non-finite loss or gradient "
            f"(train.max_bad_steps = {t.max_bad_steps}), so training stopped. {trainer.on_disk()}. "
            f"Lower train.lr (now {t.lr:g}), or look for broken data"
            if world.is_main
            else ""
        )
    return figures, rate


def _after_step(trainer: Trainer, stop: threading.Event, state: _Progress, board) -> bool:
    """Read the step figures, validate, log, save and sample as the step's number asks;
    returns whether to stop (a stop request in any process: every process agrees, at the next
    step that logs, validates or saves when there are several, and rank 0 has saved this
    step). Other steps read nothing from the device."""
    t, world, step = trainer.config.train, trainer.world, trainer.step
    due = step % t.log_every == 0 or step % t.val_every == 0 or step % t.checkpoint_every == 0 or step == t.steps
    # Processes agree on a stop request at the steps that read the figures anyway: agreeing is
    # a collective and a read of the device, which the other steps do not wait for.
    stopping = world.any(stop.is_set()) if due or not world.distributed else False
    validating = (step % t.val_every == 0 or step == t.steps) and not stopping
    saving = step % t.checkpoint_every == 0 or step == t.steps or stopping
    if not (validating or saving or step % t.log_every == 0):
        return stopping
    figures, rate = _read(trainer, state)
    # The checkpoints rank 0 may write now hold every process's sampling state.
    ranks = world.gather(trainer.rng_state()) if world.distributed and (validating or saving) else None
    if not world.is_main:
        return stopping
    val = _validate(trainer, ranks) if validating else None
    if step % t.log_every == 0 or val is not None:
        _log_row(trainer, figures, rate, val, state, board)
    if saving:
        trainer.save("latest", ranks)
    if t.sample_every and step % t.sample_every == 0 and not stopping:
        monitor.training_sample(trainer, step, board)
    return stopping


def _validate(trainer: Trainer, ranks: list[dict] | None) -> float | None:
    """Score the fixed validation windows; a new best is saved as best.pt."""
    val = trainer.validate()
    if val is not None:
        trainer.val_history.append((trainer.step, val))
        # (a NaN never becomes the best: nothing would ever beat it afterwards)
        if math.isfinite(val) and (trainer.best_val is None or val < trainer.best_val):
            trainer.best_val = val
            trainer.save("best", ranks)
    return val


def _log_row(trainer: Trainer, figures: Figures, rate: float, val: float | None, state: _Progress, board) -> None:
    """One row of log.csv, the same numbers to TensorBoard, and the progress bar's figures."""
    step, lr = trainer.step, trainer.lr_at(trainer.step - 1)
    append_row(
        trainer.run / "log.csv",
        {
            "step": step,
            "train_bits": round(figures.bits, 4),
            "val_bits": "" if val is None else round(val, 4),
            "lr": f"{lr:.3g}",
            "grad_norm": round(figures.norm, 4),
            "samples_per_s": round(rate),
            "elapsed_s": round(time.perf_counter() - state.start, 1),
            "skipped": figures.skipped,
        },
    )
    scalars = {"train_bits": figures.bits, "val_bits": val, "lr": lr, "grad_norm": figures.norm}  # (unrounded)
    monitor.log_scalars(board, step, scalars | {"samples_per_s": rate, "skipped": figures.skipped})
    postfix: dict[str, str | int] = {"bits": f"{state.recent:.3f}"} if state.recent is not None else {}  # (none yet)
    postfix["samples/s"] = f"{rate:,.0f}"
    if trainer.val_history:
        postfix["val"] = f"{trainer.val_history[-1][1]:.3f}"
    if figures.skipped:
        postfix["skipped"] = figures.skipped
    state.bar.set_postfix(postfix, refresh=False)


def _interrupted(trainer: Trainer) -> TrainingInterrupted:
    """A second signal (or Ctrl-C outside the handler): save between steps in one process;
    never a half-done step, nor in a distributed run (saving needs every process)."""
    world, latest = trainer.world, checkpoint_paths(trainer.run)["latest"]
    if world.distributed:
        return TrainingInterrupted(
            f"stopped at step {trainer.step} without saving it. {trainer.on_disk()}" if world.is_main else ""
        )
    if trainer.mid_step:  # a half-done step: keep the last checkpoint instead
        return TrainingInterrupted(f"stopped during step {trainer.step + 1} without saving it. {trainer.on_disk()}")
    trainer.save("latest")
    return TrainingInterrupted(f"interrupted at step {trainer.step}; saved {latest}. Run the same command to resume.")


def _summary(result: TrainResult, run: Path) -> str:
    """The last line: the step reached and what was measured (nothing that was not)."""
    measured = [f"train {result.train_bits:.3f} bits/sample"] if result.train_bits is not None else []
    if result.val_bits is not None:  # (the best is finite whenever a finite validation was seen)
        best = f" (best {result.best_val_bits:.3f})" if result.best_val_bits is not None else ""
        measured.append(f"validation {result.val_bits:.3f}{best}")
    msg = f"done: step {result.step}" + "".join(f", {part}" for part in measured)
    if result.skipped_steps:
        msg += f"; skipped {result.skipped_steps} steps with a non-finite loss or gradient"
    return msg + f"; checkpoints in {run / 'checkpoints'}"
