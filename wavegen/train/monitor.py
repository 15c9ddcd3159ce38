"""What a training run leaves to look at and listen to besides ``log.csv``: TensorBoard logs
and periodic samples. Rank 0 alone writes them.

    RUN/tensorboard/            TensorBoard events (``tensorboard --logdir runs/``): every logged
                                step's scalars (bits/train, bits/validation, lr, grad_norm,
                                samples_per_s, skipped_steps) and each periodic sample's audio.
                                Only when tensorboard is installed (``pip install
                                tensorboard``); training says once when it is not.
    RUN/samples/stepN.wav       every ``train.sample_every`` steps, ``train.sample_seconds`` of
                                audio from the weights validation uses, with .png and .json
                                beside it (``artifacts``; kind "train")

``log.csv`` stays the complete record (what ``wavegen report`` reads); TensorBoard is a view.

A sample is one stream, from silence, seed ``train.seed``, temperature 1, generated on the CPU
with the native engine when it builds (``choice.choose`` without a trial, else the torch engine):
about 1 s for 1 s of audio with the default recipe's shape on one core (21,000 samples/s,
docs/measurements.md#cpu-the-native-engine), ~11 s with the torch fallback. At the default recipe's
2,000-step interval that is about 1 % of a run on one H200 (2,000 steps of batch 8 × 8000 at
the measured 1.45 million samples/s take about 90 s) and far less on a CPU, where 2,000 steps
take hours. A labelled model generates its
first label; a mel model the start of the first validation file (its own log-mels, as vocode
would), shortened to that file's length.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..audio.artifacts import SampleRecord
from ..audio.mulaw import decode
from ..errors import WriteError
from ..generate.choice import choose
from ..generate.engines import generate
from ..generate.request import GenerationRequest
from ..generate.streams import make_conditioning
from ..progress import bar as progress_bar
from ..runs import append_row

logger = logging.getLogger(__name__)

TENSORBOARD_HINT = "pip install tensorboard"  # the tensorboard extra holds just this, whatever the install


SCALARS = {  # log.csv column → TensorBoard tag
    "train_bits": "bits/train",
    "val_bits": "bits/validation",
    "lr": "lr",
    "grad_norm": "grad_norm",
    "samples_per_s": "samples_per_s",
    "skipped": "skipped_steps",
}


def open_tensorboard(run: Path, purge_step: int | None):
    """A ``SummaryWriter`` on ``RUN/tensorboard`` or, when tensorboard is not installed, None
    (saying so, and how to turn it on). ``purge_step``: the first step a resumed run trains;
    events a killed run wrote from there on are dropped, as its log.csv rows are."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        logger.info(
            f"TensorBoard logging is off (tensorboard is not installed; `{TENSORBOARD_HINT}` turns it on); "
            f"{Path(run) / 'log.csv'} has every logged step"
        )
        return None
    logger.debug(f"TensorBoard events in {Path(run) / 'tensorboard'}")
    return SummaryWriter(str(Path(run) / "tensorboard"), purge_step=purge_step)


def log_scalars(writer, step: int, values: dict[str, Any]) -> None:
    """The numbers of one log.csv row as TensorBoard scalars (blank ones left out)."""
    if writer is None:
        return
    for key, tag in SCALARS.items():
        value = values.get(key)
        if value is not None and value != "":
            writer.add_scalar(tag, float(value), step)


def sample_conditioning(model, data) -> tuple[str | None, np.ndarray | None, str | None, int | None]:
    """What a periodic sample conditions on: (label, mels (frames, bands), the file they come
    from, the most samples they cover)."""
    label = model.config.labels[0] if model.config.labels else None
    if not model.config.mel_channels:
        return label, None, None, None
    split_name = "val" if data.val.spans else "train"
    split = data.splits[split_name]
    offset, count = split.mel_spans[0]
    source = [f for f in data.manifest["files"] if f[split_name][1] > 0][0].get("source")
    return label, np.asarray(split.mels[offset : offset + count], np.float32), source, count * model.config.mel_hop


def training_sample(trainer, step: int, writer=None) -> Path | None:
    """Generate and write ``RUN/samples/step{step}.wav`` (+ .png, .json) from the weights validation
    uses, and hand its audio to TensorBoard. A failed write is reported and training goes on."""
    config = trainer.config
    rate, seconds, seed = config.data.sample_rate, config.train.sample_seconds, config.train.seed
    source = trainer.ema.module if trainer.ema is not None else trainer.model
    model = copy.deepcopy(source).to("cpu").eval()  # the engine packs these; training goes on with its own
    # One stream, no trial: the CPU's native engine where it builds (it leaves the GPU to training).
    request = GenerationRequest(device="auto" if trainer.device.type != "cpu" else "cpu", precision="fp32")
    chosen = choose(request, 1, model, trial=False)
    label, mels, mel_source, most = sample_conditioning(model, trainer.data)
    num = max(1, round(seconds * rate))
    if most is not None:
        num = min(num, most)
    conditioning = make_conditioning(model, None if label is None else [label], None if mels is None else mels[None])
    tick = time.perf_counter()
    codes = generate(chosen.engine, num, [seed], 1.0, conditioning=conditioning)
    took = time.perf_counter() - tick
    audio = decode(codes[0]).numpy()
    path = trainer.run / "samples" / f"step{step}.wav"
    record = SampleRecord(
        kind="train",
        run=trainer.run.name,
        checkpoint=None,
        step=step,
        weights="moving average" if trainer.ema is not None else "trained",
        seed=seed,
        temperature=1.0,
        engine=chosen.engine.name,
        precision=chosen.engine.precision,
        device=str(chosen.device),
        label=label,
        mel=mel_source,
        took_s=took,
    )
    try:
        record.write(path, audio, rate)
    except WriteError as exc:
        logger.warning(f"{exc}; no sample at step {step}, training goes on")
        path = None
    else:
        logger.debug(f"wrote {path} ({took:.1f} s with the '{chosen.engine.name}' engine)")
    if writer is not None:
        writer.add_audio("sample", torch.from_numpy(audio)[None], step, sample_rate=rate)
    return path


def first_validation(trainer, board, progress: bool) -> None:
    """A new run's validation before any step: the curve's starting point (row 0 of log.csv), with
    a bar (``progress``): on a CPU it can take minutes before the first step."""
    if trainer.step or trainer.val_history or not trainer.world.is_main:
        return
    batches = progress_bar(trainer.val_batches, desc="validation", unit="batch", enabled=progress, leave=False)
    first = trainer.validate(batches)
    if first is None:
        return
    trainer.val_history.append((0, first))
    try:
        append_row(trainer.run / "log.csv", {"step": 0, "val_bits": round(first, 4), "elapsed_s": 0})
    except WriteError as exc:
        raise trainer.write_failed(exc) from None
    log_scalars(board, 0, {"val_bits": first})
