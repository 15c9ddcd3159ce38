"""Where commands write: output folders checked before any work, and file names kept inside them.

Names of output files come partly from outside the user's command line: a label (from a dataset's
folder names, or from a checkpoint, which anyone can craft), an input recording's name, a run
folder's name. ``safe_name`` turns such text into one harmless file-name part, ``distinct_names``
keeps names that sanitise alike from overwriting each other, and ``inside`` refuses any path that
would still land outside the output folder.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
import re
import tempfile
import unicodedata
from pathlib import Path
from typing import Callable, Iterator

from .errors import ConfigError
from .owned import sample_record

logger = logging.getLogger(__name__)

# Most file systems allow 255 bytes per name; a name part this long leaves room for the rest of
# the name (run, step, seed, suffix) even in 4-byte UTF-8 characters.
NAME_PART_CHARS = 48


def writable_folder(path: Path, option: str = "--out") -> Path:
    """Refuse, before any work is done, an output folder that cannot be created or written to:
    a file where it (or a folder above it) should be, or a place without write permission.
    Creates nothing: a command refused later leaves no empty folder behind."""
    path = Path(path)
    existing = path
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if os.path.lexists(existing) and not existing.is_dir():
        if existing == path:
            raise ConfigError(f"{path}: {option} is a file, not a folder; choose another {option}")
        raise ConfigError(f"{path}: {existing} is a file, not a folder; choose another {option}")
    try:  # an honest test: permissions, read-only mounts and ACLs all show up here
        fd, probe = tempfile.mkstemp(prefix=".wavegen-write-test-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        where = "" if existing == path else f" (in {existing})"
        raise ConfigError(
            f"{path}: cannot write there{where}: {exc.strerror or exc}; choose another {option} or make it writable"
        ) from None
    return path


@contextlib.contextmanager
def no_empty_folders_on_failure(*folders: Path | None) -> Iterator[None]:
    """Run a command's work; if it fails, remove the folders it created for ``folders`` (each,
    the parents made for it, and folders made inside them) that are still empty.

    Folders are made where the first file is written (``files.atomic_open``), so a command that
    fails after that point but before a file is complete (nothing usable to prepare, a full disk)
    would leave an empty folder, or a chain of them, behind. Whatever was written stays, and so
    does every folder that existed before, empty or not.
    """
    created = [top for top in map(_first_missing, folders) if top is not None]
    try:
        yield
    except BaseException:
        for top in created:
            _remove_empty_tree(top)
        raise


def leaves_no_empty_folder(*params: str) -> Callable:
    """Decorator: the function's folder arguments ``params`` (an output folder, a run) get
    ``no_empty_folders_on_failure``."""

    def wrap(fn: Callable) -> Callable:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            with no_empty_folders_on_failure(*(bound.arguments[name] for name in params)):
                return fn(*args, **kwargs)

        return wrapper

    return wrap


def _first_missing(path: Path | None) -> Path | None:
    """The outermost of ``path`` and its parents that does not exist yet (None: it exists)."""
    if path is None:
        return None
    path = Path(os.path.abspath(path))
    if os.path.lexists(path):
        return None
    while path.parent != path and not os.path.lexists(path.parent):
        path = path.parent
    return path


def _remove_empty_tree(top: Path) -> None:
    """Remove ``top`` and the folders under it that hold no file, deepest first; a folder with
    anything in it stays (rmdir refuses it), and links are never followed."""
    if os.path.islink(top) or not os.path.isdir(top):
        return
    for folder, _, _ in os.walk(top, topdown=False):
        try:
            os.rmdir(folder)
        except OSError:  # not empty (what was written stays), or gone already
            pass


def safe_name(text: str, limit: int = NAME_PART_CHARS) -> str:
    """``text`` as one part of a file name: letters, digits, '-', '_' and inner '.' only (so no
    path separators, '..', hidden names, NUL or newlines), at most ``limit`` characters, never
    empty. Different texts can give the same part: ``distinct_names`` separates those."""
    text = unicodedata.normalize("NFC", str(text))
    kept = "".join(map(_name_part, text))
    return re.sub(r"\.{2,}", ".", kept)[:limit].strip(".") or "_"


def _name_part(c: str) -> str:
    """One character of ``safe_name``'s result: letters and digits of any script with their
    combining marks (a Devanagari vowel sign or virama, Arabic harakat: without them the word is
    another word), a symbol such as an emoji as its code point (``U1F3B5``, not an anonymous
    ``_``), invisible format characters and variation selectors dropped, anything else ``_``."""
    if c.isalnum() or c in "-_.":
        return c
    category = unicodedata.category(c)
    if category == "Cf" or 0xFE00 <= ord(c) <= 0xFE0F:
        return ""
    if category.startswith("M"):
        return c
    if category == "So":
        return f"U{ord(c):X}"
    return "_"


def distinct_names(texts: list[str], limit: int = NAME_PART_CHARS, share_equal: bool = True) -> list[str]:
    """``safe_name`` of each text, made distinct (ignoring case, as some file systems do) by a
    numbered suffix: texts that sanitise alike ('a/b', 'a_b') never share an output file; the
    first of them keeps the plain name. Equal texts share a name unless ``share_equal`` is
    false (then every entry gets its own: 'a', 'a-2')."""
    names: list[str] = []
    given: dict[str, str] = {}
    taken: set[str] = set()
    for text in texts:
        if share_equal and text in given:
            names.append(given[text])
            continue
        base = name = safe_name(text, limit)
        number = 1
        while name.casefold() in taken:
            number += 1
            name = f"{base}-{number}"
        given[text] = name
        taken.add(name.casefold())
        names.append(name)
    return names


def inside(folder: Path, name: str) -> Path:
    """``folder / name``, refused unless it resolves to a place inside ``folder`` (a last line of
    defence: ``safe_name`` already keeps separators and '..' out of names)."""
    path = Path(folder) / name
    root = Path(folder).resolve()
    target = path.resolve()
    if target == root or not target.is_relative_to(root):
        raise ConfigError(f"{name!r}: refusing to write outside the output folder {folder}")
    return path


# What makes two samples the same request (``artifacts.SampleRecord``'s keys): a rerun of it
# replaces its files; anything else gets a name of its own. (Engine, device and timings are how
# a sample was made, not what was asked for.)
SAME_KEYS = ("kind", "run", "step", "weights", "seed", "temperature", "precision", "label", "seconds")
SAME_PATHS = ("checkpoint", "prime", "mel")
COMPANIONS = (".wav", ".json", ".png", ".input.wav", ".input.png")  # a sample's files: artifacts


def sample_path(out: Path, part: str, suffix: str, record: dict, taken: set[str]) -> Path:
    """Where a new sample goes in ``out``: ``part + suffix`` (the WAV's name: ``part`` is what
    gets numbered, the run's name or an input's stem) when no file of that sample's
    (``COMPANIONS``) is there, or when they are an earlier sample of the same request
    (``record``: the new sample's metadata, its seconds included), which it replaces; else
    ``part-2 + suffix``, ``part-3 + suffix``...: a file wavegen did not write, or another request's
    sample, is never replaced. ``taken``: names this call has claimed (updated). Says in one
    line when the plain name was taken."""
    number, first = 1, None
    while True:
        path = inside(out, (part if number == 1 else f"{part}-{number}") + suffix)
        first = first or path
        if path.name.casefold() not in taken:
            found = [p for p in (path.with_name(path.stem + s) for s in COMPANIONS) if os.path.lexists(p)]
            old = sample_record(path.with_suffix(".json"))
            if not found or (old is not None and old["wav"] == path.name and not differences(old, record)):
                break
        number += 1
    if number > 1 and first.name.casefold() not in taken:  # (not a name this call gave another sample)
        old = sample_record(first.with_suffix(".json"))
        what = (
            f"a sample that differs in {', '.join(differences(old, record))}" if old else "a file wavegen did not write"
        )
        logger.warning(f"note: {first} holds {what}; this sample is {path.name}")
    taken.add(path.name.casefold())
    return path


def differences(old: dict, new: dict) -> list[str]:
    """The keys of ``SAME_KEYS``/``SAME_PATHS`` (and a vocode input's source) in which two
    sample records differ: none for two samples of the same request."""
    keys = [key for key in SAME_KEYS if old.get(key) != new.get(key)]
    keys += [key for key in SAME_PATHS if not _same_path(old.get(key), new.get(key))]
    sources = [(r.get("input") or {}) if isinstance(r.get("input") or {}, dict) else {} for r in (old, new)]
    if not _same_path(sources[0].get("source"), sources[1].get("source")):
        keys.append("input")
    return keys


def _same_path(a: object, b: object) -> bool:
    """Equal, or two paths (as given, from any folder) of the same file."""
    return a == b or (isinstance(a, str) and isinstance(b, str) and os.path.realpath(a) == os.path.realpath(b))
