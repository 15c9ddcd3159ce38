"""Synthesis from a checkpoint: pick the run, build the engine, generate, write WAVs."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import checkpoint as ckpt
from .audio import AudioReadError, load_audio, write_wav
from .errors import CheckpointError, ConfigError, DataError
from .mulaw import decode, encode
from .sampling import generate, make_engine, native_available
from .train import checkpoint_paths, resolve_device

MAX_SECONDS = 3600.0


def newest_run(runs: Path = Path("runs")) -> Path:
    """The run under ``runs/`` whose latest checkpoint was written most recently."""
    candidates = [p.parent.parent for p in Path(runs).glob("*/checkpoints/latest.pt")]
    if not candidates:
        raise CheckpointError(f"{runs}: no trained runs found (run `wavegen train` first, or pass --run/--checkpoint)")
    return max(candidates, key=lambda run: checkpoint_paths(run)["latest"].stat().st_mtime)


def pick_checkpoint(run: Path | None = None, checkpoint: Path | None = None) -> Path:
    """``--checkpoint`` as given; else the run's best checkpoint (lowest validation loss), or
    its latest when it has no validation data; the run defaults to the newest under ``runs/``."""
    if checkpoint is not None:
        return Path(checkpoint)
    run = Path(run) if run is not None else newest_run()
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


# Up to this many streams the native engine on the CPU outruns the cuda-graph engine on a GPU
# (measured on an H200: the graph engine is launch-bound at ~2,000-2,800 samples/s per stream up
# to 64 streams, the native engine ~4× that for one stream on one busy CPU core); beyond, a GPU's
# batching wins (1.5 million samples/s for 1,024 streams).
NATIVE_OVER_GPU_STREAMS = 16


def pick_engine(engine: str, device: str, model, streams: int, log: Callable[[str], None]):
    """The engine to synthesise with and its device. ``auto`` means the fastest: the native engine
    when it builds (on the CPU, unless a GPU was asked for or the streams are many), the
    cuda-graph engine on a GPU, else torch."""
    dev = resolve_device(device)
    if engine == "auto" and device == "auto" and dev.type != "cpu" and streams <= NATIVE_OVER_GPU_STREAMS:
        dev = resolve_device("cpu") if native_available(log) else dev
    return make_engine(engine, model, dev, log=log), dev


def synthesize(
    checkpoint: Path,
    out: Path = Path("samples"),
    seconds: float = 2.0,
    n: int = 1,
    seed: int = 0,
    temperature: float = 1.0,
    engine: str = "auto",
    device: str = "auto",
    prime: Path | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> SynthResult:
    """Generate ``n`` streams of ``seconds`` each (stream i uses seed + i) into ``out``.

    Generation starts from silence, or continues the end of the recording ``prime``.
    """
    if not 0 < seconds <= MAX_SECONDS:
        raise ConfigError(f"--seconds must be in (0, {MAX_SECONDS:g}], got {seconds:g}")
    if n < 1:
        raise ConfigError(f"--n must be at least 1, got {n}")
    if not temperature > 0:
        raise ConfigError(f"--temperature must be > 0, got {temperature:g}")
    if Path(out).exists() and not Path(out).is_dir():
        raise ConfigError(f"{out}: output path exists and is not a folder")
    model, payload = ckpt.load_model(checkpoint, map_location="cpu")
    rate = int(payload["config"]["data"]["sample_rate"])
    step = int(payload.get("step", 0))
    run_name = Path(checkpoint).resolve().parent.parent.name or "model"
    num = max(1, round(seconds * rate))
    gen, dev = pick_engine(engine, device, model, n, log)
    history = None
    if prime is not None:
        try:
            audio = load_audio(Path(prime), rate)[-model.receptive_field :]
        except (AudioReadError, OSError) as exc:
            raise DataError(f"{prime}: cannot use as a prime ({exc})") from None
        history = encode(audio).unsqueeze(0).expand(n, -1)  # (n, P): every stream continues it
        log(f"continuing the last {len(audio) / rate:.3f} s of {prime}")
    log(f"synthesising {n} × {num / rate:g} s at {rate} Hz with the '{gen.name}' engine on {dev} "
        f"({checkpoint}, step {step})")
    from tqdm import tqdm

    seeds = [seed + i for i in range(n)]
    with tqdm(total=num, desc="synth", unit="sample", unit_scale=True, disable=not progress, leave=False) as bar:
        tick = time.perf_counter()
        codes = generate(gen, num, seeds, temperature, history=history, progress=bar.update)
        elapsed = time.perf_counter() - tick
    audio = decode(codes).numpy()  # (n, num)
    files = []
    for i, s in enumerate(seeds):
        path = Path(out) / f"{run_name}-step{step}-seed{s}.wav"
        write_wav(path, audio[i], rate)
        files.append(path)
    sps = n * num / elapsed
    result = SynthResult(files, sps, sps / rate, gen.name)
    log(f"wrote {len(files)} files to {out}: {sps:,.0f} samples/s over {n} streams, "
        f"{result.real_time_factor:.3f}× real time")
    return result


def describe_checkpoint(path: Path) -> dict:
    """What ``wavegen info`` shows: config, size, receptive field, training state."""
    model, payload = ckpt.load_model(path)
    config = payload["config"]
    rate = config["data"]["sample_rate"]
    rf = model.receptive_field
    return {
        "checkpoint": str(path),
        "step": payload.get("step"),
        "best_val_bits": payload.get("best_val_bits"),
        "parameters": model.parameter_count(),
        "receptive_field_samples": rf,
        "receptive_field_ms": round(1000 * rf / rate, 2),
        "dilations": model.dilations,
        "config": config,
    }

