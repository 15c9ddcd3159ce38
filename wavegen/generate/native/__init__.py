"""The ``native`` engine: the C++ sampling loop in ``wavenet.cpp`` beside this file, built on
first use.

Nothing here runs when ``wavegen`` is imported. ``load()`` compiles the source with the system's
C++ compiler (``$CXX``, else ``g++``, ``c++`` or ``clang++``) the first time it is needed and
caches the library in ``$WAVEGEN_CACHE``, else ``$XDG_CACHE_HOME/wavegen``, else
``~/.cache/wavegen``, under a name that hashes the source, the compiler and what
``-march=native`` means on this CPU (a library built for one CPU is never loaded on another).
The name does not depend on the terminal or the language: the compiler is asked with a fixed
``COLUMNS`` and the C locale. Concurrent first builds are serialised by a lock file in the cache
folder (``fcntl.flock``), so a second process waits and loads what the first built; each build
still compiles to its own temporary file and renames it into place.

``NativeEngine`` runs at a precision (``quantized.PRECISIONS``): fp32, bf16 (the weights of
``quantized.bf16_model``, stored as bf16) or int8 (``int8.Int8WaveNet``'s quantised weights as int8
panels, ``pack_int8``). ``$WAVEGEN_NATIVE_FLAGS`` adds compiler flags, e.g. to build the AVX2
kernels on a CPU with VNNI (the tests check each kernel that way).

``NativeEngine`` packs a model's weights once into the panel layout the kernels read and then
offers the engine calls of ``sampling.py`` (reset/logits/append) plus ``sample_steps``, which
generates many samples per call with the sampling done inside the loop. A conditioned model's
terms reach the C++ side as ``engine_state.TermParts`` has them, repacked into the conv panels'
column order (``pack_terms``): the labels' fixed term per stream, and the mel features' terms at
the frame rate, a block of frames at a time, which the kernel upsamples itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import time
import uuid
import weakref
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from ...errors import EngineUnavailable, WavegenError
from ...model.network import WaveNet

SOURCE = Path(__file__).resolve().parent / "wavenet.cpp"
FLAGS = ["-O3", "-march=native", "-std=c++20", "-shared", "-fPIC", "-pthread"]
ABI_VERSION = 3
PRECISION_CODES = {"fp32": 0, "bf16": 1, "int8": 2}  # wavenet.cpp: enum Precision
PANEL = 16  # columns per packed panel (wavenet.cpp: kPanel)
MAX_TERM_FRAMES = 256  # frames of frame-rate terms per block (and at most engine_state.TERM_BYTES)


# The native engine cannot be built or used here: every engine's one error, by its old name.
NativeUnavailable = EngineUnavailable


def cache_dir() -> Path:
    """Where built libraries are kept: ``$WAVEGEN_CACHE``, ``$XDG_CACHE_HOME/wavegen`` or
    ``~/.cache/wavegen``."""
    if os.environ.get("WAVEGEN_CACHE"):
        return Path(os.environ["WAVEGEN_CACHE"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "wavegen"
    try:
        return Path.home() / ".cache" / "wavegen"
    except RuntimeError:  # no home directory to be found
        raise NativeUnavailable("no cache folder for the build (set WAVEGEN_CACHE)") from None


def find_compiler() -> str:
    """The C++ compiler to use: ``$CXX`` if set, else the first of g++, c++, clang++ on PATH."""
    wanted = os.environ.get("CXX")
    if wanted:
        path = shutil.which(wanted)
        if not path:
            raise NativeUnavailable(f"CXX={wanted} not found")
        return path
    for name in ("g++", "c++", "clang++"):
        path = shutil.which(name)
        if path:
            return path
    raise NativeUnavailable("no C++ compiler found (install g++ or set CXX)")


# GCC wraps --help output at $COLUMNS (a tmux pane and a plain shell would name two libraries)
# and translates it by locale: what the fingerprint reads must not depend on either.
STABLE_ENV = {"COLUMNS": "1000", "LC_ALL": "C", "LANG": "C", "LANGUAGE": "C"}


def _output(command: list[str]) -> str:
    """What ``command`` prints (stdout and stderr) under STABLE_ENV, or "" when it fails."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, env={**os.environ, **STABLE_ENV})
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout + done.stderr if done.returncode == 0 else ""


