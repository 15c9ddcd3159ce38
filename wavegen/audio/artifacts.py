"""What a generated WAV leaves beside it: a spectrogram to look at and a metadata JSON.

For every ``NAME.wav`` that ``synth``, ``vocode`` or training's periodic samples write:

    NAME.wav    16-bit mono audio
    NAME.png    its spectrogram: time in seconds, frequency in Hz (log-magnitude, dB)
    NAME.json   what made it: {"kind", "run", "checkpoint", "step", "seed", "temperature",
                "engine", "seconds", "sample_rate", "took_s", "created", ...} plus "wav" and
                "spectrogram" (the file names beside it); ``vocode`` adds "input" (the
                recording's copy, NAME.input.wav, with its own .png)

The keys, one sample each:

    kind          "synth", "vocode" or "train" (a periodic sample written during training)
    run           the run folder's name; checkpoint: the .pt file (null for "train": the
                  weights of the moment, which no checkpoint keeps); step: its training step
    weights       "trained", or "moving average" (train.ema): what generated it
    seed          the stream's seed (synth and vocode give stream i seed + i); temperature
    engine        the sampling engine that ran ("native", "persistent", "cuda-graph", "torch", "reference")
    precision     synth and vocode: the weights' precision in the engine ("fp32"; "bf16" and
                  "int8" in the native engine)
    device        where it ran ("cpu", "cuda", ...)
    label         the model label generated, or null; prime: the recording continued, or null
    mel           synth --mel: the .npy file; train: the validation file whose log-mels
                  conditioned it; else null
    streams       how many streams were generated together in one batch
    took_s        wall time of the batch's generation (all its streams together, so one
                  stream's share is took_s / streams); writing the files is not counted
    mel_distance_db  vocode: log-mel distance (dB) between the µ-law input and the output
    input         vocode: {"source": the recording's path as given, "wav": "NAME.input.wav"
                  (resampled to the model's rate), "spectrogram": "NAME.input.png"}
    seconds, sample_rate, created (local time, ISO 8601), wav, spectrogram: added by
                  ``write_sample``

took_s and created are the only keys that change when the same sample is made again on the same
machine: ``timings=False`` (``wavegen demo``, whose samples are committed) leaves them out.

All three are written atomically and put in place together (``files.all_or_none``), the JSON
last: a sample is there whole or not at all, even when Ctrl-C or SIGTERM comes while it is
written (a signal then waits for the set to be in place, ``signals_held``).
``read_samples`` lists a folder's samples, newest first: what ``wavegen report`` shows.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..files import all_or_none, atomic_open, atomic_write_text
from ..interrupts import signals_held
from .io import write_wav

N_FFT, HOP = 1024, 256  # 64 ms windows at 16 kHz: resolves harmonics ~16 Hz apart


MAX_FRAMES = 4000  # columns of a PNG's spectrogram: long audio gets a longer hop, not a huge array


def spectrogram(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log-magnitude spectrogram of ``audio``: (dB (bins, frames), bin frequencies in Hz, frame
    centres in seconds). Hann windows of N_FFT samples every HOP (or more, so that an hour of
    audio still makes at most MAX_FRAMES frames)."""
    audio = np.asarray(audio, dtype=np.float32)
    padded = np.pad(audio, (0, max(0, N_FFT - len(audio))))
    hop = max(HOP, -(-(len(padded) - N_FFT) // (MAX_FRAMES - 1)))
    frames = 1 + (len(padded) - N_FFT) // hop
    index = np.arange(N_FFT)[None, :] + hop * np.arange(frames)[:, None]  # (frames, N_FFT)
    power = np.abs(np.fft.rfft(padded[index] * np.hanning(N_FFT), axis=1)) ** 2  # (frames, bins)
    db = 10 * np.log10(power.T + 1e-10)  # (bins, frames)
    return db, np.fft.rfftfreq(N_FFT, 1 / sample_rate), (hop * np.arange(frames) + N_FFT / 2) / sample_rate


def spectrogram_png(audio: np.ndarray, sample_rate: int, title: str = "") -> bytes:
    """A PNG of the log-magnitude spectrogram of ``audio``: seconds across, Hz up, dB in colour.
    ``title`` (a file name: any script) goes through ``plots.set_title``."""
    from .plots import figure as new_figure
    from .plots import set_title

    db, _, _ = spectrogram(audio, sample_rate)
    top = db.max()
    figure = new_figure(8, 3)
    axes = figure.add_subplot()
    image = axes.imshow(
        db,
        origin="lower",
        aspect="auto",
        cmap="magma",
        vmin=top - 80,
        vmax=top,
        extent=(0, len(audio) / sample_rate, 0, sample_rate / 2),
    )
    axes.set_xlabel("time (s)")
    axes.set_ylabel("frequency (Hz)")
    if title:
        set_title(axes, title, fontsize=9)
    figure.colorbar(image, ax=axes, label="dB")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def write_audio(path: Path, audio: np.ndarray, sample_rate: int) -> Path:
    """Write ``path`` (a .wav) and its spectrogram beside it (.png); return the PNG's path."""
    path = Path(path)
    write_wav(path, audio, sample_rate)
    png = path.with_suffix(".png")
    with atomic_open(png, "wb") as handle:
        handle.write(spectrogram_png(audio, sample_rate, title=path.name))
    return png


@dataclass(frozen=True)
class SampleRecord:
    """What made a generated sample: its JSON's keys (above), the one place they are spelled.

    ``synth``, ``vocode`` and training's periodic samples each fill one per stream and ``write``
    it; ``extra`` holds what one kind adds (vocode: mel_distance_db, input)."""

    kind: str
    run: str
    checkpoint: str | None
    step: int
    weights: str
    seed: int
    temperature: float
    engine: str
    precision: str
    device: str
    label: str | None = None
    prime: str | None = None
    mel: str | None = None
    streams: int = 1
    took_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def meta(self, timings: bool = True) -> dict[str, Any]:
        """The JSON's keys in their order; without ``timings``, no took_s."""
        fields = {k: v for k, v in asdict(self).items() if k != "extra"}
        if not timings or self.took_s is None:
            fields.pop("took_s")
        else:
            fields["took_s"] = round(self.took_s, 3)
        return {**fields, **self.extra}

    def write(self, path: Path, audio: np.ndarray, sample_rate: int, timings: bool = True) -> dict[str, Any]:
        """``write_sample`` of ``audio`` (samples,) float in [-1, 1] at ``sample_rate`` Hz with
        this record; returns the JSON written."""
        return write_sample(path, audio, sample_rate, self.meta(timings), timings=timings)


def write_sample(
    path: Path, audio: np.ndarray, sample_rate: int, meta: dict[str, Any], timings: bool = True
) -> dict[str, Any]:
    """Write ``path`` (a .wav) with its spectrogram and metadata beside it; return the metadata.
    ``timings=False``: no "created" stamp, so the same sample makes the same bytes. The three
    files appear together, or (on an error) none of them: the previous ones stay."""
    path = Path(path)
    with signals_held(), all_or_none():  # (no signal lands inside matplotlib's callbacks either)
        png = write_audio(path, audio, sample_rate)
        record = {
            **meta,
            "wav": path.name,
            "spectrogram": png.name,
            "seconds": round(len(audio) / sample_rate, 4),
            "sample_rate": sample_rate,
        }
        if timings:
            record["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        atomic_write_text(path.with_suffix(".json"), json.dumps(record, indent=1, ensure_ascii=False))
    return record


def plain_name(name: str, suffix: str) -> bool:
    """Whether ``name`` (read from a metadata file anyone can edit) is a plain file name in its
    folder with ``suffix``: no separators, no ``..``, not hidden; never a way out of the folder."""
    return (
        isinstance(name, str)
        and name.endswith(suffix)
        and Path(name).name == name
        and not name.startswith(".")
        and "\\" not in name
        and "\0" not in name
    )


def read_samples(folder: Path) -> list[dict[str, Any]]:
    """The samples in ``folder`` (their metadata, with "folder" added), newest first. JSON files
    that are not sample metadata, whose WAV is gone, or whose "wav" is not a plain file name in
    ``folder`` are left out."""
    found = []
    for meta_path in Path(folder).glob("*.json"):
        try:
            record = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(record, dict):
            continue
        wav = str(record.get("wav", ""))
        if not plain_name(wav, ".wav") or not (Path(folder) / wav).is_file():
            continue
        found.append({**record, "folder": str(folder)})
    return sorted(found, key=lambda r: (str(r.get("created", "")), str(r["wav"])), reverse=True)
