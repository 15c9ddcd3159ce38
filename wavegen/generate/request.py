"""What a caller asks to generate, checked once: ``GenerationRequest``.

The command line, the Python API and the demo each build one request from their options; the
request refuses a value out of range when it is made (``ConfigError``, one line), so nothing
after it checks again. It imports neither torch nor numpy: the command line checks a request
before torch is loaded, and answers a mistake at once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from ..errors import ConfigError
from ..limits import check_seconds, check_seed, check_streams, check_temperature

if TYPE_CHECKING:
    import numpy as np

# Every sampling engine by name (``choice`` says which ``auto`` means; docs/engines.md has each).
ENGINES = ("native", "persistent", "cuda-graph", "torch", "reference")
DEVICES = ("auto", "cpu", "cuda")
# The weights' precision in the engine (``quantized``): bf16 and int8 run in the native engine.
PRECISIONS = ("fp32", "bf16", "int8")

Source = Union[str, Path, "np.ndarray", None]  # a file, or the data itself


def check_precision(precision: str, allow_auto: bool = True) -> str:
    """``precision`` if it is ``auto`` (when allowed) or one of ``PRECISIONS``; else
    ``ConfigError`` naming the choices."""
    choices = (("auto",) if allow_auto else ()) + PRECISIONS
    if precision not in choices:
        raise ConfigError(f"unknown precision {precision!r} (choose from {', '.join(choices)})")
    return precision


def check_engine(engine: str) -> str:
    """``engine`` if it is ``auto`` or one of ``ENGINES``; else ``ConfigError`` naming them."""
    if engine != "auto" and engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r} (choose from auto, {', '.join(ENGINES)})")
    return engine


def _real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_types(request: GenerationRequest) -> None:
    """Values of the wrong type (from a program: the command line parses its own) as one line."""
    wrong = [
        (name, value, want)
        for name, value, want, ok in (
            ("seconds", request.seconds, "a number of seconds", request.seconds is None or _real(request.seconds)),
            ("n", request.n, "a whole number", request.n is None or (_real(request.n) and isinstance(request.n, int))),
            ("temperature", request.temperature, "a number", _real(request.temperature)),
            ("engine", request.engine, "a name", isinstance(request.engine, str)),
            ("device", request.device, "a name", isinstance(request.device, str)),
            ("precision", request.precision, "a name", isinstance(request.precision, str)),
            ("labels", request.labels, "label names", all(isinstance(x, str) for x in request.labels)),
        )
        if not ok
    ]
    if wrong:
        name, value, want = wrong[0]
        raise ConfigError(f"{name} must be {want}, got {type(value).__name__} {value!r}")


@dataclass(frozen=True)
class GenerationRequest:
    """One call's generation, as asked (``Model.generate``, ``wavegen synth``, ``vocode``).

    seconds:     length of each stream in seconds (None: 2, or a vocoder's mel features' length)
    n:           streams generated together (None: 1, or one per label); stream i uses seed + i
    temperature: the softmax temperature, > 0
    engine:      ``auto`` or one of ``ENGINES``; device: ``auto``, ``cpu`` or ``cuda``
    precision:   ``auto`` or one of ``PRECISIONS`` (``choice.plan`` says where each runs)
    labels:      a labelled model's labels: one for every stream, or one per stream
    prime:       a recording (path, or mono float audio at the model's rate) to continue
    mel:         log-mel features (frames, bands) for a vocoder model, or a .npy path

    Raises ``ConfigError`` for a value of the wrong type, a length, stream count, temperature,
    seed (every stream's in 0..2**64 - 1), device, precision or engine out of range.
    """

    seconds: float | None = None
    n: int | None = None
    seed: int = 0
    temperature: float = 1.0
    engine: str = "auto"
    device: str = "auto"
    precision: str = "auto"
    labels: tuple[str, ...] = ()
    prime: Source = None
    mel: Source = None

    def __post_init__(self) -> None:
        if isinstance(self.labels, str):  # one label, not its letters
            object.__setattr__(self, "labels", (self.labels,))
        try:
            object.__setattr__(self, "labels", tuple(self.labels))
        except TypeError:
            raise ConfigError(f"labels must be a label name or a list of them, got {self.labels!r}") from None
        _check_types(self)
        check_seed(self.seed, self.n or 1)
        if self.seconds is not None:
            check_seconds(self.seconds)
        if self.n is not None:
            check_streams(self.n)
        check_temperature(self.temperature)
        if self.device not in DEVICES:
            raise ConfigError(f"--device {self.device}: choose auto, cpu or cuda")
        check_precision(self.precision)
        check_engine(self.engine)

    def replace(self, **changes: Any) -> GenerationRequest:
        """A copy with ``changes``, checked again."""
        return dataclasses.replace(self, **changes)


def as_request(request: GenerationRequest | None, asked: dict) -> GenerationRequest:
    """``request``, or one made of the fields a caller gave as keywords instead (``asked``),
    checked as every request is. Raises ``TypeError`` when given both."""
    if request is not None and asked:
        raise TypeError(f"give a request or its fields, not both ({', '.join(asked)})")
    return request if request is not None else GenerationRequest(**asked)
