"""Which engine generates, where and at what precision: the one rule, for every caller.

``plan`` is the decision table, a pure function of what was asked (a ``GenerationRequest``'s
engine, device and precision, and the number of streams) and whether a GPU is present.
``choose`` builds what the plan names, falls back where it allows, and times a short trial
where two engines could both be fastest. ``synth``, ``vocode``, ``eval``, the Python API and
the training monitor all call ``choose``; ``make_engine`` is one stream's choice, for tests and
benchmarks.

    engine  device      precision        streams   candidates (→ fallbacks)
    ------  ----------  ---------------  --------  ---------------------------------------------
    native  auto/cpu    any              any       native on the CPU (auto: int8)
    native  cuda        any              any       refused: the native engine runs on the CPU
    other   any         fp32/auto        any       that engine on the device, at fp32
    other   any         bf16/int8        any       refused: only the native engine has them
    any     cuda        bf16/int8        any       refused: the native engine runs on the CPU
    auto    CPU         any              any       native (auto: int8) → torch at fp32
    auto    GPU         fp32/auto        > 16      cuda-graph → torch
    auto    auto, GPU   fp32/auto        9 .. 16   native on the CPU → cuda-graph, torch
    auto    auto, GPU   fp32/auto        <= 8      a trial of persistent and native on the CPU
                                                   → cuda-graph, torch
    auto    cuda        fp32/auto        <= 8      persistent → cuda-graph, torch
    auto    cuda        fp32/auto        9 .. 16   cuda-graph → torch

(GPU: ``auto`` or ``cuda`` with a CUDA device present; CPU: ``cpu``, or ``auto`` without one.)
The numbers are measured: up to ``NATIVE_OVER_GPU_STREAMS`` streams the native engine on the
CPU is faster than the cuda-graph engine on a GPU (launch-bound at ~2,000-2,800 samples/s per
stream on an H200), and up to ``PERSISTENT_STREAMS`` the persistent engine is the GPU's fastest.
A trial runs once per machine, model and stream count: its winner is remembered (``trials``)
and built alone the next time; where the native engine has never been built here, the GPU's
engine is taken without a trial rather than compiling the CPU's only to time it.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Iterator

import torch

from ..devices import resolve_device
from ..errors import ConfigError, EngineUnavailable
from ..model.network import WaveNet
from . import trials
from .engine import Engine
from .engines import build_engine, generate
from .request import GenerationRequest

logger = logging.getLogger(__name__)

NATIVE_OVER_GPU_STREAMS = 16
PERSISTENT_STREAMS = 8
# What ``precision="auto"`` means in the native engine: int8, whose cost was measured at 0.001
# bits/sample or less from fp32 on a trained speech model (docs/measurements.md) for 1.4-3.6x the speed.
AUTO_NATIVE_PRECISION = "int8"


@dataclass(frozen=True)
class Candidate:
    """One engine on one device at one precision."""

    engine: str  # a name in ``request.ENGINES``
    device: str  # "cpu" or "cuda"
    precision: str  # "fp32", "bf16" or "int8"


@dataclass(frozen=True)
class Plan:
    """What ``plan`` decided: ``candidates`` are built (a trial picks the fastest of those that
    run, or without a trial ``preferred`` first); when none runs, the first of ``fallbacks``
    that runs is used, saying why. No fallbacks: the candidate's failure is the caller's error."""

    candidates: tuple[Candidate, ...]
    fallbacks: tuple[Candidate, ...] = ()
    preferred: int = 0  # the candidate tried first without a trial


def plan(request: GenerationRequest, streams: int, gpu: bool) -> Plan:
    """The decision table above for ``request`` (whose names the request checked) and ``streams``.
    ``gpu``: whether its device (``auto``, ``cpu``, ``cuda``) resolves to a CUDA device. Raises
    ``ConfigError`` for an engine or precision that cannot run there; builds nothing."""
    refuse(request)
    return _table(request, streams, gpu)


def _table(request: GenerationRequest, streams: int, gpu: bool) -> Plan:
    """``plan`` for a request ``refuse`` let through."""
    engine, device, precision = request.engine, request.device, request.precision
    if precision in ("bf16", "int8"):  # only the native engine stores lower precision weights
        return Plan((Candidate("native", "cpu", precision),))
    here = "cuda" if gpu and device != "cpu" else "cpu"
    native = Candidate("native", "cpu", AUTO_NATIVE_PRECISION if precision == "auto" else "fp32")
    if engine != "auto":
        return Plan((native if engine == "native" else Candidate(engine, here, "fp32"),))
    if here == "cpu":
        return Plan((native,), (Candidate("torch", "cpu", "fp32"),))
    graph = (Candidate("cuda-graph", "cuda", "fp32"), Candidate("torch", "cuda", "fp32"))
    if streams > NATIVE_OVER_GPU_STREAMS:
        return Plan(graph[:1], graph[1:])
    persistent = (Candidate("persistent", "cuda", "fp32"),) if streams <= PERSISTENT_STREAMS else ()
    cpu = (native,) if device == "auto" else ()
    if not persistent + cpu:
        return Plan(graph[:1], graph[1:])
    return Plan(persistent + cpu, graph, preferred=len(persistent + cpu) - 1)


def refuse(request: GenerationRequest) -> None:
    """The table's refusals, which need no device: ``ConfigError`` for a precision or an engine
    that cannot run on the request's device."""
    engine, device, precision = request.engine, request.device, request.precision
    if precision in ("bf16", "int8"):
        if engine not in ("auto", "native"):
            raise ConfigError(
                f"--precision {precision} runs in the native engine only, not the '{engine}' engine "
                "(use --engine native or auto, or --precision fp32)"
            )
        if device == "cuda":
            raise ConfigError(f"--precision {precision} runs in the native engine on the CPU (use --device cpu)")
    if engine == "native" and device == "cuda":
        raise ConfigError("--engine native runs on the CPU (use --device cpu or auto)")


