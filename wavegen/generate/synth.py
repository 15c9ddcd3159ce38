"""Synthesis from a checkpoint: pick the run, build the engine, generate, write WAVs."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..audio.artifacts import write_sample
from ..audio.io import AudioReadError, cancel_note, read_recording
from ..audio.mulaw import decode, encode
from ..errors import CheckpointError, ConfigError, DataError
from ..limits import (
    MAX_STREAMS,
    check_samples,
    check_seconds,
    check_streams,
    check_temperature,
    generation_memory,
)
from ..model import checkpoint as ckpt
from ..outputs import (
    distinct_names,
    inside,
    leaves_no_empty_folder,
    safe_name,
    writable_folder,
)
from ..run_config import check_unedited
from ..runs import checkpoint_paths, newest_run
from .choice import pick_engine
from .engines import checked_precision, engine_precision, generate


def pick_checkpoint(run: Path | None = None, checkpoint: Path | None = None) -> Path:
    """``--checkpoint`` as given; else the run's best checkpoint (lowest validation loss), or
    its latest when it has no validation data; the run defaults to the newest under ``runs/``."""
    if checkpoint is not None and run is not None:  # one of them would be ignored
        raise ConfigError(f"--run {run} and --checkpoint {checkpoint}: give one of them")
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        if checkpoint.is_dir():
            raise CheckpointError(
                f"{checkpoint}: --checkpoint is a folder; give a checkpoint file "
                f"(RUN/checkpoints/best.pt), or the run folder with --run"
            )
        return checkpoint
    run = Path(run) if run is not None else newest_run()
    if run.exists() and not run.is_dir():
        raise CheckpointError(
            f"{run}: --run is a file, not a run folder"
            + ("; give a checkpoint file with --checkpoint" if run.suffix == ".pt" else "")
        )
    paths = checkpoint_paths(run)
    for which in ("best", "latest"):
        if paths[which].is_file():
            return paths[which]
    raise CheckpointError(f"{run}: no checkpoints in {run / 'checkpoints'} (train it first)")


@dataclass
class SynthResult:
    files: list[Path]
    samples_per_s: float
    real_time_factor: float
    engine: str
    labels: list[str] | None = None  # the label of each stream, for labelled models
    precision: str = "fp32"  # the weights' precision in the engine


def stream_labels(model, wanted: list[str], n: int | None) -> tuple[list[str] | None, int]:
    """The label of each stream and the number of streams.

    No ``--label``: streams go through the model's labels in turn (one each by default). One
    label: every stream. Several: one per stream (``n`` defaults to their number).
    """
    known = list(model.config.labels)
    if not known:
        if wanted:
            raise ConfigError("--label: this model was trained without labels")
        return None, n or 1
    for name in wanted:
        if name not in known:
            raise ConfigError(f"--label {name}: unknown label (known: {', '.join(known)})")
    names = wanted or known
    if n is None:
        n = len(names) if len(wanted) != 1 else 1
    if len(wanted) > 1 and n != len(wanted):
        raise ConfigError(f"--n {n} with {len(wanted)} labels: give one --label, or one per stream")
    return [names[i % len(names)] for i in range(n)], n


def read_mel_file(path: Path, bands: int) -> np.ndarray:
    """Log-mel features (frames, bands) from a .npy file, as ``prepare`` stores them
    ((bands, frames) is accepted too). Raises ``DataError`` for an unreadable file or bad features."""
    try:
        mels = np.load(Path(path), allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read mel features ({exc})") from None
    return check_mels(mels, bands, str(path))


def check_mels(mels: np.ndarray, bands: int, source: str = "mel") -> np.ndarray:
    """``mels`` as contiguous float32 (frames, bands); (bands, frames) is transposed. Raises
    ``DataError`` naming ``source`` for another shape, no frames, or NaN/infinite values."""
    mels = np.asarray(mels)
    if mels.ndim != 2 or bands not in mels.shape:
        raise DataError(f"{source}: expected log-mel features of shape (frames, {bands}), got {mels.shape}")
    if mels.shape[1] != bands:
        mels = mels.T
    if not np.issubdtype(mels.dtype, np.number) or not np.isfinite(mels).all():
        raise DataError(f"{source}: mel features contain NaN or infinite values")
    if len(mels) == 0:
        raise DataError(f"{source}: no frames")
    return np.ascontiguousarray(mels, np.float32)


def make_conditioning(model, labels: list[str] | None, mels: np.ndarray | None):
    """The ``Conditioning`` for a batch of streams: label names (one per stream) and/or
    log-mel features (B, frames, bands); None for an unconditioned model."""
    from ..model.conditioning import Conditioning

    if not model.conditioned:
        return None
    ids = None if labels is None else torch.tensor([model.config.labels.index(x) for x in labels])
    mel = None if mels is None else torch.from_numpy(np.ascontiguousarray(mels.transpose(0, 2, 1)))
    return Conditioning(model, ids, mel)


@dataclass
class Generated:
    """What ``generate_streams`` made: µ-law codes, not yet decoded nor written."""

    codes: torch.Tensor  # (streams, samples) uint8 µ-law codes, on the CPU
    sample_rate: int  # Hz
    seeds: list[int]  # stream i's seed
    labels: list[str] | None  # the label of each stream, for labelled models
    engine: str  # the engine that ran
    device: str
    seconds_taken: float  # wall time of the generation itself
    precision: str = "fp32"  # the weights' precision in the engine (``quantized.PRECISIONS``)

    @property
    def samples_per_s(self) -> float:
        """Samples generated per second of wall time, over every stream."""
        return self.codes.numel() / max(self.seconds_taken, 1e-9)


def load_checkpoint(checkpoint: Path):
    """``(model, payload, config, step)`` of a checkpoint file: the model rebuilt from it alone
    (moving-average weights when it has them), on the CPU. Raises ``CheckpointError`` for an
    unreadable file and ``ConfigError`` when the run's config.toml changes a fixed setting."""
    model, payload, config = ckpt.load_model(checkpoint, map_location="cpu")
    check_unedited(checkpoint, config)  # an edited data.sample_rate would be ignored: refuse it
    return model, payload, config, _step_of(payload, checkpoint)


