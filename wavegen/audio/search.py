"""Which files under a dataset folder are audio: by name, or else by content, with every other
entry named (hidden files, links not followed, folders that cannot be listed)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import soundfile as sf

from ..owned import generated_audio
from .io import (
    AudioReadError,
    display_name,
    looks_like,
    os_error_reason,
    quiet_stderr,
    read_head,
)

# Names that say "audio": every container soundfile (libsndfile) reads, under its usual names,
# and what librosa's fallback decoder (audioread, with ffmpeg) reads. A file with one of these
# names that cannot be used is a problem to report (exit status 3); a file with any other name
# is audio only if its content says so (``sniff``), else it is not audio and only named. RAW and
# MAT are left out: headerless samples need settings a file cannot carry, and .mat is mostly
# not audio.
AUDIO_EXTENSIONS = {f".{name.lower()}" for name in sf.available_formats()} - {
    ".raw",
    ".mat4",
    ".mat5",
    ".wavex",
    ".svx",
    ".ircam",
} | {
    ".wav",
    ".wave",
    ".flac",
    ".ogg",
    ".oga",
    ".opus",
    ".mp3",
    ".aiff",
    ".aif",
    ".aifc",
    ".au",
    ".snd",
    ".caf",
    ".w64",
    ".rf64",
    ".sph",
    ".8svx",
    ".iff",
    ".sf",
    ".m4a",
    ".aac",
    ".wma",
    ".mka",
}


# Headerless samples: audio, but the rate, width and channels are not in the file.
RAW_EXTENSIONS = {".raw", ".pcm"}


def is_hidden(name: str) -> bool:
    """A hidden name (``.DS_Store``, ``.git``, macOS's ``._x.wav`` resource forks): never data."""
    return name.startswith(".")


def find_audio_files(
    folder: Path,
    skip: Callable[[Path, str], None] | None = None,
    ignore: Callable[[Path, str], None] | None = None,
    prune: Callable[[Path], str | None] | None = None,
) -> list[Path]:
    """Audio files under ``folder`` (recursively), sorted for reproducibility.

    A file is audio when its extension says so (``AUDIO_EXTENSIONS``) or, for any other name,
    when its content does (``sniff``). Every other entry is accounted for, never dropped
    silently: files that are not audio, hidden files and folders (not searched), and folders
    ``prune`` names a reason for (an output folder inside the dataset) go to ``ignore`` with
    the reason; what is a problem (a folder that cannot be listed, a link not followed, a file
    whose content cannot be read to tell, headerless samples) goes to ``skip``.

    Links to folders outside ``folder`` are followed, each real folder once, so a loop of links
    cannot trap the search. A link to a folder inside ``folder`` (a loop, or a second way to
    files that are found anyway) is not followed.
    """
    skip = skip or (lambda path, reason: None)
    ignore = ignore or (lambda path, reason: None)
    prune = prune or (lambda path: None)
    inside = os.path.realpath(folder)
    searched = {inside}
    found = []

    def cannot_list(error: OSError) -> None:
        skip(Path(error.filename), f"cannot list this folder ({os_error_reason(error, Path(error.filename))})")

    for root, dirs, files in os.walk(folder, followlinks=True, onerror=cannot_list):
        for name in sorted(dirs):
            path = Path(root) / name
            reason, problem = _not_followed(path, Path(root), inside, searched, prune)
            if reason:
                dirs.remove(name)
                (skip if problem else ignore)(path, reason)
            else:
                searched.add(os.path.realpath(path))
        for name in sorted(files):
            if _is_audio(Path(root) / name, skip, ignore):
                found.append(Path(root) / name)
    return sorted(found)


def _not_followed(
    path: Path, root: Path, inside: str, searched: set[str], prune: Callable[[Path], str | None]
) -> tuple[str | None, bool]:
    """Why the search does not enter the folder ``path`` (None: it does), and whether that is a
    problem to report (a link loop) or only an entry to name (hidden, pruned)."""
    target = os.path.realpath(path)
    if is_hidden(path.name):
        return "hidden: not searched", False
    pruned = prune(path)
    if pruned:
        return pruned, False
    if os.path.islink(path) and (target == inside or target.startswith(inside + os.sep)):
        here = os.path.realpath(root)
        if here == target or here.startswith(target + os.sep):
            return "link to a folder that contains it (a loop): not followed", True
        where = display_name(os.path.relpath(target, inside))
        return f"link to {where}, inside the dataset: not followed (its files are read there)", True
    if target in searched:
        return "searched already (through another link): not followed", True
    return None, True


def _is_audio(path: Path, skip: Callable[[Path, str], None], ignore: Callable[[Path, str], None]) -> bool:
    """Whether the file ``path`` is audio to prepare, by its name or else its content; any
    other file goes to ``skip`` (a problem) or ``ignore`` (no audio) with the reason."""
    suffix = path.suffix.lower()
    if is_hidden(path.name):
        ignore(path, "hidden: not searched")
        return False
    made = generated_audio(path)  # a sample beside its record: wavegen's output, never a recording
    if made:
        ignore(path, f"made by wavegen {made}: not a recording")
        return False
    if suffix in AUDIO_EXTENSIONS:
        return True
    if suffix in RAW_EXTENSIONS:
        skip(
            path,
            "headerless samples (the file does not say its rate, width or channels): "
            "convert it to WAV with the right settings",
        )
        return False
    try:
        kind = sniff(path)
    except AudioReadError as exc:  # cannot even look: a problem, not a verdict
        skip(path, str(exc))
        return False
    if kind is not None:
        ignore(path, kind)
    return kind is None


def sniff(path: Path) -> str | None:
    """None when ``path`` (of a name that does not say audio) holds audio soundfile can read,
    found by content; else why it is taken for something else ("not audio (looks like text)").
    Raises ``AudioReadError`` when the file cannot be read to tell."""
    head = read_head(path)
    if not head:
        return "not audio (empty file)"
    try:
        with quiet_stderr():
            sf.info(os.fsencode(path))  # libsndfile recognises every format it reads by content
        return None
    except Exception:
        kind = looks_like(head)
        return f"not audio (looks like {kind})" if kind else "not audio (no audio format recognised in its content)"


def what_file(path: Path) -> str | None:
    """What a file that turned out not to be what was asked for appears to be, for a message:
    "an audio file" (by its name or its content), "a PNG image", "a text file"...; None when
    nothing is recognised (or it cannot be read)."""
    if Path(path).suffix.lower() in AUDIO_EXTENSIONS | RAW_EXTENSIONS:
        return "an audio file"
    try:
        if sniff(path) is None:
            return "an audio file"
        kind = looks_like(read_head(path))
    except AudioReadError:
        return None
    return "a text file" if kind == "text" else kind