def flags() -> list[str]:
    """The compiler flags: FLAGS, then ``$WAVEGEN_NATIVE_FLAGS`` (split on spaces), e.g.
    ``-mno-avx512vnni -mno-avxvnni`` to build the AVX2 kernels on a CPU that has VNNI."""
    return FLAGS + os.environ.get("WAVEGEN_NATIVE_FLAGS", "").split()


def fingerprint(compiler: str) -> str:
    """Hash of everything the built library depends on: source, flags, compiler, target CPU."""
    digest = hashlib.sha256()
    digest.update(SOURCE.read_bytes())
    digest.update(" ".join(flags()).encode())
    digest.update(_output([compiler, "--version"]).encode())
    # What -march=native resolves to here: GCC lists the enabled target options; Clang prints
    # the CPU and feature flags it passes to its compiler proper.
    extra = flags()[len(FLAGS) :]
    target = _output([compiler, "-march=native", *extra, "-Q", "--help=target"])
    if not target:
        target = _output([compiler, "-march=native", *extra, "-###", "-E", "-x", "c++", os.devnull])
    digest.update(target.encode())
    digest.update(platform.machine().encode())
    return digest.hexdigest()[:20]


def build(log: Callable[[str], None] | None = None) -> Path:
    """Compile the library unless a matching one is cached; return its path."""
    if not SOURCE.is_file():
        raise NativeUnavailable(f"source missing: {SOURCE}")
    compiler = find_compiler()
    folder = cache_dir()
    target = folder / f"wavenet-{fingerprint(compiler)}.so"
    if target.is_file():
        return target
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NativeUnavailable(f"cannot create the cache folder {folder} ({exc.strerror or exc})") from None
    with _build_lock(folder):
        if target.is_file():  # built by another process while this one waited for the lock
            return target
        _compile(compiler, target, log)
    return target


@contextlib.contextmanager
def _build_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder/build.lock`` (released when the file closes, or the
    holder dies). Where nothing can be locked (no fcntl on Windows, no locks on some network
    filesystems), the atomic rename still keeps concurrent builds safe, only wasteful."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    try:
        handle = open(folder / "build.lock", "a+b")
    except OSError as exc:
        raise NativeUnavailable(f"cannot lock the cache folder {folder} ({exc.strerror or exc})") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError:
            pass
        yield


def _compile(compiler: str, target: Path, log: Callable[[str], None] | None) -> None:
    """Compile SOURCE into ``target`` through a temporary file beside it."""
    folder = target.parent
    if log:
        log(f"building the native engine with {Path(compiler).name} (once per machine, a few seconds)")
    temporary = folder / f".wavenet-{os.getpid()}-{uuid.uuid4().hex[:8]}.so"
    try:
        done = subprocess.run(
            [compiler, *flags(), "-o", str(temporary), str(SOURCE)],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, **STABLE_ENV},
        )
        if done.returncode != 0:
            first = next((line for line in done.stderr.splitlines() if "error" in line), done.stderr.strip())
            raise NativeUnavailable(f"compiling {SOURCE.name} failed: {first[:300]}")
        os.replace(temporary, target)  # atomic: a concurrent build replaces it with the same bytes
    except (OSError, subprocess.SubprocessError) as exc:
        raise NativeUnavailable(f"compiling {SOURCE.name} failed ({exc})") from None
    finally:
        temporary.unlink(missing_ok=True)


class Cond(ctypes.Structure):
    """wavenet.cpp's Cond: the conditioning of a call (pointers into tensors the caller keeps)."""

    _fields_ = [
        ("fixed", ctypes.c_void_p),
        ("fixed_stream", ctypes.c_int64),
        ("frames", ctypes.c_void_p),
        ("frame_stream", ctypes.c_int64),
        ("frame_step", ctypes.c_int64),
        ("first_frame", ctypes.c_int64),
        ("frame_rows", ctypes.c_int64),
        ("kernel", ctypes.c_void_p),
        ("hop", ctypes.c_int64),
        ("time", ctypes.c_int64),
    ]