@dataclass
class Chosen:
    """The engine ``choose`` built, and the device it runs on."""

    engine: Engine
    device: torch.device

    def __iter__(self) -> Iterator[Engine | torch.device]:  # engine, device = choose(...)
        return iter((self.engine, self.device))


def choose(request: GenerationRequest, streams: int, model: WaveNet, trial: bool = True) -> Chosen:
    """Build the engine ``plan`` decides for ``request`` and ``streams`` streams of ``model``
    (on the CPU; the engine copies what it needs to its device). ``trial=False`` (the training
    monitor) takes the plan's preferred candidate that runs instead of timing them. Raises
    ``ConfigError`` as ``plan`` does, ``EngineUnavailable`` when a named engine cannot run here."""
    refuse(request)  # before any device is touched
    decided = _table(request, streams, resolve_device(request.device).type == "cuda")
    precision = request.precision
    asked = f"--precision {precision}: " if precision in ("bf16", "int8") else ""
    order = list(decided.candidates)
    logger.debug(f"engines for {streams} stream(s) at --precision {precision}: {', '.join(map(_named, order))}")
    key = None
    if not trial:
        order.insert(0, order.pop(decided.preferred))
    elif len(order) > 1:
        key = trials.trial_key(model, streams, [_named(c) for c in order])
        trial = _decided_before_building(order, key)
    built: list[Chosen] = []
    failed: list[tuple[str, str]] = []  # (engine, why it cannot run)
    for candidate in order:
        made = _try(candidate, model, streams, failed, None if decided.fallbacks else asked)
        if made is not None:
            built.append(made)
            if not trial:
                break
    if len(built) > 1:
        return _faster(built, model, streams, key)
    if built:
        return built[0]
    for candidate in decided.fallbacks:
        last = candidate == decided.fallbacks[-1]
        made = _try(candidate, model, streams, failed, "" if last else None)
        if made is not None:
            for name, reason in failed:
                _notice(f"{name} engine unavailable: {reason}; using the '{candidate.engine}' engine")
            return made
    raise AssertionError("the last fallback raises where it cannot run")  # pragma: no cover


def _named(candidate: Candidate) -> str:
    return f"{candidate.engine} on {candidate.device}"


def _decided_before_building(order: list[Candidate], key: str) -> bool:
    """Put first in ``order`` the candidate known to win here, and say whether a trial is still
    needed: this machine's earlier trial for the same key decides (``trials``); without one,
    where the CPU's native engine is not built yet, the rule decides (the GPU's engine first),
    because building it only to time it costs a compile of ~10 s or more; else a trial runs."""
    known = trials.recall(key)
    names = [_named(c) for c in order]
    if isinstance(known, dict) and known.get("winner") in names:
        order.insert(0, order.pop(names.index(known["winner"])))
        rates = known.get("rates", {})
        said = ", ".join(f"{name} {rate:,.0f}" for name, rate in rates.items() if isinstance(rate, (int, float)))
        logger.info(f"engine: {known['winner']}, the faster in this machine's trial ({said} samples/s)")
        return False
    if any(c.engine == "native" for c in order) and not native_ready():
        order.sort(key=lambda c: c.engine == "native")  # (stable: the GPU's engines first)
        logger.info(f"engine: {_named(order[0])} by the rule (no trial: the native CPU engine is not built here)")
        return False
    return True