def check_values(seconds: float | None, n: int | None, temperature: float, precision: str = "fp32") -> None:
    """Refuse a length, stream count, temperature or precision out of range (``ConfigError``)."""
    if seconds is not None:
        check_seconds(seconds)
    if n is not None:
        check_streams(n)
    check_temperature(temperature)
    checked_precision(precision)


def generate_streams(
    model,
    rate: int,
    where: str,
    seconds: float | None = None,
    n: int | None = None,
    seed: int = 0,
    temperature: float = 1.0,
    engine: str = "auto",
    device: str = "auto",
    prime: Path | np.ndarray | None = None,
    labels: list[str] = (),
    mel: Path | np.ndarray | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
    step: int | None = None,
    precision: str = "auto",
) -> Generated:
    """Generate ``n`` streams of ``seconds`` each (stream i uses seed + i) with ``model`` (a
    ``WaveNet``) trained at ``rate`` Hz; nothing is written.

    ``where`` names the model in messages (its checkpoint). Generation starts from silence, or
    continues the end of ``prime``: a recording's path, or mono float audio in [-1, 1] at the
    model's rate. A labelled model generates ``labels`` (default: each of its labels in turn);
    a mel-conditioned model needs ``mel``: log-mel features (frames, bands), as an array or a
    .npy file, whose length sets the duration unless ``seconds`` shortens it. Seconds default
    to 2. ``precision`` (auto, fp32, bf16, int8): the weights in the engine; bf16 and int8 run in
    the native engine on the CPU, auto is int8 there and fp32 in every other engine. Raises ``ConfigError`` for values out of range or conditioning the
    model lacks, ``DataError`` for an unusable prime or mel file, ``OutOfMemory`` when it cannot fit.
    """
    check_values(seconds, n, temperature, precision)
    names, n = stream_labels(model, list(labels), n)
    if n > MAX_STREAMS and not labels:  # a stream per label by default
        raise ConfigError(
            f"{where}: {n} labels, a stream each, are more than {MAX_STREAMS} streams at once; "
            "choose labels with --label"
        )
    check_streams(n)
    mels, seconds = _stream_mels(model, mel, seconds, rate, n, where)
    num = max(1, round((2.0 if seconds is None else seconds) * rate))
    check_samples(n, num, rate)
    history = None if prime is None else _prime_codes(model, rate, prime, n, log)
    gen, dev = pick_engine(engine, device, model, n, log, precision)
    conditioning = make_conditioning(model, names, mels)
    what = f" ({', '.join(sorted(set(names)))})" if names else ""
    at = "" if step is None else f", step {step}"
    how = f"'{gen.name}' engine" + ("" if engine_precision(gen) == "fp32" else f" ({engine_precision(gen)})")
    log(f"synthesising {n} × {num / rate:g} s{what} at {rate} Hz with the {how} on {dev} ({where}{at})")
    from ..progress import bar as progress_bar

    seeds = [seed + i for i in range(n)]
    with progress_bar(total=num, desc="synth", unit="sample", unit_scale=True, enabled=progress, leave=False) as bar:
        tick = time.perf_counter()
        with generation_memory(f"{n} × {num / rate:g} s"):
            codes = generate(
                gen, num, seeds, temperature, history=history, progress=bar.update, conditioning=conditioning
            )
        elapsed = time.perf_counter() - tick
    return Generated(codes, rate, seeds, names, gen.name, str(dev), elapsed, engine_precision(gen))