def _bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    p, i32, i64, u64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_uint64
    cond = ctypes.POINTER(Cond)
    signatures = {
        "wg_abi_version": ([], i32),
        "wg_dot_kind": ([], ctypes.c_char_p),
        "wg_create": ([p, i32, p, i64, i32, i32, p, i64, p, i32], p),
        "wg_destroy": ([p], None),
        "wg_set_threads": ([p, i32, i32], i32),
        "wg_reset": ([p, i32, p, p, i32, i64, p, i32], i32),
        "wg_logits": ([p, p, cond], i32),
        "wg_append": ([p, p], i32),
        "wg_generate": ([p, i32, p, p, u64, p, i64, cond], i32),
        "wg_uniform": ([u64, u64], ctypes.c_double),
    }
    for name, (args, result) in signatures.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, result
    return lib


_loaded: dict[str, ctypes.CDLL | NativeUnavailable] = {}


def load(log: Callable[[str], None] | None = None) -> ctypes.CDLL:
    """Build if needed and load the library (once per process); raises ``NativeUnavailable``."""
    if "lib" not in _loaded:
        try:
            path = build(log)
            try:
                lib = _bind(ctypes.CDLL(str(path)))
            except (OSError, AttributeError) as exc:
                raise NativeUnavailable(f"cannot load {path} ({exc})") from None
            if lib.wg_abi_version() != ABI_VERSION:
                raise NativeUnavailable(f"{path} has ABI {lib.wg_abi_version()}, expected {ABI_VERSION}")
            _loaded["lib"] = lib
        except NativeUnavailable as exc:
            _loaded["lib"] = exc
    found = _loaded["lib"]
    if isinstance(found, NativeUnavailable):
        raise found
    return found


def default_threads() -> int:
    """``$WAVEGEN_THREADS`` if set, else the cores this process may run on."""
    wanted = os.environ.get("WAVEGEN_THREADS")
    if wanted:
        if not wanted.strip().isdigit() or int(wanted) < 1:
            raise WavegenError(f"WAVEGEN_THREADS={wanted}: expected a number of threads >= 1")
        return int(wanted)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# ---------------------------------------------------------------------------------------------
# Weight packing: the order and layout wavenet.cpp's Engine constructor reads
# ---------------------------------------------------------------------------------------------