def make_engine(name: str, model: WaveNet, device: torch.device | str = "cpu", precision: str = "fp32") -> Engine:
    """One stream's engine on ``device``, as ``choose`` decides without a trial: ``name`` itself,
    or for ``auto`` the plan's preferred engine that runs. Raises as ``GenerationRequest`` and
    ``choose`` do."""
    request = GenerationRequest(engine=name, device=torch.device(device).type, precision=precision)
    return choose(request, 1, model, trial=False).engine


def _try(
    candidate: Candidate, model: WaveNet, streams: int, failed: list[tuple[str, str]], alone: str | None
) -> Chosen | None:
    """``candidate`` built, or None after noting in ``failed`` (or saying) why it cannot run.
    ``alone`` (a prefix for the message): nothing else could run instead, so raise."""
    device = torch.device(candidate.device)
    if alone is None and candidate.engine == "persistent":  # compiled and run briefly first
        made = _persistent(model, device, streams)
        return None if made is None else Chosen(made, device)
    if alone is None and candidate.engine == "native" and not native_available():
        return None  # (it has said why)
    try:
        return Chosen(build_engine(candidate.engine, model, device, candidate.precision), device)
    except EngineUnavailable as exc:
        if alone is None:
            failed.append((candidate.engine, str(exc)))
            return None
        if candidate.engine != "native":
            raise
        raise EngineUnavailable(f"{alone}native engine unavailable: {exc}") from None


_reported: set[str] = set()  # fallback notices already given in this process


def _notice(message: str) -> None:
    if message not in _reported:  # once per process
        _reported.add(message)
        logger.warning(message)


def native_ready() -> bool:
    """Whether the native engine loads here without a compile (built before, or loaded)."""
    from .native import ready

    return ready()


def native_available() -> bool:
    """Whether the native engine builds and loads here (building it if needed); if not, says
    why once (a warning)."""
    from .native import load

    try:
        load()
        return True
    except EngineUnavailable as exc:
        _notice(f"native engine unavailable: {exc}; using the 'torch' engine")
        return False


def _persistent(model: WaveNet, device: torch.device, streams: int) -> Engine | None:
    """The persistent engine on a copy of the model (the CPU's engine keeps the model), compiled
    and run for a few samples; or None after saying why it cannot run here."""
    first = trials.compiled_key(model)
    if not trials.recall(first, "compiled"):
        logger.info("compiling the persistent engine's kernel for this GPU and model (once: it is cached)")
    try:
        engine = build_engine("persistent", copy.deepcopy(model), device)
        generate(engine, 16, list(range(streams)), conditioning=trials.silent(engine.model, streams))
        trials.remember(first, trials.stamp(), "compiled")
        return engine
    except Exception as exc:  # a first compile or launch that fails here: the other engines still run
        lines = str(exc).strip().splitlines()  # a compiler's message: its last line says what failed
        logger.warning(f"persistent engine unavailable: {lines[-1] if lines else type(exc).__name__}")
        return None


def _faster(candidates: list[Chosen], model: WaveNet, streams: int, key: str | None) -> Chosen:
    """The candidate that generates fastest in a short trial, saying the rates in one line and
    remembering the winner under ``key`` (``trials``)."""
    rates = [trials.trial_rate(c.engine, c.device, model, streams) for c in candidates]
    best = max(range(len(candidates)), key=lambda i: rates[i])
    said = ", ".join(f"{c.engine.name} on {c.device.type} {r:,.0f} samples/s" for c, r in zip(candidates, rates))
    logger.info(f"engine trial, {streams} stream{'s' * (streams > 1)}: {said}; using {candidates[best].engine.name}")
    if key is not None:
        named = [f"{c.engine.name} on {c.device.type}" for c in candidates]
        record = {"winner": named[best], "rates": dict(zip(named, rates)), "when": trials.stamp()}
        trials.remember(key, record)
    return candidates[best]
