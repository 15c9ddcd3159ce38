"""``wavegen report``: one static HTML page about a run, to open from disk, zip or commit.

The page lives in one folder (default ``RUN/report``)::

    OUT/index.html      run name, step, parameters, receptive field, the resolved config,
                        the validation history, and every sample of the run, newest first:
                        an <audio> player, its spectrogram and its metadata (a vocode sample
                        shows its input recording and its output side by side)
    OUT/curves/*.png    bits per sample (training and validation) and learning rate against step
    OUT/NAME.wav, .png  the samples shown: hard links to the originals (copies where links
                        cannot be made); a sample already in OUT is shown where it is. Only
                        regular files of their own are taken (a WAV that is a symbolic link,
                        or not a WAV, is skipped with a line): a link is never followed, so
                        the page never carries a file from outside the sample folders

Every link is relative and nothing is fetched from the network; no JavaScript is needed to view
or play. A small inline script only marks a player or image whose file failed to load.

Samples are what ``artifacts.read_samples`` finds in the sample folders (default ``RUN/samples``
and ``./samples``) whose metadata names this run. A WAV without metadata whose name follows
``synth``'s pattern for this run (``RUN-stepN[-LABEL]-seedK.wav``) is shown too, with what its
name says. A sample without a spectrogram PNG gets one, drawn into OUT.
"""

from __future__ import annotations

import html
import logging
import os
import re
import secrets
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..audio.artifacts import spectrogram_png
from ..audio.io import AudioReadError, load_audio
from ..errors import ConfigError
from ..files import atomic_open, atomic_write_text, wrong_kind
from ..outputs import no_empty_folders_on_failure
from ..owned import is_report_page
from .html import CURVES, render
from .sources import find_run, find_samples, input_of, own_file, plain_name, read_log, run_facts

logger = logging.getLogger(__name__)


class ReportSkip(Exception):
    """A sample left out of the page; the message says why."""


@dataclass
class Page:
    """What ``build_report`` wrote: the page and what it shows."""

    index: Path
    samples: list[dict[str, Any]]
    curves: list[str] = field(default_factory=list)


class _Folder:
    """The page's folder: files put into it under unique plain names, each written atomically."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.root = out.resolve()
        self.names: dict[str, Path] = {}  # name in OUT -> the file it shows
        self.reserved = {"index.html", CURVES}
        self.foreign = _not_the_pages(out)  # never replaced: the new page's copies take other names

    def _claim(self, wanted: str, source: Path, in_place: bool = False) -> str:
        stem, suffix = os.path.splitext(wanted)
        name, i = wanted, 1
        avoid = self.reserved if in_place else self.reserved | self.foreign  # (a file shown in place is not replaced)
        while name in avoid or (name in self.names and self.names[name] != source):
            i += 1
            name = f"{stem}-{i}{suffix}"
        self.names[name] = source
        return name

    def put(self, source: Path) -> str:
        """Show ``source`` in the page: its name in OUT (in place when it is already there)."""
        source = source.resolve()
        if source.parent == self.root and source.name not in self.reserved:
            return self._claim(source.name, source, in_place=True)
        for name, shown in self.names.items():
            if shown == source:
                return name
        name = self._claim(source.name, source)
        target = self.out / name
        if target.exists() and os.path.samefile(target, source):
            return name
        tmp = self.out / f".{name}.{secrets.token_hex(4)}.tmp"  # (files.LEFTOVER: a kill's is swept)
        tmp.unlink(missing_ok=True)
        try:
            try:  # (the caller checked that source is no link; a link made since is linked as one, refused below)
                os.link(source, tmp, follow_symlinks=False)
            except OSError:  # another filesystem, or links not allowed: a copy
                shutil.copyfile(source, tmp, follow_symlinks=False)
            if not stat.S_ISREG(os.lstat(tmp).st_mode):
                raise ReportSkip(f"{source}: became a link while the report was written")
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return name

    def write(self, name: str, data: bytes) -> str:
        """A new file (a drawn spectrogram) under a name of its own."""
        name = self._claim(name, Path(f"\0drawn-{len(self.names)}"))  # claimed by nothing else
        with atomic_open(self.out / name, "wb") as handle:
            handle.write(data)
        return name


def _not_the_pages(out: Path) -> set[str]:
    """The files in ``out`` that no earlier page of wavegen's there shows (a user's own, or
    samples a new page may show where they are): a copy never replaces one."""
    index = out / "index.html"
    if not out.is_dir():
        return set()
    if index.exists() and not is_report_page(index):
        raise ConfigError(f"{index}: not a page that wavegen report wrote, so it is left as it is; give another --out")
    shown = (
        set(map(html.unescape, re.findall(r'(?:src|href)="([^"/]+)"', index.read_text(errors="replace"))))
        if index.exists()
        else set()
    )
    return {entry.name for entry in out.iterdir() if entry.name not in shown and not entry.name.startswith(".")}


def _spectrogram(folder: Path, wav: str, png: Any, page: _Folder) -> str:
    """The page's name for the spectrogram of ``folder/wav``: the PNG its metadata names, or the
    one beside it (NAME.png), or one drawn now into the page's folder."""
    for name in (plain_name(png, ".png"), Path(wav).with_suffix(".png").name):
        if name and own_file(folder / name, "png"):
            return page.put(folder / name)
    import soundfile as sf

    path = folder / wav
    rate = sf.info(str(path)).samplerate
    return page.write(Path(wav).with_suffix(".png").name, spectrogram_png(load_audio(path, rate), rate, title=wav))


