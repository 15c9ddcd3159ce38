"""The C ABI of ``wavenet.cpp``: its functions' ctypes signatures, the ``Cond`` struct, and
loading the built library (once per process)."""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path

from .toolchain import NativeUnavailable, build, built

logger = logging.getLogger(__name__)

ABI_VERSION = 3
PRECISION_CODES = {"fp32": 0, "bf16": 1, "int8": 2}  # wavenet.cpp: enum Precision


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


def open_library(path: Path) -> ctypes.CDLL:
    """Load the library at ``path`` with its functions' signatures; raises ``NativeUnavailable``
    when it cannot be loaded or speaks another ABI."""
    try:
        lib = _bind(ctypes.CDLL(str(path)))
    except (OSError, AttributeError) as exc:
        raise NativeUnavailable(f"cannot load {path} ({exc})") from None
    if lib.wg_abi_version() != ABI_VERSION:
        raise NativeUnavailable(f"{path} has ABI {lib.wg_abi_version()}, expected {ABI_VERSION}")
    return lib


_loaded: dict[str, ctypes.CDLL | NativeUnavailable] = {}


def load() -> ctypes.CDLL:
    """Build if needed and load the library (once per process); raises ``NativeUnavailable``."""
    if "lib" not in _loaded:
        try:
            path = build()
            logger.debug(f"native engine: loading {path}")
            _loaded["lib"] = open_library(path)
        except NativeUnavailable as exc:
            _loaded["lib"] = exc
    found = _loaded["lib"]
    if isinstance(found, NativeUnavailable):
        raise found
    return found


def ready() -> bool:
    """Whether ``load`` costs no compile: the library is loaded, or built for this machine."""
    if "lib" in _loaded:
        return not isinstance(_loaded["lib"], NativeUnavailable)
    return built()
