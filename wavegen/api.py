"""The Python API: prepare data, train a run, load a model and generate audio, in a program.

Each function is the library code the command of the same name runs (``wavegen prepare``,
``wavegen train``, ``wavegen synth``), without the files ``synth`` writes and without printing:
the one-line messages go to the ``wavegen`` logger (``logging``: INFO for what the command line
prints, WARNING for what is wrong while the work goes on, DEBUG for detail), so that
``logging.basicConfig(level=logging.INFO)`` shows them and a program routes them as it likes;
unconfigured, Python shows the warnings alone, on stderr. Every function takes ``progress``
(default False) for tqdm bars on stderr.
Failures raise ``wavegen.errors.WavegenError`` subclasses with the one-line messages the
command line prints (``ConfigError``, ``DataError``, ``CheckpointError``...).

``train`` is exported as ``wavegen.fit``: ``wavegen.train`` is the training subpackage, and a
function by that name would be replaced by it as soon as the subpackage is imported.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

from .config import Config, unknown_setting, validate
from .errors import ConfigError
from .recipe import load_recipe

if TYPE_CHECKING:
    import numpy as np

    from .generate.live import LiveStream
    from .generate.reuse import EngineCache
    from .train.trainer import TrainResult


def checked(config: Config) -> Config:
    """A checked copy of ``config`` as edited in Python: every value of its declared type, no
    unknown attribute (``config.train.lrr = 1`` is a typo, refused with the nearest key), and
    the same ``validate`` as ``--set``. Raises ``ConfigError``."""
    if not isinstance(config, Config):
        raise ConfigError(f"config: expected a wavegen.Config, got {type(config).__name__}")
    for section in dataclasses.fields(config):
        obj = getattr(config, section.name)
        known = {f.name for f in dataclasses.fields(obj)}
        for name in vars(obj):
            if name not in known:
                raise unknown_setting(f"{section.name}.{name}", "config")
    copy = Config.from_dict(config.to_dict(), source="config")  # type checks, as a recipe's
    validate(copy)
    return copy


def prepare(
    dataset: str | Path,
    out: str | Path = "prepared",
    config: Config | None = None,
    recipe: str = "default",
    *,
    progress: bool = False,
) -> dict:
    """Encode every audio file under ``dataset`` (recursively) into ``out`` for training.

    The ``[data]`` settings come from ``config`` when given, else from ``recipe`` (a name in
    ``recipes/`` or a .toml path); files shorter than that config's receptive field are skipped.
    Returns the manifest (``out/manifest.json``): per-file entries under "files", and every
    skipped or ignored file with its reason under "skipped". Raises ``DataError`` when
    ``dataset`` is missing or holds nothing usable (then no ``out`` folder is left),
    ``ConfigError`` for a bad config.
    """
    from .data.prepare import prepare as run_prepare
    from .data.reasons import short_reason
    from .model.network import receptive_field
    from .outputs import writable_folder

    why = "the config's receptive field" if config is not None else None  # else the recipe's, named
    config = checked(config) if config is not None else load_recipe(recipe)
    writable_folder(Path(out))
    shortest = receptive_field(config.model)
    why = why or short_reason(recipe, shortest)
    return run_prepare(
        Path(dataset),
        Path(out),
        config.data,
        progress=progress,
        min_samples=shortest,
        min_reason=why,
    )


def train(
    data: str | Path = "prepared",
    run: str | Path | None = None,
    config: Config | None = None,
    recipe: str | None = None,
    steps: int | None = None,
    overrides: Sequence[str] = (),
    *,
    init_from: str | Path | None = None,
    device: str = "auto",
    progress: bool = False,
) -> TrainResult:
    """Train a new run in ``run`` on the prepared data in ``data``, or resume it if it has a
    checkpoint (``wavegen train``; exported as ``wavegen.fit``).

    The settings: ``config`` or ``recipe`` (not both; default: the ``default`` recipe, or the
    run's own when it resumes), then ``overrides`` (``"train.lr=3e-4"`` strings, as ``--set``),
    then ``steps`` (train until this step). ``run`` defaults to ``runs/RECIPE`` (``runs/custom``
    with a config). ``init_from``: a new run starts from the weights and model settings of a run,
    checkpoint or exported folder (data and training settings: the recipe's, else its run's).
    ``device``: ``auto``, ``cpu`` or ``cuda``. Returns a ``TrainResult`` (step
    reached, training and validation bits per sample, seconds). Raises ``ConfigError`` for bad
    settings or a change a trained run refuses, ``DataError`` for missing prepared data,
    ``OutOfMemory``, ``TrainingDiverged``; Ctrl-C saves the run and raises ``TrainingInterrupted``.
    """
    from .outputs import writable_folder
    from .run_config import check_train_call

    if config is not None and recipe is not None:
        raise ConfigError("give config or recipe, not both")
    check_train_call(steps, overrides, device)
    if run is None:
        run = Path("runs") / ("custom" if config is not None else Path(recipe or "default").stem)
    run = Path(run)
    writable_folder(run, "run")
    from .train.loop import train as run_train
    from .train.settings import resolve_config

    base = checked(config) if config is not None else recipe
    resolved = resolve_config(run, Path(data), base, list(overrides), steps, init_from=init_from)
    return run_train(
        resolved.config,
        Path(data),
        run,
        device=device,
        progress=progress,
        **resolved.found(),
    )


@dataclass(frozen=True)
class Generation:
    """Audio a ``Model`` generated. Unpacks as ``audio, sample_rate = model.generate(...)``."""

    audio: np.ndarray  # (streams, samples) float32 in [-1, 1]
    sample_rate: int  # Hz
    labels: list[str] | None  # the label of each stream (labelled models), else None
    seeds: list[int]  # the seed of each stream
    engine: str  # the sampling engine that ran
    samples_per_s: float  # generated samples per second of wall time, over every stream
    precision: str = "fp32"  # the weights' precision in the engine: fp32, bf16 or int8

    def __iter__(self) -> Iterator:
        return iter((self.audio, self.sample_rate))

    @property
    def seconds(self) -> float:
        """The length of each stream in seconds."""
        return self.audio.shape[1] / self.sample_rate


class Model:
    """A trained model, rebuilt from a checkpoint; ``load`` makes one."""

    def __init__(self, network, config: Config, checkpoint: Path, step: int) -> None:
        self.network = network  # the torch module (``wavegen.model.network.WaveNet``), on the CPU
        self.config = config  # the run's resolved settings, as the checkpoint carries them
        self.checkpoint = checkpoint
        self.step = step  # the training step it was saved at
        self.kept: EngineCache | None = None  # engines kept between generations (``generate.reuse``), made on first use

    @classmethod
    def load(cls, source: str | Path | None = None) -> "Model":
        """The model in ``source``: a checkpoint file (``RUN/checkpoints/best.pt``), an exported
        folder (``wavegen export``), or a run folder, whose best checkpoint (lowest validation loss)
        is used, else its latest, as ``wavegen synth`` picks; None: the newest run. Raises
        ``CheckpointError`` when there is no readable checkpoint there."""
        from .runs import given_path, pick_checkpoint
        from .synthesis.synth import load_checkpoint

        given = given_path(source)
        path = pick_checkpoint(checkpoint=given) if given and given.is_file() else pick_checkpoint(run=given)
        network, _, config, step = load_checkpoint(path)
        return cls(network, config, path, step)

    @property
    def sample_rate(self) -> int:
        """The rate the model was trained at and generates at, in Hz."""
        return self.config.data.sample_rate

    @property
    def labels(self) -> list[str]:
        """The labels a labelled model generates (empty for an unlabelled one)."""
        return list(self.config.model.labels)

    @property
    def receptive_field(self) -> int:
        """How many past samples each sample is predicted from."""
        return self.network.receptive_field

    def __repr__(self) -> str:
        return f"Model({str(self.checkpoint)!r}, step={self.step}, sample_rate={self.sample_rate})"

    def generate(
        self,
        seconds: float | None = None,
        n: int | None = None,
        seed: int = 0,
        temperature: float = 1.0,
        labels: str | Sequence[str] = (),
        mel: np.ndarray | str | Path | None = None,
        prime: np.ndarray | str | Path | None = None,
        *,
        engine: str = "auto",
        device: str = "auto",
        precision: str = "auto",
        progress: bool = False,
    ) -> Generation:
        """Generate ``n`` streams of ``seconds`` each, together; stream i uses seed ``seed + i``
        (the same seed gives the same audio with every engine at the same precision).

        ``seconds``: default 2, or for a mel-conditioned model the features' length. ``n``:
        default 1, or one stream per label. ``temperature`` (> 0) scales the logits. ``labels``:
        a labelled model's label(s): one for every stream, or one per stream (default: each
        label in turn). ``mel``: log-mel features (frames, bands) for a vocoder model, as an
        array or a .npy path. ``prime``: continue a recording (a path, or mono float audio at
        ``sample_rate``) instead of silence. ``engine``: auto, native, persistent, cuda-graph,
        torch or reference (``generate.choice`` says what auto picks); ``device``:
        auto, cpu or cuda. ``precision``: auto (int8 in the native CPU engine, fp32 in the others), fp32 (the network as trained), or bf16 or int8 weights in
        the native engine (faster, slightly different logits). Returns a
        ``Generation`` (audio (n, samples) float32 in [-1, 1]). Raises ``ConfigError`` for values
        out of range, a precision the engine or device cannot run, or conditioning the model
        lacks; ``DataError`` for an unusable prime or mel file; ``OutOfMemory``.
        """
        from .audio.mulaw import decode
        from .generate.request import GenerationRequest
        from .generate.reuse import EngineCache
        from .generate.streams import generate_streams

        # (labels: a str or a sequence, made a tuple by the request)
        request = GenerationRequest(seconds, n, seed, temperature, engine, device, precision, labels, prime, mel)  # type: ignore[arg-type]
        where, self.kept = str(self.checkpoint), self.kept or EngineCache()
        made = generate_streams(self.network, self.sample_rate, where, request, progress, self.step, self.kept)
        audio = decode(made.codes).numpy().astype("float32", copy=False)
        return Generation(
            audio, made.sample_rate, made.labels, made.seeds, made.engine, made.samples_per_s, made.precision
        )

    def stream(
        self,
        seconds: float | None = None,
        n: int | None = None,
        seed: int = 0,
        temperature: float = 1.0,
        labels: str | Sequence[str] = (),
        mel: np.ndarray | str | Path | Iterable[np.ndarray] | None = None,
        prime: np.ndarray | str | Path | None = None,
        *,
        chunk: int = 4096,
        engine: str = "auto",
        device: str = "auto",
        precision: str = "auto",
    ) -> LiveStream:
        """``generate``'s audio as it is made: a ``LiveStream`` of float32 blocks (n, chunk), exactly
        ``generate``'s samples. ``seconds`` None: no end (leave the loop, or ``close()``). ``mel``:
        as in ``generate``, or an iterable of frames (bands,) or (frames, bands) as they arrive
        (docs/live.md). Without a length known in advance it runs on the CPU. Raises as ``generate``."""
        from .generate.live import split_mel, stream_audio
        from .generate.request import GenerationRequest
        from .generate.reuse import EngineCache

        whole, frames = split_mel(mel)  # (labels: a str or a sequence, made a tuple by the request)
        request = GenerationRequest(seconds, n, seed, temperature, engine, device, precision, labels, prime, whole)  # type: ignore[arg-type]
        self.kept = self.kept or EngineCache()
        where = str(self.checkpoint)
        return stream_audio(self.network, self.sample_rate, where, request, chunk, frames, self.step, self.kept)


def load(source: str | Path | None = None) -> Model:
    """``Model.load(source)``: a checkpoint file, an exported folder, a run folder (its best
    checkpoint, else its latest) or None (the newest run under ``runs/``)."""
    return Model.load(source)


__all__ = ["Config", "Generation", "Model", "checked", "load", "load_recipe", "prepare", "train"]
