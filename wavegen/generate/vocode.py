"""Copy-synthesis with a mel-conditioned model: recording → log-mel features → new waveform.

``resynthesize`` is the core (features in, audio out, streams generated together); ``vocode``
reads recordings, writes ``STEM-vocoded.wav`` files (each with its spectrogram and metadata, and
the input as the model heard it beside them, ``STEM-vocoded.input.wav`` and .png: see
``artifacts``) and scores each by the log-mel distance
between the input and its resynthesis (``features.mel_distance``). The input side of that
distance is the µ-law (8-bit) version of the recording, the best any 256-class model can
produce: against the original, quantisation noise alone scores ~9 dB on speech and ~20 dB on
pure tones, whose quiet bands it fills.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..audio.artifacts import write_audio, write_sample
from ..audio.features import SILENCE, MelSettings, log_mel, mel_distance
from ..audio.io import AudioReadError, cancel_note, read_recording
from ..audio.mulaw import decode, encode
from ..config import DataConfig
from ..errors import ConfigError, DataError
from ..limits import (
    MAX_SECONDS,
    MAX_STREAMS,
    check_samples,
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
from .choice import pick_engine
from .engines import checked_precision, engine_precision, generate
from .synth import make_conditioning, stream_labels


def mel_settings(model, data: DataConfig, source: Path | str = "checkpoint") -> MelSettings:
    """The analysis a vocoder model was trained on (its run's data settings)."""
    if not model.config.mel_channels:
        raise ConfigError(
            f"{source}: this model was trained without mel features (prepare the data with "
            "a recipe that sets data.mels, e.g. --recipe vocoder, and train on it)"
        )
    return MelSettings.from_data(data, bands=model.config.mel_channels)


@dataclass
class Resynthesis:
    audio: list[np.ndarray]  # one per input, each as long as its input
    samples_per_s: float
    engine: str
    took_s: float = 0.0  # wall time of the generation (every stream together)
    device: str = "cpu"
    precision: str = "fp32"  # the weights' precision in the engine


def resynthesize(
    model,
    features: list[np.ndarray],
    lengths: list[int],
    seed: int = 0,
    temperature: float = 1.0,
    engine: str = "auto",
    device: str = "auto",
    labels: list[str] | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
    precision: str = "auto",
) -> Resynthesis:
    """Generate audio for log-mel features (frames, bands), all inputs as streams of one batch
    (stream i uses seed + i); shorter inputs are padded with silence frames. ``precision``:
    the weights in the engine (bf16 and int8 run in the native engine on the CPU; auto is int8
    there and fp32 elsewhere)."""
    hop = model.config.mel_hop
    frames = max(len(f) for f in features)
    mels = np.full((len(features), frames, features[0].shape[1]), SILENCE, np.float32)
    for i, f in enumerate(features):
        mels[i, : len(f)] = f
    num = max(lengths)
    assert num <= frames * hop
    gen, dev = pick_engine(engine, device, model, len(features), log, precision)
    conditioning = make_conditioning(model, labels, mels)
    from ..progress import bar as progress_bar

    seeds = [seed + i for i in range(len(features))]
    with progress_bar(total=num, desc="vocode", unit="sample", unit_scale=True, enabled=progress, leave=False) as bar:
        tick = time.perf_counter()
        with generation_memory(f"{len(seeds)} × {num:,} samples"):
            codes = generate(gen, num, seeds, temperature, progress=bar.update, conditioning=conditioning)
        elapsed = time.perf_counter() - tick
    audio = decode(codes).numpy()
    return Resynthesis(
        [audio[i, :n] for i, n in enumerate(lengths)],
        len(seeds) * num / elapsed,
        gen.name,
        elapsed,
        str(dev),
        engine_precision(gen),
    )


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
    seed: int = 0,
    temperature: float = 1.0,
    engine: str = "auto",
    device: str = "auto",
    labels: list[str] = (),
    log: Callable[[str], None] = print,
    progress: bool = True,
    precision: str = "auto",
) -> VocodeResult:
    """Analyse each recording in ``inputs`` and resynthesise it with the model at ``checkpoint``
    (``precision``: the weights in the engine, as ``resynthesize`` says)."""
    # Refusals come before the generation and before any file is written (earlier outputs stay).
    check_temperature(temperature)
    checked_precision(precision)
    if len(inputs) > MAX_STREAMS:
        raise ConfigError(
            f"{len(inputs)} inputs: at most {MAX_STREAMS} are vocoded at once (a stream each, held in "
            "memory together); run several calls"
        )
    for path in inputs:
        if Path(path).is_dir():
            raise DataError(f"{path}: is a folder; vocode takes recordings (e.g. {Path(path) / '*.wav'})")
    writable_folder(out)
    model, payload, config = ckpt.load_model(checkpoint, map_location="cpu")
    check_unedited(checkpoint, config)  # edited analysis settings could not take effect: refuse them
    settings = mel_settings(model, config.data, checkpoint)
    names = None
    if model.config.labels or labels:
        if not labels:
            raise ConfigError(
                f"{checkpoint}: this model has labels ({', '.join(model.config.labels)}): choose one with --label"
            )
        names, _ = stream_labels(model, list(labels) * (len(inputs) if len(labels) == 1 else 1), len(inputs))
    audios = _read_inputs(inputs, settings, log)
    check_samples(len(audios), max(len(a) for a in audios), settings.sample_rate, "inputs")
    features = [log_mel(audio, settings) for audio in audios]
    seconds = sum(len(a) for a in audios) / settings.sample_rate
    step = int(payload.get("step", 0))
    run_name = safe_name(Path(checkpoint).resolve().parent.parent.name or "model")
    log(
        f"vocoding {len(inputs)} file{'s' if len(inputs) != 1 else ''} ({seconds:.1f} s) with {checkpoint}, step {step}"
    )
    lengths = [len(a) for a in audios]
    result = resynthesize(model, features, lengths, seed, temperature, engine, device, names, log, progress, precision)
    files, distances = [], []
    # Named after the inputs, kept inside ``out`` and distinct: inputs with the same name (from
    # different folders, or given twice) each get their own file.
    stems = distinct_names([Path(path).stem for path in inputs], share_equal=False)
    for i, (path, audio) in enumerate(zip(inputs, result.audio)):
        target = inside(out, f"{stems[i]}-vocoded.wav")
        distance = mel_distance(log_mel(decode(encode(audios[i])).numpy(), settings), log_mel(audio, settings))
        copy = target.with_suffix(".input.wav")  # first: the output's JSON names complete files only
        copy_png = write_audio(copy, audios[i], settings.sample_rate)
        write_sample(
            target,
            audio,
            settings.sample_rate,
            {
                "kind": "vocode",
                "run": run_name,
                "checkpoint": str(checkpoint),
                "step": step,
                "weights": "moving average" if "ema" in payload else "trained",
                "seed": seed + i,
                "temperature": temperature,
                "engine": result.engine,
                "precision": result.precision,
                "device": result.device,
                "label": names[i] if names else None,
                "prime": None,
                "mel": None,
                "streams": len(inputs),
                "took_s": round(result.took_s, 3),
                "mel_distance_db": round(float(distance), 3),
                "input": {"source": str(path), "wav": copy.name, "spectrogram": copy_png.name},
            },
        )
        files.append(target)
        distances.append(distance)
        log(f"wrote {target}: log-mel distance to {path} {distance:.2f} dB")
    how = f"'{result.engine}' engine" + ("" if result.precision == "fp32" else f" ({result.precision})")
    log(
        f"{result.samples_per_s:,.0f} samples/s with the {how}, "
        f"{result.samples_per_s / settings.sample_rate:.3f}× real time"
    )
    return VocodeResult(files, distances, result.samples_per_s)


def _read_inputs(inputs: list[Path], settings: MelSettings, log: Callable[[str], None]) -> list[np.ndarray]:
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
            log(f"note: {path}: {cancel_note(recording)}")
        if len(audio) > MAX_SECONDS * settings.sample_rate:
            raise DataError(
                f"{path}: {len(audio) / settings.sample_rate:.0f} s long; vocode takes recordings of "
                f"at most {MAX_SECONDS:g} s (generation runs sample by sample): cut it into parts"
            )
        audios.append(audio)
    return audios
