"""Configuration: dataclass defaults → a recipe (TOML) → ``--set section.key=value`` overrides.

Every value has one declared type; recipes and overrides are checked against it, and unknown keys
are refused, so a typo never silently falls back to a default. The resolved configuration is what
a run saves (``config.toml``) and what every checkpoint carries.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from typing import Any

import tomli_w

from .config_ranges import CHOICES, RANGES, in_range
from .errors import ConfigError


@dataclass
class ModelConfig:
    """Shape of the WaveNet (see ``model.WaveNet``)."""

    classes: int = 256  # µ-law levels: the input's one-hot width and the softmax's classes
    cycles: int = 3  # stacks of dilated layers; the receptive field grows with each
    layers_per_cycle: int = 10  # dilations 1, 2, ... 2**(layers_per_cycle - 1)
    kernel_size: int = 2  # taps of each dilated convolution
    input_kernel_size: int = 2  # taps of the first, type-A layer
    residual_channels: int = 64  # width of the residual stream between layers
    gate_channels: int = 128  # width of each layer's dilated convolution, halved by the tanh·sigmoid gate
    skip_channels: int = 256  # width of the skip connections and the output head before the softmax
    # How the stack is parameterised and initialised (see ``model.WaveNet``); the function the
    # sampling engines compute is the same plain stack whatever these say.
    init: str = "kaiming"  # "kaiming": He-normal weights (ReLU gain), zero biases; "torch": PyTorch's defaults
    weight_norm: bool = True  # every convolution's weight as g · v / ||v|| (Salimans & Kingma 2016)
    scale_sums: bool = True  # each residual sum × √0.5, the sum of the skips × √(1/layers)
    # Conditioning. ``train`` fills labels, mel_channels and mel_hop from the prepared data:
    # a model conditions on whatever its data carries (labels from folders, log-mel features).
    labels: list[str] = field(default_factory=list)  # global conditioning: one embedding each
    mel_channels: int = 0  # local conditioning: log-mel bands per frame (0 = none)
    mel_hop: int = 0  # samples per mel frame
    cond_channels: int = 128  # width of the frame-rate network that reads the mel features


@dataclass
class DataConfig:
    """How ``prepare`` turns recordings into codes."""

    sample_rate: int = 16000  # Hz; recordings at other rates are resampled to it
    val_fraction: float = 0.05  # tail of every file held out for validation
    trim_silence: bool = False  # trim leading/trailing silence (reported, never silent)
    trim_db: float = 40.0  # below peak, what counts as silence when trimming
    label_source: str = "none"  # "folders": each file's label is its first-level folder (global conditioning)
    # "mix": a file's channels are averaged to mono; "0", "1", ...: that channel alone is kept
    # (for files whose channels cancel when mixed, or hold different sources). Mono files are
    # used as they are either way.
    channel: str = "mix"
    mel_bands: int = 0  # log-mel bands stored beside the codes for local conditioning (0 = none)
    mel_hop: int = 256  # samples per mel frame
    mel_n_fft: int = 1024  # analysis window (Hann) and FFT size
    mel_fmin: float = 0.0  # Hz, lowest edge of the mel bands
    mel_fmax: float = 0.0  # 0 = half the sample rate


PRECISIONS = CHOICES["train.precision"]  # (see precision.py)
INITS = CHOICES["model.init"]
# What checkpoints written before these settings existed were: PyTorch's initialisation, plain
# weights, unscaled sums (``checkpoint.config_of`` fills them in for a config that lacks them).
LEGACY_MODEL = {"init": "torch", "weight_norm": False, "scale_sums": False}
LEGACY_TRAIN = {"code_noise": 0.0, "full_context": True}  # likewise: no code noise, context windows
# Old names of renamed settings, read as the new ones wherever settings are read (recipes, config.toml,
# checkpoints, --set); written configs hold the new names only. A table with both names is refused.
RENAMED = {"data.labels": "data.label_source", "data.mels": "data.mel_bands"}


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping for ``train``."""

    batch_size: int = 8  # windows per step (per process when training in several)
    segment_length: int = 8000  # predicted samples per window (with full_context, the context comes on top)
    lr: float = 4e-3  # Adam's peak learning rate, after warm-up
    warmup_steps: int = 100  # steps of linear warm-up to lr
    min_lr_ratio: float = 0.1  # cosine decay ends at lr * min_lr_ratio
    steps: int = 200_000  # the step training stops at (and the length of the cosine decay)
    grad_clip: float = 1.0  # largest gradient norm; larger ones are scaled down to it (0 = off)
    input_noise: float = 0.0  # std of noise on input audio before quantising; targets stay clean
    # std of noise on the input codes, in µ-law steps: relative to the level, as µ-law steps are
    # (one step is ~0.1 % of full scale near silence, ~2 % near full scale); targets stay clean
    code_noise: float = 1.0
    start_fraction: float = 0.1  # share of windows whose context begins in the silence before a file
    # True: windows carry a receptive field of context before the segment they predict. False:
    # windows of segment codes, every position predicted (the first ones see silence before it).
    full_context: bool = False
    accumulate: int = 1  # micro-batches of batch_size per optimizer step (effective batch = their product)
    ema: float = 0.999  # decay of a moving average of the weights (e.g. 0.999; 0 = off): validated, saved, synthesised
    compile: bool = False  # run the training forward through torch.compile (pays a compile on the first step)
    cuda_graph: bool = True  # on a GPU, capture the step once as a CUDA graph and replay it (train/graph.py)
    activation_checkpointing: bool = False  # keep only block inputs, recompute the rest in backward (less memory)
    precision: str = "auto"  # fp32, bf16 (autocast) or auto: bf16 where the device multiplies it natively
    checkpoint_every: int = 2000  # steps between saves of RUN/checkpoints/latest.pt
    # Consecutive skipped steps (non-finite loss or gradient norm) that stop the run. A skipped step
    # changes no weight, so a streak means every fresh batch fails at these weights: the run has
    # diverged. A sporadic bad window (1 step in 100) runs 20 in a row once in 10**40 steps.
    max_bad_steps: int = 20
    val_every: int = 2000  # steps between validations (best.pt is kept at the best one)
    val_batches: int = 16  # validation batches each time (0 = none)
    log_every: int = 50  # steps between lines of RUN/log.csv and the progress bar's loss
    # Every this many steps rank 0 writes RUN/samples/stepN.wav (+ .png, .json) and logs it to
    # TensorBoard: sample_seconds of audio from the weights validation uses (0 = off). See
    # monitor.py for its cost: about 1 s per 1 s of audio with the default shape on a CPU core.
    sample_every: int = 2000
    sample_seconds: float = 1.0  # length of each of those samples
    seed: int = 0  # seeds the weights, the windows drawn and the samples
    threads: int = 0  # CPU threads for torch; 0 keeps torch's default


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

    def override(self, *items: str) -> "Config":
        """Apply ``"section.key=value"`` strings in place, parsed and checked as ``--set`` does
        (an unknown key is refused with the nearest known ones); returns ``self``. Raises
        ``ConfigError``."""
        return apply_overrides(self, list(items))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config", base: "Config | None" = None) -> "Config":
        """Build a config from nested dicts, checking every key and type: the dataclass defaults,
        or a copy of ``base``, with the values ``raw`` sets (an old name in ``RENAMED``: the new one)."""
        config = cls.from_dict(base.to_dict()) if base is not None else cls()
        for section, values in raw.items():
            if not isinstance(values, dict):
                raise ConfigError(f"{source}: '{section}' must be a table like [{section}]")
            for key, value in values.items():
                new = RENAMED.get(f"{section}.{key}", "")
                if new and new.partition(".")[2] in values:
                    raise ConfigError(f"{source}: both '{section}.{key}' and its new name '{new}' are set; keep one")
                _assign(config, f"{section}.{key}", value, source)
        return config