def _ceil(x: int, m: int) -> int:
    return -(-x // m) * m


def _panels(matrix: np.ndarray, rows: int | None = None) -> np.ndarray:
    """(K, N) -> (ceil(N/16), K', 16) column panels, zero-padded to K' = rows rows."""
    k, n = matrix.shape
    padded = np.zeros((rows or k, _ceil(n, PANEL)), np.float32)
    padded[:k, :n] = matrix
    return padded.reshape(padded.shape[0], -1, PANEL).transpose(1, 0, 2)


def _pad(vector: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros(size, np.float32)
    out[: len(vector)] = vector
    return out


def pack_terms(bias: torch.Tensor) -> torch.Tensor:
    """Conditioning terms (B, n, L, 2G) (n steps or frames) -> (B, n, L·2·G8) float32, contiguous,
    each layer's channels in the order of the conv panels (see ``pack``): [filter 8p..8p+7 |
    gate 8p..8p+7] for p = 0 .. G8/8 - 1, channels G .. G8 - 1 zero."""
    batch, steps, layers, channels = bias.shape
    gate = channels // 2
    g8 = _ceil(gate, 8)
    halves = bias.float().reshape(batch, steps, layers, 2, gate)
    if g8 != gate:
        halves = torch.nn.functional.pad(halves, (0, g8 - gate))
    panels = halves.reshape(batch, steps, layers, 2, g8 // 8, 8).transpose(3, 4)
    return panels.reshape(batch, steps, layers * 2 * g8).contiguous()


def pack(model: WaveNet) -> tuple[np.ndarray, np.ndarray]:
    """The shape array and the flat float32 weights for ``wg_create``."""
    c = model.config
    R, G, S, C = c.residual_channels, c.gate_channels, c.skip_channels, c.classes
    G8, R16, S16, C16 = _ceil(G, 8), _ceil(R, PANEL), _ceil(S, PANEL), _ceil(C, PANEL)

    def np32(t: torch.Tensor) -> np.ndarray:
        return t.detach().float().cpu().numpy()

    blocks: list[np.ndarray] = []
    w = np32(model.input.weight)  # (R, C, k_in); tap i reads t - (k_in - i)
    blocks += [w.transpose(2, 1, 0), np32(model.input.bias)]  # (k_in, C, R), (R)
    skip_bias = np.zeros(S16, np.float32)
    for block in model.blocks:
        cw = np32(block.conv.weight)  # (2G, R, k); tap i reads t - (k-1-i)·d
        k = cw.shape[2]
        conv = cw.transpose(2, 1, 0).reshape(k * R, 2 * G)  # rows: taps oldest first
        bias = np32(block.conv.bias)
        # Interleave filter and gate channels by 8: panel p = [filter 8p..8p+7 | gate 8p..8p+7].
        both = np.zeros((k * R, 2, G8), np.float32)
        both[:, 0, :G], both[:, 1, :G] = conv[:, :G], conv[:, G:]
        both_bias = np.zeros((2, G8), np.float32)
        both_bias[0, :G], both_bias[1, :G] = bias[:G], bias[G:]
        interleaved = both.reshape(k * R, 2, G8 // 8, 8).transpose(0, 2, 1, 3).reshape(k * R, 2 * G8)
        blocks += [
            _panels(interleaved),
            both_bias.reshape(2, G8 // 8, 8).transpose(1, 0, 2),
            _panels(np32(block.residual.weight[:, :, 0]).T, rows=G8),  # (G8, R16)
            _pad(np32(block.residual.bias), R16),
            _panels(np32(block.skip.weight[:, :, 0]).T, rows=G8),  # (G8, S16)
        ]
        skip_bias[:S] += np32(block.skip.bias)
    h1, h2 = model.head[1], model.head[3]
    blocks += [
        skip_bias,
        _panels(np32(h1.weight[:, :, 0]).T, rows=S16),
        _pad(np32(h1.bias), S16),
        _panels(np32(h2.weight[:, :, 0]).T, rows=S16),
        _pad(np32(h2.bias), C16),
    ]
    flat = [np.ascontiguousarray(b, np.float32).ravel() for b in blocks]
    flat = [np.concatenate([b, np.zeros(_ceil(b.size, PANEL) - b.size, np.float32)]) for b in flat]
    shape = [C, R, G, S, c.kernel_size, c.input_kernel_size, len(model.blocks), *model.dilations]
    return np.array(shape, np.int64), np.concatenate(flat)


def _gate_order(columns: np.ndarray, gate: int) -> np.ndarray:
    """(..., 2G) filter then gate columns → (..., 2·G8) in the conv panels' order: panel p =
    [filter 8p..8p+7 | gate 8p..8p+7], channels G .. G8 - 1 zero."""
    g8 = _ceil(gate, 8)
    both = np.zeros((*columns.shape[:-1], 2, g8), columns.dtype)
    both[..., 0, :gate], both[..., 1, :gate] = columns[..., :gate], columns[..., gate:]
    lead = columns.shape[:-1]
    return both.reshape(*lead, 2, g8 // 8, 8).swapaxes(-3, -2).reshape(*lead, 2 * g8)


def _int8_panels(q: torch.Tensor | np.ndarray, rows: int) -> np.ndarray:
    """Integer values (K, N) → int8 panels of 16 columns, rows in groups of 4 (wavenet.cpp's
    QPanels): (ceil(N/16), rows/4, 16, 4), zero-padded to ``rows`` rows."""
    q = np.asarray(q)
    k, n = q.shape
    padded = np.zeros((rows, _ceil(n, PANEL)), np.int8)
    padded[:k, :n] = q
    return padded.reshape(rows // 4, 4, -1, PANEL).transpose(2, 0, 3, 1)


def pack_int8(model) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The shape array, the flat float32 blocks and the flat int8 blocks for ``wg_create`` at
    int8, from an ``int8.Int8WaveNet``: the input table, biases and scales as floats, each
    matrix as int8 panels (the conv one matrix per tap), in the order wavenet.cpp reads them."""
    plain, c = model.model, model.model.config
    R, G, S, C = c.residual_channels, c.gate_channels, c.skip_channels, c.classes
    G8, R16, S16, C16 = _ceil(G, 8), _ceil(R, PANEL), _ceil(S, PANEL), _ceil(C, PANEL)

    def np32(t: torch.Tensor) -> np.ndarray:
        return t.detach().float().cpu().numpy()

    floats: list[np.ndarray] = [np32(plain.input.weight).transpose(2, 1, 0), np32(plain.input.bias)]
    ints: list[np.ndarray] = []
    for block, (conv, res, skip) in zip(plain.blocks, model.blocks_q):
        floats += [
            _gate_order(np32(block.conv.bias), G),
            _gate_order(np32(conv[1]), G),
            _pad(np32(block.residual.bias), R16),
            _pad(np32(res[1]), R16),
            _pad(np32(skip[1]), S16),
        ]
        ints += [_int8_panels(_gate_order(np32(tap), G), R16) for tap in conv[0]]  # (R, 2G) per tap
        ints += [_int8_panels(np32(res[0]), G8), _int8_panels(np32(skip[0]), G8)]
    (q1, w1), (q2, w2) = model.head_q
    floats += [
        _pad(model.skip_bias.numpy(), S16),
        _pad(np32(plain.head[1].bias), S16),
        _pad(np32(w1), S16),
        _pad(np32(plain.head[3].bias), C16),
        _pad(np32(w2), C16),
    ]
    ints += [_int8_panels(np32(q1), S16), _int8_panels(np32(q2), S16)]
    flat = [np.ascontiguousarray(b, np.float32).ravel() for b in floats]
    flat = [np.concatenate([b, np.zeros(_ceil(b.size, PANEL) - b.size, np.float32)]) for b in flat]
    shape = [C, R, G, S, c.kernel_size, c.input_kernel_size, len(plain.blocks), *plain.dilations]
    return np.array(shape, np.int64), np.concatenate(flat), np.concatenate([b.ravel() for b in ints])


class LayoutTuner:
    """Picks how the engine's threads share the streams, from timed runs, and checks again now
    and then: threads in lockstep are fastest on idle cores but crawl when another process
    takes one of them, and which layout wins for a batch depends on the machine.

    A layout is (threads, threads per group); the codes are the same whichever runs, so
    switching between calls of one generation is invisible in the output.
    """

    FIRST_CHECK_S = 2.0  # seconds on the best layout before its rivals are timed again
    LAST_CHECK_S = 30.0  # the interval doubles while the best stays the best
    PROBE_S = 0.02  # length of a timing run
    CHUNK_S = 0.1  # length of a run on the best layout: each one is a fresh measurement
    DROP = 0.7  # the best slowing down to this fraction of its last rate: time the others now

    def __init__(self, threads: int, batch: int) -> None:
        layouts = {(threads, threads), (threads, 1), (1, 1)}
        # Layouts that make the same groups are one layout (C++ plan(): min(threads // size, batch) groups).
        unique = {(t, min(t // g, batch)): (t, g) for t, g in sorted(layouts)}
        self.layouts = list(unique.values())
        self.batch = batch
        self.rates: dict[tuple[int, int], float] = {}  # latest samples/s of each layout
        self.timed: set[tuple[int, int]] = set()  # layouts timed since the last check began
        self.best: tuple[int, int] | None = None
        self.last: tuple[int, int] | None = None  # the layout of the latest run
        self.on_best = 0.0  # seconds run on the best since the last check
        self.interval = self.FIRST_CHECK_S

    def next(self, remaining: int) -> tuple[tuple[int, int], int]:
        """The layout to run next and for how many steps (at most ``remaining``)."""
        untimed = [layout for layout in self.layouts if layout not in self.timed]
        if untimed:  # a short run, sized by what the layout did last time
            layout = untimed[0]
            steps = self.PROBE_S * self.rates[layout] if layout in self.rates else 64
            if layout != self.last:
                steps /= 4  # a warm-up run first (see record)
            return layout, min(remaining, max(4, int(steps / self.batch)))
        assert self.best is not None
        seconds = min(self.CHUNK_S, self.interval - self.on_best)
        return self.best, max(1, min(remaining, int(seconds * self.rates[self.best] / self.batch) + 1))

    def record(self, layout: tuple[int, int], steps: int, seconds: float) -> None:
        warm, self.last = layout == self.last, layout
        if layout == self.best:
            self.on_best += seconds
        if not warm:  # the first run after a switch pays for waking threads and cold caches
            return
        rate = self.batch * steps / max(seconds, 1e-9)
        if layout == self.best and rate < self.DROP * self.rates[layout]:  # e.g. a core was taken
            self._check_again(self.FIRST_CHECK_S)
        self.rates[layout] = rate
        self.timed.add(layout)
        if len(self.timed) < len(self.layouts):
            return
        best = max(self.layouts, key=self.rates.__getitem__)
        if best != self.best:
            self.best, self.on_best, self.interval = best, 0.0, self.FIRST_CHECK_S
        elif self.on_best >= self.interval:  # time to look at the others again
            self._check_again(min(2 * self.interval, self.LAST_CHECK_S))

    def _check_again(self, interval: float) -> None:
        self.timed = {self.best} if self.best else set()
        self.on_best, self.interval = 0.0, interval


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
        log: Callable[[str], None] | None = None,
        precision: str = "fp32",
    ) -> None:
        from ..int8 import Int8WaveNet
        from ..quantized import bf16_model, check_precision

        self.precision = check_precision(precision)
        if torch.device(device).type != "cpu":
            raise NativeUnavailable("the native engine runs on the CPU only (use --device cpu)")
        self.lib = load(log)
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
        handle = self.lib.wg_create(
            _ptr(shape),
            len(shape),
            _ptr(weights),
            weights.size,
            self.threads,
            PRECISION_CODES[precision],
            _ptr(qweights),
            qweights.size,
            error,
            len(error),
        )
        if not handle:
            raise NativeUnavailable(f"engine setup failed: {error.value.decode()}")
        self.handle = handle
        self._close = weakref.finalize(self, self.lib.wg_destroy, handle)
        self._silence: tuple[np.ndarray, np.ndarray, int] | None = None
        self.batch = 0
        self.n = 0
        self.fixed_terms = self.frame_blocks = self.kernel = None

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
        from ..state import FrameBlocks, TermParts, check_conditioning

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
            if parts.hop:  # blocks of (B, rows, L·2·G8)
                width = len(self.model.blocks) * 2 * _ceil(self.model.config.gate_channels, 8)
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
        if self.frame_blocks is not None:
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
        from ..state import past_block_inputs, ring_of

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
        from ..int8 import EngineTerms

        width = len(self.model.blocks) * 2 * _ceil(self.model.config.gate_channels, 8)
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
        self, out: torch.Tensor, start: int, steps: int, seeds: list[int], temperatures: np.ndarray
    ) -> None:
        """Generate ``steps`` samples into ``out[:, start:start + steps]`` ((B, N) uint8, contiguous),
        drawing the uniforms of sample indices ``start ..`` of each stream."""
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
                start + done,
                out.data_ptr() + start + done,
                out.shape[1],
                cond,
            ):
                raise RuntimeError("native engine: the conditioning does not cover the steps")
            if tuner:
                tuner.record(layout, count, time.perf_counter() - tick)
            done += count
            self.n += count
