"""Copy-synthesis of recordings with a mel-conditioned model: recording → log-mel features →
new waveform, written as ``STEM-vocoded.wav`` (with its spectrogram and metadata, and the input
as the model heard it beside them, ``STEM-vocoded.input.wav`` and .png: see ``artifacts``), each
scored by the log-mel distance between the input and its resynthesis
(``features.mel_distance``). The input side of that distance is the µ-law (8-bit) version of
the recording, the best any 256-class model can produce: against the original, quantisation
noise alone scores ~9 dB on speech and ~20 dB on pure tones, whose quiet bands it fills.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..audio.artifacts import SampleRecord, write_audio
from ..audio.features import MelSettings, log_mel, mel_distance, mel_settings
from ..audio.io import AudioReadError, cancel_note, duration, read_recording
from ..audio.mulaw import decode, encode
from ..errors import ConfigError, DataError
from ..files import all_or_none
from ..generate.request import GenerationRequest, as_request
from ..generate.resynthesis import resynthesize
from ..generate.streams import stream_labels
from ..interrupts import note_kept, signals_held
from ..limits import MAX_SECONDS, MAX_STREAMS, check_samples
from ..model import checkpoint as ckpt
from ..model.network import WaveNet
from ..outputs import leaves_no_empty_folder, safe_name, sample_path, writable_folder
from ..run_config import check_unedited
from ..runs import model_name
from .synth import kept_note, step_of

logger = logging.getLogger(__name__)


@dataclass
class VocodeResult:
    files: list[Path]
    distances_db: list[float]
    samples_per_s: float


@leaves_no_empty_folder("out")
def vocode(
    checkpoint: Path,
    inputs: list[Path],
    out: Path = Path("samples"),
    request: GenerationRequest | None = None,
    progress: bool = True,
    **asked: Any,
) -> VocodeResult:
    """Analyse each recording in ``inputs`` and resynthesise it with the model at ``checkpoint``
    into ``out``: input i is stream i, with seed ``request.seed + i``; ``request`` (or its
    fields as keywords) gives the temperature, engine, device, precision and labels (one, or
    one per input). Raises ``ConfigError``/``DataError`` before any file is written."""
    request = as_request(request, asked)  # refusals come before any file is written
    if len(inputs) > MAX_STREAMS:
        raise ConfigError(
            f"{len(inputs)} inputs: at most {MAX_STREAMS} are vocoded at once (a stream each, held in "
            "memory together); run several calls"
        )
    for path in inputs:
        if Path(path).is_dir():
            raise DataError(f"{path}: is a folder, not a file; vocode takes recordings (e.g. {Path(path) / '*.wav'})")
    writable_folder(out)
    note_kept(kept_note(0, len(inputs), out))
    model, payload, config = ckpt.load_model(checkpoint, map_location="cpu")
    check_unedited(checkpoint, config)  # edited analysis settings could not take effect: refuse them
    settings = mel_settings(model.config, config.data, checkpoint)
    names = _input_labels(model, list(request.labels), len(inputs), checkpoint)
    audios = _read_inputs(inputs, settings)
    check_samples(len(audios), max(len(a) for a in audios), settings.sample_rate, "inputs")
    features = [log_mel(audio, settings) for audio in audios]
    seconds = sum(len(a) for a in audios) / settings.sample_rate
    step = step_of(payload, checkpoint)
    logger.info(
        f"vocoding {len(inputs)} file{'s' if len(inputs) != 1 else ''} ({duration(seconds)}) with {checkpoint}, step {step}"
    )
    result = resynthesize(model, features, [len(a) for a in audios], request, names, progress)
    record = SampleRecord(
        kind="vocode",
        run=safe_name(model_name(checkpoint)),
        checkpoint=str(checkpoint),
        step=step,
        weights="moving average" if "ema" in payload else "trained",
        seed=request.seed,
        temperature=request.temperature,
        engine=result.engine,
        precision=result.precision,
        device=result.device,
        streams=len(inputs),
        took_s=result.took_s,
    )
    files, distances = _write(inputs, audios, result.audio, names, record, settings, out)
    how = f"'{result.engine}' engine" + ("" if result.precision == "fp32" else f" ({result.precision})")
    logger.info(
        f"{result.samples_per_s:,.0f} samples/s with the {how}, "
        f"{result.samples_per_s / settings.sample_rate:.3f}× real time"
    )
    return VocodeResult(files, distances, result.samples_per_s)


def _input_labels(model: WaveNet, wanted: list[str], inputs: int, checkpoint: Path) -> list[str] | None:
    """The label of each input's stream (labelled models), from one label or one per input."""
    if not (model.config.labels or wanted):
        return None
    if not wanted:
        raise ConfigError(
            f"{checkpoint}: this model has labels ({', '.join(model.config.labels)}): choose one with --label"
        )
    names, _ = stream_labels(model, wanted * (inputs if len(wanted) == 1 else 1), inputs)
    return names


def _write(
    inputs: list[Path],
    audios: list[np.ndarray],
    outputs: list[np.ndarray],
    names: list[str] | None,
    record: SampleRecord,
    settings: MelSettings,
    out: Path,
) -> tuple[list[Path], list[float]]:
    """Each output with its record, the input's copy beside it; returns the files and distances."""
    files, distances = [], []
    taken: set[str] = set()
    # Named after the inputs, kept inside ``out`` and distinct: inputs with the same name (from
    # different folders, or given twice) each get their own file, and so does an input whose
    # name an earlier call's output of another recording has (``sample_path``).
    for i, (path, audio) in enumerate(zip(inputs, outputs)):
        label = names[i] if names else None
        mine = replace(record, seed=record.seed + i, label=label, extra={"input": {"source": str(path)}})
        meta = {**mine.meta(), "seconds": round(len(audio) / settings.sample_rate, 4)}
        target = sample_path(out, safe_name(Path(path).stem), "-vocoded.wav", meta, taken)
        distance = mel_distance(log_mel(decode(encode(audios[i])).numpy(), settings), log_mel(audio, settings))
        copy = target.with_suffix(".input.wav")  # first: the output's JSON names complete files only
        with signals_held(), all_or_none():  # the copy and the output's set: all five files or none
            copy_png = write_audio(copy, audios[i], settings.sample_rate)
            extra = {
                "mel_distance_db": round(float(distance), 3),
                "input": {"source": str(path), "wav": copy.name, "spectrogram": copy_png.name},
            }
            replace(mine, extra=extra).write(target, audio, settings.sample_rate)
            files.append(target)
            note_kept(kept_note(len(files), len(inputs), out))
        distances.append(distance)
        logger.info(f"wrote {target}: log-mel distance to {path} {distance:.2f} dB")
    return files, distances


def _read_inputs(inputs: list[Path], settings: MelSettings) -> list[np.ndarray]:
    """Each recording as mono float audio at the model's rate; ``DataError`` for one that cannot
    be read or is longer than ``MAX_SECONDS``."""
    audios = []
    for path in inputs:
        try:
            recording = read_recording(Path(path), settings.sample_rate)
        except (AudioReadError, OSError) as exc:
            raise DataError(f"{path}: cannot vocode ({exc})") from None
        audio = recording.audio
        if cancel_note(recording):  # a near-silent input would otherwise puzzle: say why
            logger.warning(f"note: {path}: {cancel_note(recording)}")
        if len(audio) > MAX_SECONDS * settings.sample_rate:
            raise DataError(
                f"{path}: {len(audio) / settings.sample_rate:.0f} s long; vocode takes recordings of "
                f"at most {MAX_SECONDS:g} s (generation runs sample by sample): cut it into parts"
            )
        audios.append(audio)
    return audios
