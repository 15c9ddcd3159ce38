"""Log-mel features: what a vocoder model is conditioned on, and how resynthesis is scored.

One definition serves ``prepare`` (features stored beside the codes), ``vocode`` (features of
the input recording) and ``eval`` (the distance between input and resynthesis), so a model
always hears features computed the way it was trained on.

Frames are aligned with samples: frame f covers samples [f·hop, (f+1)·hop). The audio is first
padded with zeros to a whole number of hops, then by (n_fft - hop) / 2 zeros on each side, so
every frame's Hann window is centred on the middle of its hop:

    samples      |--- frame 0 ---|--- frame 1 ---|--- ...          (hop each)
    window 0  [.....|===============|.....]                       (n_fft, zero-padded)
    window 1                 [.....|===============|.....]

Values are ln(max(mel magnitude, 1e-5)): digital silence is ln(1e-5) everywhere
(``SILENCE``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from ..config import ConfigError, DataConfig, ModelConfig

SILENCE = math.log(1e-5)  # log-mel value of digital silence (log_mel clamps there)
DB_PER_NEPER = 20 / math.log(10)  # ln-magnitude difference -> dB


@dataclass(frozen=True)
class MelSettings:
    sample_rate: int
    bands: int
    hop: int
    n_fft: int
    fmin: float
    fmax: float

    @classmethod
    def from_data(cls, config: DataConfig, bands: int | None = None) -> "MelSettings":
        return cls(
            config.sample_rate,
            bands or config.mel_bands,
            config.mel_hop,
            config.mel_n_fft,
            config.mel_fmin,
            config.mel_fmax or config.sample_rate / 2,
        )

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    def mismatch(self, other: "MelSettings") -> list[tuple[str, object, object]]:
        """The ``data.*`` settings in which ``other`` differs from this, with both values."""
        return [
            (SETTING_NAMES[name], mine, theirs)
            for name, mine, theirs in ((name, getattr(self, name), getattr(other, name)) for name in SETTING_NAMES)
            if mine != theirs
        ]


def mel_settings(model: ModelConfig, data: DataConfig, source: object = "checkpoint") -> MelSettings:
    """The analysis a vocoder model was trained on (its run's data settings, the model's bands).
    Raises ``ConfigError`` naming ``source`` for a model trained without mel features."""
    if not model.mel_channels:
        raise ConfigError(
            f"{source}: this model was trained without mel features (prepare the data with "
            "a recipe that sets data.mel_bands, e.g. --recipe vocoder, and train on it)"
        )
    return MelSettings.from_data(data, bands=model.mel_channels)


# Each analysis setting's name in the config (what ``prepare --set`` takes).
SETTING_NAMES = {
    "sample_rate": "data.sample_rate",
    "bands": "data.mel_bands",
    "hop": "data.mel_hop",
    "n_fft": "data.mel_n_fft",
    "fmin": "data.mel_fmin",
    "fmax": "data.mel_fmax",
}


def check_same_analysis(data_mel: dict, trained: MelSettings, folder: object, whose: str) -> None:
    """Refuse prepared features (``data_mel``: a manifest's mel settings) computed otherwise than
    those ``whose`` model was trained on: every analysis setting must match, or the model would
    hear features it never learned. The message names each difference and the prepare options
    that give the model's features."""
    found = trained.mismatch(MelSettings(**data_mel))
    if found:

        def said(values):
            return ", ".join(f"{key} = {value:g}" for key, value in values)

        fix = " ".join(f"--set {key}={value:g}" for key, value, _ in found)
        raise ConfigError(
            f"{folder}: its log-mel features were computed with {said((k, t) for k, _, t in found)}, "
            f"but {whose} was trained on {said((k, m) for k, m, _ in found)}; prepare the data "
            f"again with {fix}"
        )


_transforms: dict[tuple, torch.nn.Module] = {}


# torchaudio's word on what ``empty_bands`` counts: said in wavegen's words by ``check_bands``
EMPTY_FILTER_WARNING = "At least one mel filterbank has all zero values"


def empty_bands(s: MelSettings, bands: int | None = None) -> int:
    """How many of ``bands`` (default ``s.bands``) mel filters hold no FFT bin: with too many
    bands for the bins between fmin and fmax, a filter falls between two bins and its band is
    silence in every frame, whatever the audio."""
    import torchaudio

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=EMPTY_FILTER_WARNING, category=UserWarning)
        weights = torchaudio.functional.melscale_fbanks(
            s.n_fft // 2 + 1, s.fmin, s.fmax, bands or s.bands, s.sample_rate, norm="slaney", mel_scale="slaney"
        )
    return int((weights.max(dim=0).values == 0).sum())


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """The Slaney mel scale torchaudio's filterbanks use: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, np.float64)
    logarithmic = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (math.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, logarithmic, 3.0 * hz / 200.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return np.where(mel >= 15.0, 1000.0 * np.exp((math.log(6.4) / 27.0) * (mel - 15.0)), 200.0 * mel / 3.0)


def counted_empty_bands(s: MelSettings, bands: int) -> int:
    """``empty_bands`` counted without building the filterbank: band i's triangle spans the
    open interval between mel points i and i + 2, and holds a bin when a bin lies inside it.
    O(bands) memory instead of a (bins, bands) matrix, so searching many counts stays quick."""
    bins = np.linspace(0, s.sample_rate // 2, s.n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(s.fmin), _hz_to_mel(s.fmax), bands + 2))
    inside = np.searchsorted(bins, edges[2:], "left") - np.searchsorted(bins, edges[:-2], "right")
    return int((inside <= 0).sum())


def check_bands(s: MelSettings) -> None:
    """Refuse settings under which some bands would hold no FFT bin (``empty_bands``), naming
    the most bands that fit, before any file is read."""
    empty = empty_bands(s)
    if not empty:
        return
    # the most that fit: a bisection over the counted filterbanks (emptiness grows with the
    # count), then confirmed with torchaudio's own, stepping down where rounding differs
    low, high = 0, s.bands  # low fits (0 bands trivially), high does not
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if not counted_empty_bands(s, middle) else (low, middle)
    fits = next((n for n in range(low, max(low - 8, 0), -1) if not empty_bands(s, n)), 0)
    raise ConfigError(
        f"data.mel_bands = {s.bands}: {empty} of the bands would hold no frequency bin (data.mel_n_fft = "
        f"{s.n_fft} gives bins every {s.sample_rate / s.n_fft:g} Hz, and the bands share "
        f"{s.fmin:g}-{s.fmax:g} Hz); use at most {fits} bands (--mels {fits}) or a larger "
        "data.mel_n_fft"
    )


def _transform(s: MelSettings) -> torch.nn.Module:
    import torchaudio

    key = tuple(s.__dict__.values())
    if key not in _transforms:
        with warnings.catch_warnings():  # prepare refuses such settings (check_bands); data prepared
            # before it did is used as it is, without the warning on every command
            warnings.filterwarnings("ignore", message=EMPTY_FILTER_WARNING, category=UserWarning)
            _transforms[key] = torchaudio.transforms.MelSpectrogram(
                sample_rate=s.sample_rate,
                n_fft=s.n_fft,
                hop_length=s.hop,
                f_min=s.fmin,
                f_max=s.fmax,
                n_mels=s.bands,
                power=1.0,
                center=False,
                norm="slaney",
                mel_scale="slaney",
            )
    return _transforms[key]


def frame_count(samples: int, hop: int) -> int:
    return -(-samples // hop)


def log_mel(audio: np.ndarray | torch.Tensor, settings: MelSettings) -> np.ndarray:
    """Log-mel features (frames, bands) float32 of mono audio (samples,); ceil(samples/hop) frames."""
    x = torch.as_tensor(np.asarray(audio, dtype=np.float32))
    frames = frame_count(len(x), settings.hop)
    if frames == 0:
        return np.zeros((0, settings.bands), np.float32)
    left, right = padded_sides(settings)
    x = torch.nn.functional.pad(x, (left, frames * settings.hop - len(x) + right))
    return windows_log_mel(x, settings)


def padded_sides(settings: MelSettings) -> tuple[int, int]:
    """The zeros ``log_mel`` puts before the audio and after its last whole hop: (left, right)."""
    side = (settings.n_fft - settings.hop) // 2
    return side, settings.n_fft - settings.hop - side  # (an odd difference: one more on the right)


def windows_log_mel(x: torch.Tensor, settings: MelSettings) -> np.ndarray:
    """Log-mel frames (frames, bands) float32 of padded audio (samples,) holding whole windows:
    frame f from the window at f·hop, ``(samples - n_fft) // hop + 1`` frames."""
    with torch.no_grad():
        mel = _transform(settings)(x)  # (bands, frames)
    return torch.log(mel.clamp(min=math.exp(SILENCE))).T.contiguous().numpy()


def mel_distance(reference: np.ndarray, other: np.ndarray) -> float:
    """Mean absolute difference of two log-mel spectrograms (frames, bands), in dB, over the
    frames both have."""
    n = min(len(reference), len(other))
    if n == 0:
        raise ValueError("no frames to compare")
    return float(np.mean(np.abs(reference[:n] - other[:n])) * DB_PER_NEPER)
