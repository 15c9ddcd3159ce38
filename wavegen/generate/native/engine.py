"""``NativeEngine``: the C++ sampling loop driven from Python.

``NativeEngine`` runs at a precision (``quantized.PRECISIONS``): fp32, bf16 (the weights of
``quantized.bf16_model``, stored as bf16) or int8 (``int8.Int8WaveNet``'s quantised weights as int8
panels, ``pack_int8``). It packs a model's weights once into the panel layout the kernels read and
then offers the engine calls of ``sampling.py`` (reset/logits/append) plus ``sample_steps``, which
generates many samples per call with the sampling done inside the loop. A conditioned model's
terms reach the C++ side as ``terms.TermParts`` has them, repacked into the conv panels'
column order (``pack_terms``): the labels' fixed term per stream, and the mel features' terms at
the frame rate, a block of frames at a time, which the kernel upsamples itself.
"""

from __future__ import annotations

import ctypes
import logging
import time
import weakref

import numpy as np
import torch

from ...model.network import WaveNet
from ..int8 import EngineTerms, Int8WaveNet
from ..quantized import bf16_model, check_precision
from ..state import check_conditioning, past_block_inputs, ring_of
from ..terms import FrameBlocks, TermParts
from .abi import PRECISION_CODES, Cond, load
from .packing import pack, pack_int8, pack_terms, term_width
from .toolchain import NativeUnavailable
from .tuning import LayoutTuner, default_threads

logger = logging.getLogger(__name__)

MAX_TERM_FRAMES = 256  # frames of frame-rate terms per block (and at most terms.TERM_BYTES)


def _ptr(array: np.ndarray | torch.Tensor) -> int:
    return array.data_ptr() if isinstance(array, torch.Tensor) else array.ctypes.data


