"""The ``native`` engine: the C++ sampling loop in ``wavenet.cpp`` beside this file, built on
first use.

Nothing here runs when ``wavegen`` is imported. The package's modules, by job (imports point one
way: engine → tuning, packing, abi → toolchain):

- ``toolchain``: finding a C++ compiler and building the library into the cache (``build``),
  under a name that hashes the source, the flags, the compiler and the CPU;
- ``abi``: the library's C functions and ``Cond`` struct for ctypes, and ``load`` (once per process);
- ``packing``: the weights (fp32/bf16 and int8) and conditioning terms in the kernels' layout;
- ``tuning``: how many threads, and which thread layout is fastest (``LayoutTuner``);
- ``engine``: ``NativeEngine``, the engine calls (reset/logits/append, ``sample_steps``);
- ``check`` (run, not imported here): the C++ held to the Python references, also under
  sanitizers (``python -m wavegen.generate.native.check --sanitize``, ``make native-check``).

``$WAVEGEN_NATIVE_FLAGS`` adds compiler flags, e.g. to build the AVX2 kernels on a CPU with VNNI
(the tests check each kernel that way). The names below are this package's interface.
"""

from __future__ import annotations

from .abi import ABI_VERSION, PRECISION_CODES, Cond, _loaded, load, open_library, ready
from .engine import MAX_TERM_FRAMES, NativeEngine
from .packing import PANEL, pack, pack_int8, pack_terms
from .toolchain import FLAGS, SOURCE, STABLE_ENV, NativeUnavailable, build, cache_dir, find_compiler, fingerprint, flags
from .tuning import LayoutTuner, default_threads

__all__ = [
    "ABI_VERSION",
    "FLAGS",
    "MAX_TERM_FRAMES",
    "PANEL",
    "PRECISION_CODES",
    "SOURCE",
    "STABLE_ENV",
    "Cond",
    "LayoutTuner",
    "NativeEngine",
    "NativeUnavailable",
    "build",
    "cache_dir",
    "default_threads",
    "find_compiler",
    "fingerprint",
    "flags",
    "load",
    "open_library",
    "pack",
    "pack_int8",
    "pack_terms",
    "ready",
    "_loaded",
]
