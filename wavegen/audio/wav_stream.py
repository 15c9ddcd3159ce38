"""A WAV file read as it arrives (stdin, a pipe): its header, then its samples a piece at a time.

``soundfile`` needs a file it can seek in; a stream is read here instead, by the RIFF layout:
PCM of 8, 16, 24 or 32 bits and IEEE float of 32 or 64 bits (also as WAVE_FORMAT_EXTENSIBLE),
scaled to [-1, 1) as soundfile scales them, channels averaged to mono and clipped to [-1, 1] as
``io.read_recording`` does, and resampled (soxr's high quality, as ``read_recording``) when the
stream's rate is not the one asked for. A data chunk whose size is unknown (0 or 0xFFFFFFFF, as
programs writing to a pipe leave it) runs to the end of the stream.
"""

from __future__ import annotations

import struct
from typing import Callable, Iterator

import numpy as np

from ..errors import DataError

PIECE = 1 << 16  # bytes asked at a time (a pipe gives what it has)
PCM, FLOAT, EXTENSIBLE = 1, 3, 0xFFFE
UNKNOWN_SIZES = (0, 0xFFFFFFFF)


class WavPipeReader:
    """Mono float32 pieces (samples,) of a WAV stream, at ``rate`` Hz, each as soon as its bytes
    have arrived. ``read(n)`` returns what the stream has, up to n bytes (b"" at its end). The
    header is read when this is made: ``DataError`` naming ``name`` for a stream that is not a
    WAV this reads."""

    def __init__(self, read: Callable[[int], bytes], name: str, rate: int) -> None:
        self.read, self.name, self.rate = read, name, rate
        self.pending = b""
        fields, self.remaining = self._header()
        self.encoding, self.channels, self.source_rate, self.bits = fields
        self.align = self.channels * self.bits // 8

    def __iter__(self) -> Iterator[np.ndarray]:
        resampler = None
        if self.source_rate != self.rate:
            import soxr

            resampler = soxr.ResampleStream(self.source_rate, self.rate, 1, dtype="float32", quality="HQ")
        carry, chunk = b"", self._limit(self.pending or self._more())
        while chunk:
            data = carry + chunk
            whole = len(data) - len(data) % self.align
            carry = data[whole:]  # (a partial sample frame: the rest comes next; at the end it is dropped)
            mono = self._mono(data[:whole])
            if resampler is not None:
                mono = resampler.resample_chunk(mono)
            if len(mono):
                yield np.clip(mono, -1.0, 1.0)
            chunk = self._limit(self._more())
        if resampler is not None:  # the resampler's last samples
            tail = resampler.resample_chunk(np.zeros(0, np.float32), last=True)
            if len(tail):
                yield np.clip(tail, -1.0, 1.0)

    def _more(self) -> bytes:
        """What the stream has next (b"" at its end, or once the data chunk is read)."""
        return self.read(PIECE) if self.remaining != 0 else b""

    def _limit(self, data: bytes) -> bytes:
        """``data`` cut to what is left of the data chunk."""
        if self.remaining is None:
            return data
        data = data[: self.remaining]
        self.remaining -= len(data)
        return data

    def _mono(self, data: bytes) -> np.ndarray:
        """Whole sample frames as mono float32 (samples,): the channels' mean."""
        samples = self._decode(data).reshape(-1, self.channels)  # (samples, channels)
        return samples[:, 0].copy() if self.channels == 1 else samples.mean(axis=1, dtype=np.float32)

    def _decode(self, data: bytes) -> np.ndarray:
        """Samples as float32 in [-1, 1), scaled as soundfile scales them."""
        if self.encoding == FLOAT:
            return np.frombuffer(data, "<f4" if self.bits == 32 else "<f8").astype(np.float32)
        if self.bits == 8:  # unsigned
            return (np.frombuffer(data, np.uint8).astype(np.float32) - 128) / 128
        if self.bits == 24:  # three bytes, little-endian: placed in the top of an int32
            triples = np.frombuffer(data, np.uint8).reshape(-1, 3).astype(np.int32)
            value = (triples[:, 0] << 8) | (triples[:, 1] << 16) | (triples[:, 2] << 24)
            return value.astype(np.float32) / 2**31
        kind = "<i2" if self.bits == 16 else "<i4"
        return np.frombuffer(data, kind).astype(np.float32) / 2.0 ** (self.bits - 1)

    def _take(self, count: int) -> bytes:
        """Exactly ``count`` bytes (waiting for them); ``DataError`` at an early end."""
        while len(self.pending) < count:
            more = self.read(max(PIECE, count - len(self.pending)))
            if not more:
                raise DataError(f"{self.name}: the WAV stream ends in its header")
            self.pending += more
        taken, self.pending = self.pending[:count], self.pending[count:]
        return taken

    def _header(self) -> tuple[tuple[int, int, int, int], int | None]:
        """((encoding, channels, rate, bits), data bytes or None: to the end), read up to the data."""
        riff, _, wave = struct.unpack("<4sI4s", self._take(12))
        if riff != b"RIFF" or wave != b"WAVE":
            raise DataError(f"{self.name}: not a WAV stream (a stream is read as WAV: RIFF/WAVE)")
        fields = None
        while True:
            kind, size = struct.unpack("<4sI", self._take(8))
            if kind == b"data":
                if fields is None:
                    raise DataError(f"{self.name}: the WAV stream has no format chunk before its data")
                return fields, None if size in UNKNOWN_SIZES else size
            body = self._take(size + size % 2)  # (chunks are padded to an even size)
            if kind == b"fmt ":
                fields = self._format(body)

    def _format(self, body: bytes) -> tuple[int, int, int, int]:
        encoding, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
        if encoding == EXTENSIBLE and len(body) >= 26:
            encoding = struct.unpack("<H", body[24:26])[0]  # the sub-format GUID's first field
        readable = (encoding == PCM and bits in (8, 16, 24, 32)) or (encoding == FLOAT and bits in (32, 64))
        if not readable or channels < 1 or rate < 1:
            raise DataError(
                f"{self.name}: a WAV stream of format {encoding}, {bits} bits, {channels} channels cannot be "
                "read as it comes (PCM 8/16/24/32 bits or float 32/64 can); give a file instead"
            )
        return encoding, channels, rate, bits