SECTIONS = {f.name for f in dataclasses.fields(Config)}


def differences(before: Config, after: Config) -> list[tuple[str, Any, Any]]:
    """Every ``section.key`` whose value differs, with the value before and after, in
    declaration order."""
    old, new = before.to_dict(), after.to_dict()
    keys = [(section, key) for section in old for key in old[section]]
    return [(f"{s}.{k}", old[s][k], new[s][k]) for s, k in keys if old[s][k] != new[s][k]]


def known_keys() -> list[str]:
    """Every settable ``section.key``, sorted."""
    config = Config()
    return sorted(f"{s}.{f.name}" for s in SECTIONS for f in dataclasses.fields(getattr(config, s)))


def _field_type(section_obj: Any, key: str) -> type:
    types = {f.name: str(f.type) for f in dataclasses.fields(section_obj)}  # (postponed: text already)
    return {"int": int, "float": float, "bool": bool, "str": str, "list[str]": list}[types[key]]


def nearest_keys(dotted: str, count: int = 3) -> list[str]:
    """The known ``section.key`` names closest to a mistyped one, best first: by the key within
    a known section (``train.lrr`` → ``train.lr``), else by the whole name or the key alone
    (``lrr``). Only near misses count (difflib's ratio >= 0.75), so an unrelated name gets none."""
    names = RENAMED | {k: k for k in known_keys()}  # a name as given → the key it sets (old names too)
    section, _, key = dotted.partition(".")
    if section in SECTIONS and key:
        candidates = {k.partition(".")[2]: v for k, v in names.items() if k.startswith(section + ".")}
        word = key
    else:
        candidates, word = names, dotted
        if "." not in dotted:  # a key without its section: compare it with the keys' names
            candidates = {k.partition(".")[2]: v for k, v in names.items()}
    close = difflib.get_close_matches(word, list(candidates), n=count, cutoff=0.75)
    return list(dict.fromkeys(candidates[name] for name in close))  # an old and a new name: one key


