"""``prepare``'s output folder: what it may replace, what it leaves out of the search, and the
previous set it replaces whole.

A prepared set is ``SET_FILES`` in one folder, known for wavegen's by its manifest (``"format":
"wavegen-prepared"``). ``prepare`` replaces only such a set: a file of one of those names that
no wavegen manifest vouches for (a speech corpus's own manifest.json, a train.u8 of another tool)
is refused before any work, with one line naming it. A new set replaces the whole previous
one: files of the old set that the new one does not write (log-mels, when the new set has
none) are removed once the new manifest is in place.

The search for recordings leaves out this call's own --out folder and every folder wavegen
wrote (``owned.output_folder``: prepared data, runs, exported models, report pages); files that
wavegen generated (a synth sample, a vocode output and its input copy) are left out by
``audio.search``. Each is named as ignored with a reason that says "wavegen".
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable

from ..audio.io import display_name
from ..owned import is_prepared_manifest, output_folder, read_json, refuse_foreign
from .prepared import MANIFEST

logger = logging.getLogger(__name__)

SET_FILES = ("train.u8", "val.u8", "train.mel", "val.mel", MANIFEST)
OUTPUT_REASONS = {
    "prepared data": "prepared data (wavegen): not searched",
    "a run": "a wavegen run: not searched",
    "an exported model": "an exported wavegen model: not searched",
    "a report page": "a wavegen report page: not searched",
}


def previous_set(out: Path) -> dict | None:
    """The manifest of the prepared set ``out`` holds (None: none). Raises ``ConfigError``
    naming a file of the set's names that wavegen did not write, before any work is done."""
    out = Path(out)
    if not out.is_dir():
        return None
    manifest = out / MANIFEST
    if os.path.lexists(manifest) and not is_prepared_manifest(manifest):
        refuse_foreign(manifest, "a manifest of prepared data", "--out")
    if not os.path.lexists(manifest):
        for name in SET_FILES:
            if os.path.lexists(out / name):
                refuse_foreign(
                    out / name, "part of prepared data (there is no wavegen manifest.json beside it)", "--out"
                )
        return None
    return read_json(manifest)


def replace_set(out: Path, previous: dict | None) -> None:
    """After the new set is complete (its manifest written): remove the files of the
    ``previous`` set (wavegen's: it was checked) that the new one does not have, and say when
    the set replaced was another dataset's."""
    if previous is None:
        return
    now = read_json(Path(out) / MANIFEST) or {}
    kept = {MANIFEST, "train.u8", "val.u8"} | ({"train.mel", "val.mel"} if now.get("mel") else set())
    for name in set(SET_FILES) - kept:
        (Path(out) / name).unlink(missing_ok=True)
    if previous.get("dataset") != now.get("dataset"):
        logger.info(f"note: replaced the prepared data of {previous.get('dataset')} that was in {display_name(out)}")


def not_searched(out: Path) -> Callable[[Path], str | None]:
    """For ``find_audio_files``: why a folder is not searched for recordings: this call's own
    output folder, or a folder wavegen wrote (a dataset may hold a whole project). Made before
    the output folder is: a new one is searched and named by nobody (it holds only the lock,
    which ``prepare`` leaves out)."""
    target, existed = os.path.realpath(out), os.path.isdir(out)

    def reason(folder: Path) -> str | None:
        if os.path.realpath(folder) == target:
            return "the --out folder of this prepare: not searched" if existed else None
        kind = output_folder(folder)
        return OUTPUT_REASONS[kind] if kind else None

    return reason
