"""Finding a C++ compiler and building ``wavenet.cpp`` into a cached library.

The library is compiled with the system's C++ compiler (``$CXX``, else ``g++``, ``c++`` or
``clang++``) the first time it is needed and cached in ``$WAVEGEN_CACHE``, else
``$XDG_CACHE_HOME/wavegen``, else ``~/.cache/wavegen``, under a name that hashes the source, the
compiler and what ``-march=native`` means on this CPU (a library built for one CPU is never
loaded on another). The name does not depend on the terminal or the language: the compiler is
asked with a fixed ``COLUMNS`` and the C locale. Concurrent first builds are serialised by a lock
file in the cache folder (``fcntl.flock``), so a second process waits and loads what the first
built; each build still compiles to its own temporary file and renames it into place.

A variant (``build(extra=..., variant=...)``, e.g. with sanitizers for ``check``) is built with
flags added after the usual ones into a subfolder of its own, never replacing the normal library.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Iterator, Sequence

from ...cache import cache_dir
from ...errors import EngineUnavailable

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).resolve().parent / "wavenet.cpp"
FLAGS = ["-O3", "-march=native", "-std=c++20", "-shared", "-fPIC", "-pthread"]


# The native engine cannot be built or used here: every engine's one error, by its old name.
NativeUnavailable = EngineUnavailable


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


def flags(extra: Sequence[str] = ()) -> list[str]:
    """The compiler flags: FLAGS, then ``$WAVEGEN_NATIVE_FLAGS`` (split on spaces), e.g.
    ``-mno-avx512vnni -mno-avxvnni`` to build the AVX2 kernels on a CPU that has VNNI, then
    ``extra`` (a variant's flags; later flags win, e.g. ``-O1`` over ``-O3``)."""
    return FLAGS + os.environ.get("WAVEGEN_NATIVE_FLAGS", "").split() + list(extra)


def fingerprint(compiler: str, extra: Sequence[str] = ()) -> str:
    """Hash of everything the built library depends on: source, flags, compiler, target CPU."""
    digest = hashlib.sha256()
    digest.update(SOURCE.read_bytes())
    digest.update(" ".join(flags(extra)).encode())
    digest.update(_output([compiler, "--version"]).encode())
    # What -march=native resolves to here: GCC lists the enabled target options; Clang prints
    # the CPU and feature flags it passes to its compiler proper.
    added = flags(extra)[len(FLAGS) :]
    target = _output([compiler, "-march=native", *added, "-Q", "--help=target"])
    if not target:
        target = _output([compiler, "-march=native", *added, "-###", "-E", "-x", "c++", os.devnull])
    digest.update(target.encode())
    digest.update(platform.machine().encode())
    return digest.hexdigest()[:20]


def build(extra: Sequence[str] = (), variant: str = "") -> Path:
    """Compile the library unless a matching one is cached; return its path. ``extra`` flags
    build a variant into the subfolder ``variant`` of the cache (which it then needs)."""
    if not SOURCE.is_file():
        raise NativeUnavailable(f"source missing: {SOURCE}")
    if extra and not variant:
        raise ValueError("a build with extra flags needs a variant folder of its own")
    compiler = find_compiler()
    folder = cache_dir() / variant if variant else cache_dir()
    target = folder / f"wavenet-{fingerprint(compiler, extra)}.so"
    if target.is_file():
        return target
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NativeUnavailable(f"cannot create the cache folder {folder} ({exc.strerror or exc})") from None
    with _build_lock(folder):
        if target.is_file():  # built by another process while this one waited for the lock
            return target
        _compile(compiler, target, extra)
    return target


def built() -> bool:
    """Whether the library for this machine is already in the cache (``build`` then compiles
    nothing); False where it could not be built at all."""
    try:
        return (cache_dir() / f"wavenet-{fingerprint(find_compiler())}.so").is_file()
    except EngineUnavailable:
        return False


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


def _compile(compiler: str, target: Path, extra: Sequence[str] = ()) -> None:
    """Compile SOURCE into ``target`` through a temporary file beside it."""
    folder = target.parent
    logger.info(f"building the native engine with {Path(compiler).name} (once per machine, a few seconds)")
    logger.debug(f"native engine: {compiler} {' '.join(flags(extra))} -o {target}")
    temporary = folder / f".wavenet-{os.getpid()}-{uuid.uuid4().hex[:8]}.so"
    try:
        done = subprocess.run(
            [compiler, *flags(extra), "-o", str(temporary), str(SOURCE)],
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