def draw_curves(rows: list[dict], folder: Path) -> list[tuple[str, str]]:
    """PNGs of log.csv under ``folder``: (file name, caption) of each drawn."""
    import io

    from ..audio.plots import figure as new_figure

    def series(key):
        points = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
        return [p[0] for p in points], [p[1] for p in points]

    drawn = []
    plots = [
        (
            "bits.png",
            "bits per sample: training (noisy inputs, per logged step) and validation",
            [("train_bits", "training"), ("val_bits", "validation")],
            "bits / sample",
        ),
        ("lr.png", "learning rate", [("lr", "learning rate")], "learning rate"),
    ]
    for name, caption, keys, ylabel in plots:
        lines = [(label, *series(key)) for key, label in keys]
        if not any(xs for _, xs, _ in lines):
            continue
        figure = new_figure(8, 3.2)  # no text from user data on it: the captions are wavegen's
        axes = figure.add_subplot()
        for label, xs, ys in lines:
            if xs:
                axes.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=label)
        axes.set_xlabel("step")
        axes.set_ylabel(ylabel)
        axes.grid(alpha=0.3)
        if len(lines) > 1:
            axes.legend()
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        with atomic_open(folder / name, "wb") as handle:
            handle.write(buffer.getvalue())
        drawn.append((name, caption))
    return drawn


def build_report(
    run: Path | None = None,
    sample_dirs: list[Path] | None = None,
    out: Path | None = None,
    timings: bool = True,
) -> Page:
    """Write the page about ``run`` (default: the newest) into ``out`` (default RUN/report).
    ``timings=False``: no date, elapsed times or generation times (``TIMING_META``) on the page,
    so that the same run and samples make the same bytes."""
    run = find_run(run)
    out = Path(out) if out is not None else run / "report"
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: --out is a file, not a folder; give --out a folder for the page")
    with no_empty_folders_on_failure(out):
        return _build_report(run, sample_dirs, out, timings)


def _build_report(run: Path, sample_dirs: list[Path] | None, out: Path, timings: bool = True) -> Page:
    if sample_dirs:
        for folder in sample_dirs:
            problem = wrong_kind(folder, "folder")
            if problem:
                raise ConfigError(f"--samples {folder}: {problem}")
        folders = [Path(f) for f in sample_dirs]
    else:
        folders = [run / "samples", Path("samples")]
    logger.debug(f"report of {run}: samples looked for in {', '.join(map(str, folders))}")
    rows = read_log(run / "log.csv")
    facts = run_facts(run, rows)
    out.mkdir(parents=True, exist_ok=True)
    page = _Folder(out)
    curves = draw_curves(rows, out / CURVES) if rows else []
    samples = []
    for record in find_samples(facts["name"], folders):
        folder = Path(record["folder"])
        if not own_file(folder / record["wav"], "wav"):  # a link to any file the user can read: never published
            logger.warning(f"skipped {folder / record['wav']}: not a WAV file of its own (a link, or not audio)")
            continue
        try:
            png = _spectrogram(folder, record["wav"], record.get("spectrogram"), page)
            shown: dict[str, Any] = {"record": record, "png": png}
            source, source_png = input_of(record)
            if source and own_file(folder / source, "wav"):
                shown["input_png"] = _spectrogram(folder, source, source_png, page)
                shown["input_wav"] = page.put(folder / source)
            shown["wav"] = page.put(folder / record["wav"])
        except (AudioReadError, RuntimeError) as exc:  # soundfile's errors are RuntimeErrors
            logger.warning(f"skipped {folder / record['wav']}: cannot read it ({exc})")
            continue
        except ReportSkip as exc:
            logger.warning(f"skipped {exc}")
            continue
        samples.append(shown)
    index = out / "index.html"
    atomic_write_text(index, render(facts, rows, curves, samples, timings))  # last: the page appears complete
    logger.info(
        f"wrote {index}: {len(samples)} sample{'s' * (len(samples) != 1)}, "
        f"{'curves of ' + str(len(rows)) + ' log rows' if rows else 'no training log yet'}"
    )
    return Page(index, [s["record"] for s in samples], [name for name, _ in curves])