class NativeEngine:
    """The C++ engine: same calls as ``sampling.TorchEngine``, plus ``sample_steps``."""

    name = "native"

    def __init__(
        self,
        model: WaveNet,
        device: torch.device | str = "cpu",
        threads: int | None = None,
        precision: str = "fp32",
        *,
        lib: ctypes.CDLL | None = None,
    ) -> None:
        """``lib``: the library to run (``abi.open_library``, e.g. a sanitizer build), else the
        one ``load`` builds and keeps."""
        self.precision = check_precision(precision)
        if torch.device(device).type != "cpu":
            raise NativeUnavailable("the native engine runs on the CPU only (use --device cpu)")
        self.lib = lib or load()
        self.model = model.cpu().eval()
        self.int8 = None
        if precision == "bf16":  # the fp32 engine on rounded weights, read as bf16
            self.model = bf16_model(self.model)
        elif precision == "int8":
            self.int8 = Int8WaveNet(self.model)
        self.rf = model.receptive_field
        self.threads = threads or default_threads()
        self.fixed_layout: tuple[int, int] | None = None  # set by set_threads(.., group_size)
        self.layout = (self.threads, 0)  # what wg_create set: the C++ side picks groups by batch
        self.tuners: dict[int, LayoutTuner] = {}  # per batch size
        if self.int8 is not None:
            shape, weights, qweights = pack_int8(self.int8)
        else:
            (shape, weights), qweights = pack(self.model), np.zeros(0, np.int8)
        error = ctypes.create_string_buffer(512)
        weights_args = (_ptr(shape), len(shape), _ptr(weights), weights.size)
        handle = self.lib.wg_create(
            *weights_args, self.threads, PRECISION_CODES[precision], _ptr(qweights), qweights.size, error, len(error)
        )
        if not handle:
            raise NativeUnavailable(f"engine setup failed: {error.value.decode()}")
        self.handle = handle
        logger.debug(f"native engine: {precision} weights, up to {self.threads} threads")
        self._close = weakref.finalize(self, self.lib.wg_destroy, handle)
        self._silence: tuple[np.ndarray, np.ndarray, int] | None = None
        self.batch = 0
        self.n = 0
        self.fixed_terms: torch.Tensor | None = None  # (B, L·2·G8) labels' terms, packed
        self.frame_blocks: FrameBlocks | None = None  # mel terms a block of frames at a time
        self.kernel: torch.Tensor | None = None  # (3, hop) the mel upsampling's weights

    def set_threads(self, threads: int, group_size: int = 0) -> None:
        """Use up to ``threads`` threads. ``group_size`` fixes how many share each stream;
        0 lets ``sample_steps`` find the fastest layout by timing (and keep checking)."""
        self.threads = threads
        if threads == 1:
            group_size = 1
        self.fixed_layout = (threads, group_size) if group_size else None
        self.tuners.clear()
        self._use((threads, group_size))

    def _use(self, layout: tuple[int, int]) -> None:
        if layout != self.layout:
            self.lib.wg_set_threads(self.handle, *layout)
            self.layout = layout

    @torch.inference_mode()
    def reset(self, batch: int, history: torch.Tensor | None = None, conditioning=None) -> None:
        """Fill the rings from a parallel forward pass over the history (silence by default),
        conditioned on ``conditioning`` (a ``conditioning.Conditioning``) where the model is."""
        check_conditioning(self.model, batch, conditioning)
        if history is None and conditioning is None:  # the same for every call: computed on the first
            self._silence = self._silence or self._initial_state(1, None)
            rings, codes, t = self._silence
        else:
            rings, codes, t = self._initial_state(batch, history, conditioning)
        error = ctypes.create_string_buffer(512)
        if self.lib.wg_reset(self.handle, batch, _ptr(rings), _ptr(codes), codes.shape[1], t, error, len(error)):
            raise MemoryError(f"native engine: {error.value.decode()}")
        self.batch = batch
        self.n = 0  # generation time of the next sample (the conditioning's time)
        self.fixed_terms = self.frame_blocks = self.kernel = None
        if conditioning is not None:
            parts = TermParts(conditioning)
            if parts.fixed is not None:  # (B, L·2·G8)
                self.fixed_terms = pack_terms(parts.fixed.cpu()[:, None])[:, 0]
            if parts.kernel is not None:  # mel terms: blocks of (B, rows, L·2·G8)
                width = term_width(self.model)
                self.kernel = parts.kernel.cpu().contiguous()
                self.frame_blocks = FrameBlocks(
                    parts, lambda frames: pack_terms(frames.cpu()), width, max_frames=MAX_TERM_FRAMES
                )

    def _cond(self, n: int) -> tuple[Cond | None, int]:
        """The conditioning from generation time ``n`` on, as wg_logits/wg_generate take it, and
        for how many steps it serves (the tensors it points into stay referenced by the engine
        until the next call)."""
        if self.fixed_terms is None and self.frame_blocks is None:
            return None, 2**31 - 1
        cond, steps = Cond(time=n), 2**31 - 1
        if self.fixed_terms is not None:
            cond.fixed, cond.fixed_stream = self.fixed_terms.data_ptr(), self.fixed_terms.stride(0)
        if self.frame_blocks is not None and self.kernel is not None:  # (set together, by reset)
            block, first, steps = self.frame_blocks.at(n)
            cond.frames, cond.frame_stream, cond.frame_step = block.data_ptr(), block.stride(0), block.stride(1)
            cond.first_frame, cond.frame_rows = first, block.shape[1]
            cond.kernel, cond.hop = self.kernel.data_ptr(), self.kernel.shape[1]
        return cond, steps

    def _initial_state(
        self, batch: int, history: torch.Tensor | None, conditioning=None
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """What ``wg_reset`` reads: every layer's ring (L, b, R) flattened in layer order, the
        code ring (k_in, b) and the time of the next sample; b is 1 when all streams share it."""
        if self.int8 is not None:  # the past as the int8 step computes it
            terms = (
                None if conditioning is None else (lambda start, count: self.engine_terms(conditioning, start, count))
            )
            past, inputs = self.int8.past_block_inputs(batch, history, terms)
        else:
            past, inputs = past_block_inputs(self.model, batch, history, "cpu", conditioning)
        t = past.shape[1]
        k = self.model.config.kernel_size
        rings = [ring_of(x, (k - 1) * block.dilation, t).reshape(-1) for x, block in zip(inputs, self.model.blocks)]
        codes = ring_of(past[:, None, :], self.model.config.input_kernel_size, t)[:, :, 0]  # (k_in, b)
        return (
            np.ascontiguousarray(torch.cat(rings).float().numpy()),
            np.ascontiguousarray(codes.numpy(), np.int32),
            t,
        )

    def engine_terms(self, conditioning, start: int, count: int):
        """``int8.EngineTerms`` of times ``start .. start + count - 1``, made from the frame
        blocks this engine reads."""
        width = term_width(self.model)
        return EngineTerms(conditioning, start, count, width, MAX_TERM_FRAMES)

    def logits(self) -> torch.Tensor:
        out = torch.empty(self.batch, self.model.config.classes, dtype=torch.float32)
        if not self.batch:
            raise RuntimeError("native engine: logits() before reset()")
        cond, _ = self._cond(self.n)
        if self.lib.wg_logits(self.handle, out.data_ptr(), cond):
            raise RuntimeError("native engine: the conditioning does not cover the step")
        return out

    def append(self, codes: torch.Tensor) -> None:
        codes = np.ascontiguousarray(codes.cpu().numpy(), np.int32)
        if self.lib.wg_append(self.handle, _ptr(codes)):
            raise RuntimeError("native engine: append() before reset()")
        self.n += 1

    def sample_steps(
        self,
        out: torch.Tensor,
        start: int,
        steps: int,
        seeds: list[int],
        temperatures: np.ndarray,
        index: int | None = None,
    ) -> None:
        """Generate ``steps`` samples into ``out[:, start:start + steps]`` ((B, N) uint8, contiguous),
        drawing the uniforms of sample indices ``index ..`` (default ``start``) of each stream."""
        drawn = start if index is None else index
        assert out.dtype == torch.uint8 and out.is_contiguous() and out.shape[0] == self.batch
        assert 0 <= start and start + steps <= out.shape[1], "steps beyond the end of out"
        seeds_u64 = np.array([int(s) % 2**64 for s in seeds], np.uint64)
        temps = np.ascontiguousarray(temperatures, np.float64)
        tuner = None
        if self.fixed_layout is None and self.threads > 1:
            tuner = self.tuners.setdefault(self.batch, LayoutTuner(self.threads, self.batch))
        done = 0
        while done < steps:
            # A call never runs past the block of conditioning terms it is handed.
            cond, available = self._cond(self.n)
            count = min(steps - done, available)
            if tuner:
                layout, count = tuner.next(count)
                assert 0 < count <= min(steps - done, available)
                self._use(layout)
            tick = time.perf_counter()
            if self.lib.wg_generate(
                self.handle,
                count,
                _ptr(seeds_u64),
                _ptr(temps),
                drawn + done,
                out.data_ptr() + start + done,
                out.shape[1],
                cond,
            ):
                raise RuntimeError("native engine: the conditioning does not cover the steps")
            if tuner:
                tuner.record(layout, count, time.perf_counter() - tick)
            done += count
            self.n += count