def _stream_mels(
    model, mel: Path | np.ndarray | None, seconds: float | None, rate: int, n: int, where: str
) -> tuple[np.ndarray | None, float | None]:
    """The mel features of every stream (n, frames, bands), or None for a model without them, and
    the seconds to generate: the features' length unless ``seconds`` is shorter."""
    if not model.config.mel_channels:
        if mel is not None:
            raise ConfigError("--mel: this model was trained without mel features")
        return None, seconds
    if mel is None:
        raise ConfigError(
            f"{where}: this model is conditioned on log-mel features: give --mel FILE.npy, "
            "or use `wavegen vocode INPUT.wav`"
        )
    bands = model.config.mel_channels
    mels = read_mel_file(mel, bands) if isinstance(mel, (str, Path)) else check_mels(mel, bands)
    longest = len(mels) * model.config.mel_hop / rate
    seconds = longest if seconds is None else min(seconds, longest)
    return np.broadcast_to(mels, (n, *mels.shape)), seconds


def _prime_codes(model, rate: int, prime: Path | np.ndarray, n: int, log: Callable[[str], None]) -> torch.Tensor:
    """The codes (n, P) every stream continues: the last receptive field of ``prime`` (a file,
    read at the model's rate, or mono float audio already at it)."""
    if isinstance(prime, (str, Path)):
        try:
            recording = read_recording(Path(prime), rate)
        except (AudioReadError, OSError) as exc:
            raise DataError(f"{prime}: cannot use as a prime ({exc})") from None
        if cancel_note(recording):  # a prime that comes out silent would otherwise puzzle: say why
            log(f"note: {prime}: {cancel_note(recording)}")
        audio, name = recording.audio, str(prime)
    else:
        audio, name = np.asarray(prime, np.float32), "the prime"
        if audio.ndim != 1 or not len(audio) or not np.isfinite(audio).all():
            raise DataError(f"prime: expected mono audio (samples,) of finite values, got shape {audio.shape}")
        audio = np.clip(audio, -1.0, 1.0)
    audio = audio[-model.receptive_field :]
    log(f"continuing the last {len(audio) / rate:.3f} s of {name}")
    return encode(torch.from_numpy(np.ascontiguousarray(audio))).unsqueeze(0).expand(n, -1)


@leaves_no_empty_folder("out")
def synthesize(
    checkpoint: Path,
    out: Path = Path("samples"),
    seconds: float | None = None,
    n: int | None = None,
    seed: int = 0,
    temperature: float = 1.0,
    engine: str = "auto",
    device: str = "auto",
    prime: Path | None = None,
    labels: list[str] = (),
    mel: Path | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
    timings: bool = True,
    precision: str = "auto",
) -> SynthResult:
    """``generate_streams`` from a checkpoint, into ``out``: a WAV each, with its spectrogram
    (.png) and metadata (.json) beside it (``artifacts``). ``timings=False`` leaves took_s and
    created out of the metadata (the speed is still logged)."""
    # Everything that can be refused is refused before the (long) generation and before any
    # file is written: a refused call leaves earlier samples as they were.
    check_values(seconds, n, temperature, precision)
    writable_folder(out)
    model, payload, config, step = load_checkpoint(checkpoint)
    run_name = safe_name(Path(checkpoint).resolve().parent.parent.name or "model")
    made = generate_streams(
        model,
        config.data.sample_rate,
        str(checkpoint),
        seconds,
        n,
        seed,
        temperature,
        engine,
        device,
        prime=prime,
        labels=labels,
        mel=mel,
        log=log,
        progress=progress,
        step=step,
        precision=precision,
    )
    names, rate, n = made.labels, made.sample_rate, len(made.seeds)
    # Labels come from the data or the checkpoint: made safe and distinct as the model's whole
    # list, so a label's file name does not depend on which others were asked for.
    tags = dict(zip(model.config.labels, distinct_names(list(model.config.labels))))
    files = []
    for i, s in enumerate(made.seeds):
        tag = f"-{tags[names[i]]}" if names else ""
        path = inside(out, f"{run_name}-step{step}{tag}-seed{s}.wav")
        write_sample(  # one stream at a time: 4 bytes a sample, not n × 4
            path,
            decode(made.codes[i]).numpy(),
            rate,
            {
                "kind": "synth",
                "run": run_name,
                "checkpoint": str(checkpoint),
                "step": step,
                "weights": "moving average" if "ema" in payload else "trained",
                "seed": s,
                "temperature": temperature,
                "engine": made.engine,
                "precision": made.precision,
                "device": made.device,
                "label": names[i] if names else None,
                "prime": None if prime is None else str(prime),
                "mel": None if mel is None else str(mel),
                "streams": n,
                **({"took_s": round(made.seconds_taken, 3)} if timings else {}),
            },
            timings=timings,
        )
        files.append(path)
    sps = made.samples_per_s
    result = SynthResult(files, sps, sps / rate, made.engine, names, made.precision)
    log(
        f"wrote {len(files)} files to {out}: {sps:,.0f} samples/s over {n} streams, "
        f"{result.real_time_factor:.3f}× real time"
    )
    return result


def _step_of(payload: dict, checkpoint: Path) -> int:
    """The training step a checkpoint was saved at (part of the output names)."""
    try:
        return int(payload.get("step", 0))
    except (TypeError, ValueError):
        raise CheckpointError(f"{checkpoint}: bad step in checkpoint ({payload.get('step')!r})") from None
