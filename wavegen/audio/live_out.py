"""Audio as it is generated, out: a WAV or raw stream into a pipe, or the default output device.

Every sink takes float32 blocks (channels, samples) in [-1, 1], one ``write`` each, and is
closed once. A pipe whose reader has gone (the player quit) shows as ``BrokenPipeError`` from
``write`` or ``close``; the file's descriptor then points at /dev/null, so that nothing later
(Python's flush of stdout at exit) raises again.
"""

from __future__ import annotations

import collections
import logging
import os
import struct
import threading
import time
from typing import Any, BinaryIO, Callable, Protocol

import numpy as np

from ..errors import PlayerUnavailable
from .io import pcm16

logger = logging.getLogger(__name__)

# The RIFF and data sizes of a WAV whose length is not known when its header is written: what
# ffmpeg's WAV muxer leaves in its placeholders when it cannot seek back (libavformat/wavenc.c),
# and what the players read as "until the end of the stream": ffmpeg/ffplay (libavformat/wavdec.c,
# "Ignoring maximum wav data size": data_end = INT64_MAX), aplay (alsa-utils aplay.c,
# test_wavefile: a data length of 0x7ffffffe or more is no count), sox (src/wav.c: 0xFFFFFFFF,
# "FFMPEG and madplay", is one of the lengths it ignores) and libsndfile (the data there is).
UNKNOWN_SIZE = 0xFFFFFFFF
HEADER_BYTES = 44


def wav_header(rate: int, channels: int, frames: int | None = None) -> bytes:
    """A 16-bit PCM WAV header for ``frames`` frames of ``channels`` (None, or more than 32 bits
    can count: ``UNKNOWN_SIZE``, read to the end of the stream)."""
    align = 2 * channels
    data = UNKNOWN_SIZE if frames is None else frames * align
    if data > UNKNOWN_SIZE - (HEADER_BYTES - 8):
        data = UNKNOWN_SIZE
    riff = UNKNOWN_SIZE if data == UNKNOWN_SIZE else data + HEADER_BYTES - 8
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * align, align, 16)  # PCM, 16 bits
    return (
        b"RIFF"
        + struct.pack("<I", riff)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", data)
    )


class Sink(Protocol):
    """Where live audio goes: ``write`` a block (channels, samples), then ``close`` once
    (``abort``: stop now, after an error or Ctrl-C, dropping what a player has not played)."""

    def write(self, block: np.ndarray) -> None: ...

    def close(self, abort: bool = False) -> None: ...


def let_go(file: BinaryIO) -> None:
    """Point ``file``'s descriptor at /dev/null, after its reader has gone: what is left in its
    buffer, flushed at exit, then goes nowhere instead of printing "Exception ignored ...
    BrokenPipeError" (the Python docs' advice for SIGPIPE, in the ``signal`` module's notes)."""
    try:
        fd = file.fileno()
    except (AttributeError, OSError, ValueError):  # not a file of the system's (a test's BytesIO)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


class RawStream:
    """Interleaved 16-bit little-endian PCM into ``file`` (``--format raw``), no header; each
    block is flushed, so that a player hears it at once."""

    def __init__(self, file: BinaryIO, channels: int) -> None:
        self.file, self.channels = file, channels
        self.started = self.gone = False

    def head(self) -> bytes:
        return b""

    def write(self, block: np.ndarray) -> None:
        if block.ndim != 2 or block.shape[0] != self.channels:
            raise ValueError(f"expected a block of {self.channels} channels (channels, samples), got {block.shape}")
        self._send(pcm16(block))

    def close(self, abort: bool = False) -> None:
        if self.gone:
            return
        try:
            self._send(b"")  # the header of an empty stream, and a flush
        except BrokenPipeError:
            if not abort:
                raise

    def _send(self, data: bytes) -> None:
        if self.gone:
            raise BrokenPipeError("the reader has gone")
        if not self.started:
            data, self.started = self.head() + data, True
        try:
            self.file.write(data)
            self.file.flush()
        except BrokenPipeError:
            self.gone = True
            let_go(self.file)
            raise


class WavStream(RawStream):
    """A 16-bit PCM WAV into ``file``, as it is made: channel i is stream i. ``frames`` (per
    channel), when known, goes into the header; else its sizes say "until the end"
    (``UNKNOWN_SIZE``), which players of piped WAV accept."""

    def __init__(self, file: BinaryIO, rate: int, channels: int, frames: int | None = None) -> None:
        super().__init__(file, channels)
        self.rate, self.frames = rate, frames

    def head(self) -> bytes:
        return wav_header(self.rate, self.channels, self.frames)


def load_sounddevice() -> Any:
    """The ``sounddevice`` module (imported here only: an optional package), or
    ``PlayerUnavailable`` saying how to get it or what to do instead."""
    try:
        import sounddevice
    except ImportError:
        raise PlayerUnavailable(
            "playing needs the sounddevice package: pip install sounddevice (in a checkout: pip install -e '.[live]'), "
            "or pipe --out - into a player (| aplay, | ffplay -nodisp -)"
        ) from None
    except OSError as exc:  # the package is there, PortAudio's library is not
        raise PlayerUnavailable(
            f"cannot play: {_one_line(exc)}; install PortAudio (libportaudio2), or pipe --out - into a player"
        ) from None
    return sounddevice


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


