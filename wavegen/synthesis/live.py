"""Synthesis heard as it is made: a checkpoint's streams, block by block, into a sink (a WAV or
raw stream on standard output, or the default output device), with the speed watched.

Generation runs in the caller's thread and the sink takes each block as it comes: a pipe's
player reads at its own pace (a full pipe holds generation back, so the speed is measured on
the time spent generating alone), a device player buffers (``audio.live_out.DevicePlayer``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

import numpy as np

from ..audio.features import MelSettings, mel_settings
from ..audio.live_out import DevicePlayer, RawStream, Sink, WavStream
from ..audio.mel_input import frames_from_audio, frames_from_npy, frames_from_raw
from ..generate.live import LiveStream, stream_audio
from ..generate.request import GenerationRequest
from .synth import load_checkpoint

logger = logging.getLogger(__name__)

DEFAULT_SECONDS = 2.0  # synth's length when none is asked for (and no mel features give one)
KEEP_UP_AFTER_S = 1.0  # audio generated before the speed is judged
SINKS = ("wav", "raw", "play")


@dataclass
class LiveResult:
    samples: int  # per stream, given to the sink
    seconds: float  # wall time, from asking for the first block to the sink's close
    rtf: float | None  # generation's speed (audio s per s spent generating, after the first block); None: one block
    gaps: int  # times playback ran dry before the end (a device; 0 for a pipe)
    closed: bool = False  # the pipe's reader went away before the end (generation stopped)


def play_stream(stream: LiveStream, sink: Sink, clock: Callable[[], float] = time.perf_counter) -> LiveResult:
    """Move ``stream``'s blocks into ``sink`` as they come, then close both. Warns once when, after ``KEEP_UP_AFTER_S`` of audio, generation is slower than real time, with
    what runs and what would keep up. A closed pipe (``BrokenPipeError``) ends it quietly:
    generation stops and ``closed`` is set. Any other exception (Ctrl-C too) aborts the sink and
    is raised."""
    rate, start = stream.sample_rate, clock()
    written = after_first = 0
    generating, warned, closed = 0.0, False, False
    rtf: float | None = None
    blocks = iter(stream)
    try:
        while True:
            asked = clock()
            block = next(blocks, None)
            if block is None:
                break
            if written:  # the first block carries the engine's start-up
                generating += clock() - asked
                after_first += block.shape[1]
                rtf = after_first / rate / generating if generating > 0 else None
            sink.write(block)
            written += block.shape[1]
            if not warned and rtf is not None and rtf < 1.0 and written >= KEEP_UP_AFTER_S * rate:
                logger.warning(too_slow(stream, rtf))
                warned = True
        sink.close()
    except BrokenPipeError:
        closed = True
    except BaseException:
        sink.close(abort=True)
        raise
    finally:
        stream.close()  # stops generation
    return LiveResult(written, clock() - start, rtf, int(getattr(sink, "gaps", 0)), closed)


def too_slow(stream: LiveStream, rtf: float) -> str:
    """The one line that says generation does not keep up with playback, and what would."""
    threads = f", {stream.threads} threads" if stream.threads else ""
    runs = f"the '{stream.engine}' engine ({stream.precision}{threads}) on {stream.device}"
    ideas = []
    if stream.device.startswith("cpu") and stream.precision != "int8":
        ideas.append("--precision int8" if stream.engine == "native" else "--engine native --precision int8")
    if len(stream.seeds) > 1:
        ideas.append(f"fewer streams than {len(stream.seeds)} (-n)")
    ideas.append("a smaller model (fewer layers or channels, as the tiny recipe)")
    keep_up = ", ".join(ideas[:-1]) + (" or " if len(ideas) > 1 else "") + ideas[-1]
    return (
        f"generation runs at {rtf:.2f}× real time with {runs}, slower than playback: "
        f"the sound will pause while it catches up; to keep up, try {keep_up}"
    )


def open_sink(to: str, stream: LiveStream, out: BinaryIO | None) -> Sink:
    """The sink ``to`` names for ``stream``: "wav" or "raw" into ``out``, "play" on the device."""
    channels = len(stream.seeds)
    if to == "play":
        return DevicePlayer(stream.sample_rate, channels, stream.samples)
    if out is None:
        raise ValueError(f"a {to} stream needs a file to write to")
    if to == "raw":
        return RawStream(out, channels)
    return WavStream(out, stream.sample_rate, channels, stream.samples)


def synthesize_live(
    checkpoint: Path,
    request: GenerationRequest,
    to: str = "wav",
    out: BinaryIO | None = None,
) -> LiveResult:
    """``request``'s streams from a checkpoint as they are made: a WAV (channel i = stream i)
    or raw 16-bit PCM into ``out`` (``to`` "wav" or "raw"), or played on the default output
    device ("play"). The length is ``DEFAULT_SECONDS`` unless asked (or given by mel features).
    Raises as ``synthesize`` does, and ``PlayerUnavailable`` for a device that cannot play."""
    if to not in SINKS:
        raise ValueError(f"unknown sink {to!r} (choose from {', '.join(SINKS)})")
    if request.seconds is None and request.mel is None:
        request = request.replace(seconds=DEFAULT_SECONDS)
    model, _, config, step = load_checkpoint(checkpoint)
    with stream_audio(model, config.data.sample_rate, str(checkpoint), request, step=step) as stream:
        result = play_stream(stream, open_sink(to, stream, out))
    _said(result, stream, to)
    return result


def _said(result: LiveResult, stream: LiveStream, to: str) -> None:
    """The last line: what was heard, how fast, and any gaps."""
    rate, n = stream.sample_rate, len(stream.seeds)
    heard = f"{n} × {result.samples / rate:g} s"
    speed = "" if result.rtf is None else f": {result.rtf:.2f}× real time"
    if result.closed:
        logger.info(f"stopped: standard output was closed after {heard}")
    elif to == "play":
        gaps = f", {result.gaps} gap{'s' if result.gaps != 1 else ''} (generation fell behind)" if result.gaps else ""
        logger.info(f"played {heard}{speed}{gaps}")
    else:
        logger.info(f"streamed {heard} to standard output{speed}")


def mel_frames_of(source: str | Path, settings: MelSettings, stdin: BinaryIO | None = None) -> Iterator[np.ndarray]:
    """A vocoder's input as log-mel frames, taken as they come: ``source`` "-" reads ``stdin``
    (a WAV stream, or raw float32 frames of ``settings.bands`` values), a .npy file holds
    frames, any other file is audio, analysed with ``settings``."""
    if str(source) == "-":
        if stdin is None:
            raise ValueError("standard input was not given")
        peek = getattr(stdin, "peek", None)
        head = peek(4)[:4] if peek is not None else b""
        return frames_from_audio(stdin, settings) if head == b"RIFF" else frames_from_raw(stdin, settings.bands)
    if Path(source).suffix.lower() == ".npy":
        return frames_from_npy(source, settings.bands)
    return frames_from_audio(source, settings)


def vocode_live(
    checkpoint: Path,
    source: str | Path,
    request: GenerationRequest,
    to: str = "wav",
    out: BinaryIO | None = None,
    stdin: BinaryIO | None = None,
) -> LiveResult:
    """A vocoder's audio as its input arrives (``mel_frames_of``): one block per mel frame, each
    as soon as the frames it depends on have come, into ``out`` or the device as
    ``synthesize_live`` does. Raises ``ConfigError`` for a model without mel features,
    ``DataError`` for input that cannot be read."""
    model, _, config, step = load_checkpoint(checkpoint)
    frames = mel_frames_of(source, mel_settings(model.config, config.data, checkpoint), stdin)
    hop = model.config.mel_hop
    with stream_audio(model, config.data.sample_rate, str(checkpoint), request, hop, frames, step) as stream:
        result = play_stream(stream, open_sink(to, stream, out))
    _said(result, stream, to)
    return result
