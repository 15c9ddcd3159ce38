"""Synthesis from a checkpoint into a folder: load the model, generate the request, write a
sample record per stream."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..audio.artifacts import SampleRecord
from ..audio.mulaw import decode
from ..config import Config
from ..errors import CheckpointError
from ..generate.request import GenerationRequest, as_request
from ..generate.streams import generate_streams
from ..interrupts import note_kept, signals_held
from ..model import checkpoint as ckpt
from ..model.network import WaveNet
from ..outputs import distinct_names, leaves_no_empty_folder, safe_name, sample_path, writable_folder
from ..run_config import check_unedited
from ..runs import model_name

logger = logging.getLogger(__name__)


@dataclass
class SynthResult:
    files: list[Path]
    samples_per_s: float
    real_time_factor: float
    engine: str
    labels: list[str] | None = None  # the label of each stream, for labelled models
    precision: str = "fp32"  # the weights' precision in the engine


def load_checkpoint(checkpoint: Path) -> tuple[WaveNet, dict, Config, int]:
    """``(model, payload, config, step)`` of a checkpoint file: the model rebuilt from it alone
    (moving-average weights when it has them), on the CPU. Raises ``CheckpointError`` for an
    unreadable file and ``ConfigError`` when the run's config.toml changes a fixed setting."""
    model, payload, config = ckpt.load_model(checkpoint, map_location="cpu")
    check_unedited(checkpoint, config)  # an edited data.sample_rate would be ignored: refuse it
    return model, payload, config, step_of(payload, checkpoint)


def step_of(payload: dict, checkpoint: Path) -> int:
    """The training step a checkpoint was saved at (part of the output names)."""
    try:
        return int(payload.get("step", 0))
    except (TypeError, ValueError):
        raise CheckpointError(f"{checkpoint}: bad step in checkpoint ({payload.get('step')!r})") from None


@leaves_no_empty_folder("out")
def synthesize(
    checkpoint: Path,
    out: Path = Path("samples"),
    request: GenerationRequest | None = None,
    progress: bool = True,
    timings: bool = True,
    **asked: Any,
) -> SynthResult:
    """``generate_streams`` of ``request`` (or its fields as keywords) from a checkpoint, into
    ``out``: a WAV each, with its spectrogram (.png) and metadata (.json) beside it
    (``SampleRecord``). ``timings=False`` leaves took_s and created out of the metadata (the
    speed is still logged). A refused request leaves earlier samples as they were."""
    request = as_request(request, asked)  # refused here, before the (long) generation
    writable_folder(out)
    note_kept(kept_note(0, request.n or 1, out))
    model, payload, config, step = load_checkpoint(checkpoint)
    run_name = safe_name(model_name(checkpoint))
    made = generate_streams(model, config.data.sample_rate, str(checkpoint), request, progress, step)
    names, rate, n = made.labels, made.sample_rate, len(made.seeds)
    # Labels come from the data or the checkpoint: made safe and distinct as the model's whole
    # list, so a label's file name does not depend on which others were asked for.
    tags = dict(zip(model.config.labels, distinct_names(list(model.config.labels))))
    files: list[Path] = []
    taken: set[str] = set()
    for i, s in enumerate(made.seeds):
        tag = f"-{tags[names[i]]}" if names else ""
        record = SampleRecord(
            kind="synth",
            run=run_name,
            checkpoint=str(checkpoint),
            step=step,
            weights="moving average" if "ema" in payload else "trained",
            seed=s,
            temperature=request.temperature,
            engine=made.engine,
            precision=made.precision,
            device=made.device,
            label=names[i] if names else None,
            prime=_named(request.prime),
            mel=_named(request.mel),
            streams=n,
            took_s=made.seconds_taken,
        )
        audio = decode(made.codes[i]).numpy()
        # an earlier sample of this request is replaced; another's, or a user's file, never is
        meta = {**record.meta(), "seconds": round(len(audio) / rate, 4)}
        path = sample_path(out, run_name, f"-step{step}{tag}-seed{s}.wav", meta, taken)
        with signals_held():  # a stop while it is written comes once it is in place, and counted
            record.write(path, audio, rate, timings)  # one stream at a time, whole
            files.append(path)
            note_kept(kept_note(len(files), n, out))
        logger.debug(f"wrote {path} with its .png and .json")
    sps = made.samples_per_s
    result = SynthResult(files, sps, sps / rate, made.engine, names, made.precision)
    logger.info(
        f"wrote {len(files)} file{'s' * (len(files) != 1)} to {out}: {sps:,.0f} samples/s over {n} "
        f"stream{'s' * (n != 1)}, "
        f"{result.real_time_factor:.3f}× real time"
    )
    return result


def kept_note(written: int, total: int, out: Path) -> str:
    """What a stop leaves in ``out`` after ``written`` of ``total`` samples (``note_kept``)."""
    if not written:
        return f"no sample was written to {out}"
    return f"kept {written} of {total} samples in {out}, each whole (.wav, .png, .json)"


def _named(source: object) -> str | None:
    """A prime's or mel's name in the record: its path, "array" for data given as such."""
    if source is None:
        return None
    return str(source) if isinstance(source, (str, Path)) else "array"