MIN_PREFILL_S = 0.5  # buffered before playing when generation keeps up (jitter)
SLOW_PREFILL_S = 5.0  # when it does not and the length is unknown: gaps will come, fewer


def prefill_seconds(rtf: float, total_s: float | None, block_s: float) -> float:
    """Seconds of audio to buffer before playback starts, for generation at ``rtf`` × real time
    of a stream ``total_s`` long (None: unknown) in blocks of ``block_s``. Playing from time 0
    with B seconds buffered while the rest arrives at ``rtf`` s per s, second t is there in time
    while B + rtf·t >= t up to the end: B >= (1 - rtf)·total (with a tenth more, and a cushion)."""
    cushion = max(MIN_PREFILL_S, 2 * block_s)
    if rtf >= 1.0:
        return cushion
    if total_s is None:
        return max(cushion, SLOW_PREFILL_S)
    return min(total_s, 1.1 * (1.0 - rtf) * total_s + cushion)


class DevicePlayer:
    """Plays on the default output device (``sounddevice``, PortAudio) what is written, a
    block (channels, samples) at a time: PortAudio's callback pulls from a queue, and playback
    starts once enough is buffered (``prefill_seconds``, at the speed measured between writes;
    all of it when the writes end first). ``gaps`` counts the times playback ran dry before the
    end. ``frames``: the length per channel, when known. Raises ``PlayerUnavailable`` (one line)
    without the package, PortAudio or an output device."""

    def __init__(
        self,
        rate: int,
        channels: int,
        frames: int | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.sd = load_sounddevice()
        self.rate, self.channels, self.frames, self.clock = rate, channels, frames, clock
        self.queue: collections.deque[np.ndarray] = collections.deque()  # (n, channels) frames each
        self.offset = 0  # frames of the queue's first block already played
        self.lock = threading.Lock()
        self.buffered = self.received = self.first_frames = 0
        self.first_at: float | None = None
        self.rtf: float | None = None  # generation's speed, × real time, as measured so far
        self.started = self.ended = self.dry = False
        self.drained = threading.Event()
        self.gaps = 0
        try:
            self.stream = self.sd.OutputStream(
                samplerate=rate, channels=channels, dtype="float32", callback=self._callback, latency="high"
            )
        except (self.sd.PortAudioError, ValueError, OSError) as exc:
            raise PlayerUnavailable(f"cannot play on the default output device: {_one_line(exc)}") from None

    def write(self, block: np.ndarray) -> None:
        frames = np.ascontiguousarray(np.clip(block, -1.0, 1.0).T, dtype=np.float32)  # (n, channels): interleaved
        now = self.clock()
        with self.lock:
            self.queue.append(frames)
            self.buffered += len(frames)
        self.received += len(frames)
        if self.first_at is None:  # the first block carries the start-up: speed is measured after it
            self.first_at, self.first_frames = now, len(frames)
        if not self.started and self._ready(now, len(frames)):
            self._start()

    def _ready(self, now: float, block: int) -> bool:
        if self.frames is not None and self.received >= self.frames:
            return True
        assert self.first_at is not None
        after = self.received - self.first_frames
        if not after or now <= self.first_at:
            return False
        rtf = after / self.rate / (now - self.first_at)
        total = None if self.frames is None else self.frames / self.rate
        self.rtf = rtf
        return self.buffered / self.rate >= prefill_seconds(rtf, total, block / self.rate)

    def _start(self) -> None:
        if self.rtf is not None and self.rtf < 1.0:
            logger.warning(
                f"playing after buffering {self.buffered / self.rate:.1f} s (generation is slower than playback)"
            )
        try:
            self.stream.start()
        except (self.sd.PortAudioError, OSError) as exc:
            raise PlayerUnavailable(f"cannot play on the default output device: {_one_line(exc)}") from None
        self.started = True

    def _callback(self, outdata: np.ndarray, count: int, time_info: object, status: object) -> None:
        """PortAudio's thread: the next ``count`` frames into ``outdata``, silence where there are none."""
        with self.lock:
            filled = 0
            while filled < count and self.queue:
                head = self.queue[0]
                take = min(count - filled, len(head) - self.offset)
                outdata[filled : filled + take] = head[self.offset : self.offset + take]
                filled, self.offset = filled + take, self.offset + take
                if self.offset == len(head):
                    self.queue.popleft()
                    self.offset = 0
            self.buffered -= filled
            outdata[filled:] = 0
            if filled == count:
                self.dry = False
            elif self.ended:
                self.drained.set()
            elif not self.dry:  # ran dry before the end: a gap (counted once however long)
                self.gaps, self.dry = self.gaps + 1, True

    def close(self, abort: bool = False) -> None:
        """Play what is buffered to its end (``abort``: stop now), then let the device go."""
        if self.ended:  # closed already
            return
        with self.lock:
            self.ended = True
            if not self.buffered:  # played already (stop() lets PortAudio's own buffers play out)
                self.drained.set()
        try:
            if not abort and not self.started and self.received:
                self._start()  # all of it is buffered
            if self.started and not abort:
                self.drained.wait(timeout=self.buffered / self.rate + 2.0)
                self.stream.stop()
            elif self.started:
                self.stream.abort()
        finally:
            self.stream.close()