def _locate(config: Config, dotted: str, source: str) -> tuple[Any, str]:
    """The section object and key ``dotted`` names (an old name: the renamed key); an unknown one
    is refused with the nearest known keys (all of them when none is close)."""
    section, _, key = RENAMED.get(dotted, dotted).partition(".")
    if section not in SECTIONS or not key or not hasattr(getattr(config, section), key):
        raise unknown_setting(dotted, source)
    return getattr(config, section), key


def unknown_setting(dotted: str, source: str) -> ConfigError:
    """The error for a key no config has: the nearest known keys, or all of them when none is close."""
    close = nearest_keys(dotted)
    hint = f"did you mean {' or '.join(close)}?" if close else f"known: {', '.join(known_keys())}"
    return ConfigError(f"{source}: unknown setting '{dotted}' ({hint})")


def _assign(config: Config, dotted: str, value: Any, source: str) -> None:
    """Set a value that already has a Python type (from TOML): only exact types are accepted,
    except that an int may stand for a float."""
    obj, key = _locate(config, dotted, source)
    want = _field_type(obj, key)
    ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if want is list and ok and not all(isinstance(item, str) for item in value):
        ok = False
    if not ok:
        raise ConfigError(f"{source}: '{dotted}' must be {want.__name__}, got {type(value).__name__} {value!r}")
    setattr(obj, key, value)


BOOLEANS = {**dict.fromkeys(("true", "1", "yes", "on"), True), **dict.fromkeys(("false", "0", "no", "off"), False)}


def _parse(text: str, want: type, dotted: str) -> Any:
    """Parse a ``--set`` value given as text into the field's type."""
    text = text.strip()
    try:
        if want is bool:
            return BOOLEANS[text.lower()]
        if want is int:
            return int(text.replace("_", ""))
        if want is float:
            return float(text)
        if want is list:  # comma-separated names
            return [item.strip() for item in text.split(",") if item.strip()]
        return text
    except (ValueError, KeyError):
        raise ConfigError(f"--set {dotted}={text}: expected {want.__name__}") from None


def apply_overrides(config: Config, overrides: list[str]) -> Config:
    """Apply ``section.key=value`` strings to ``config`` in place (and return it)."""
    for item in overrides:
        if not isinstance(item, str):
            raise ConfigError(f"--set {item!r}: expected a 'section.key=value' string, e.g. 'train.lr=3e-4'")
        dotted, sep, text = item.partition("=")
        dotted = dotted.strip()
        if not sep:
            raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. train.lr=3e-4")
        obj, key = _locate(config, dotted, "--set")
        setattr(obj, key, _parse(text, _field_type(obj, key), dotted))
    validate(config)
    return config


def validate(config: Config) -> None:
    """Refuse values that are well typed but make no sense."""
    m, d, t = config.model, config.data, config.train
    for section in SECTIONS:  # NaN passes every comparison below: refuse it (and inf) first
        for f in dataclasses.fields(getattr(config, section)):
            value = getattr(getattr(config, section), f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"'{section}.{f.name}' must be a finite number, got {value}")
    for name, spec in RANGES.items():
        section, _, key = name.partition(".")
        value = getattr(getattr(config, section), key)
        if not in_range(value, spec):
            raise ConfigError(f"'{name}' must be {spec}, got {value}")
    if m.classes != 256:
        raise ConfigError("'model.classes' must be 256 (8-bit µ-law)")
    if d.channel != "mix" and not (d.channel.isascii() and d.channel.isdigit()):
        raise ConfigError(f"'data.channel' must be 'mix' or a channel number (0 for the first), got {d.channel!r}")
    if d.label_source not in CHOICES["data.label_source"]:
        raise ConfigError(f"'data.label_source' must be 'none' or 'folders', got {d.label_source!r}")
    if d.mel_hop <= 0 or d.mel_n_fft < d.mel_hop:
        raise ConfigError(f"'data.mel_n_fft' ({d.mel_n_fft}) must be >= 'data.mel_hop' ({d.mel_hop}) > 0")
    if d.mel_fmin < 0 or (d.mel_fmax and d.mel_fmax <= d.mel_fmin) or d.mel_fmax > d.sample_rate / 2:
        raise ConfigError("data.mel_fmin/mel_fmax must satisfy 0 <= fmin < fmax <= sample_rate / 2")
    if bool(m.mel_channels) != bool(m.mel_hop):
        raise ConfigError("'model.mel_channels' and 'model.mel_hop' must be set together")
    if len(set(m.labels)) != len(m.labels):
        raise ConfigError("'model.labels' has repeated names")
    if m.init not in INITS:
        raise ConfigError(f"'model.init' must be one of {', '.join(INITS)}, got {m.init!r}")
    if t.precision not in PRECISIONS:
        raise ConfigError(f"'train.precision' must be one of {', '.join(PRECISIONS)}, got {t.precision!r}")


def to_toml(config: Config) -> str:
    return tomli_w.dumps(config.to_dict())
