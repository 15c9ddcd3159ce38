"""``wavegen report``: one static HTML page about a run, to open from disk, zip or commit.

The page lives in one folder (default ``RUN/report``)::

    OUT/index.html      run name, step, parameters, receptive field, the resolved config,
                        the validation history, and every sample of the run, newest first:
                        an <audio> player, its spectrogram and its metadata (a vocode sample
                        shows its input recording and its output side by side)
    OUT/curves/*.png    bits per sample (training and validation) and learning rate against step
    OUT/NAME.wav, .png  the samples shown: hard links to the originals (copies where links
                        cannot be made); a sample already in OUT is shown where it is

Every link is relative and nothing is fetched from the network; no JavaScript is needed to view
or play. A small inline script only marks a player or image whose file failed to load.

Samples are what ``artifacts.read_samples`` finds in the sample folders (default ``RUN/samples``
and ``./samples``) whose metadata names this run. A WAV without metadata whose name follows
``synth``'s pattern for this run (``RUN-stepN[-LABEL]-seedK.wav``) is shown too, with what its
name says. A sample without a spectrogram PNG gets one, drawn into OUT.
"""
from __future__ import annotations

import csv
import html
import os
import re
import shutil
import time
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

from ..audio.io import AudioReadError
from ..errors import CheckpointError, ConfigError
from ..files import atomic_open, atomic_write_text
from ..outputs import no_empty_folders_on_failure

CURVES = "curves"  # OUT/curves/: the plots of log.csv (sample files end in .wav or .png: no clash)


SHOWN_META = ["kind", "step", "seed", "temperature", "label", "engine", "seconds", "sample_rate", "took_s",
              "created", "checkpoint"]
# What changes when the same page is made again (when, and how fast this machine was): left out of
# a page built with timings=False, such as the demo's committed samples/index.html.
TIMING_META = {"took_s", "created"}


HIDDEN_META = {"wav", "spectrogram", "input", "folder", "run", "inferred"}


@dataclass
class Page:
    """What ``build_report`` wrote: the page and what it shows."""
    index: Path
    samples: list[dict[str, Any]]
    curves: list[str] = field(default_factory=list)


def plain_name(name: Any, suffix: str) -> str | None:
    """``name`` when it is a plain file name ending in ``suffix`` (never a path, never ../), else
    None: a name read from metadata anyone can edit (the rule is ``artifacts.plain_name``)."""
    from ..audio.artifacts import plain_name as is_plain

    return name if is_plain(name, suffix) else None


def find_run(run: Path | None) -> Path:
    """``run`` as given (it must be a run folder), or the newest run under ``runs/``."""
    if run is None:
        from ..runs import newest_run

        return newest_run()
    run = Path(run)
    if not run.exists():
        raise CheckpointError(f"{run}: no such run folder")
    if not run.is_dir():
        raise CheckpointError(f"{run}: not a folder (give a run folder, e.g. runs/tiny)")
    if not (run / "config.toml").is_file() and not (run / "checkpoints").is_dir():
        raise CheckpointError(f"{run}: not a run folder (no config.toml or checkpoints/; train it first)")
    return run


def read_log(path: Path) -> list[dict[str, float | None]]:
    """log.csv as rows of numbers (None where a column is empty); no file: no rows."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    rows = []
    for row in csv.DictReader(text.splitlines()):
        parsed = {}
        for key, value in row.items():
            try:
                parsed[key] = float(value) if value not in (None, "") else None
            except (TypeError, ValueError):
                parsed[key] = None
        if parsed.get("step") is not None:
            rows.append(parsed)
    return rows


def run_facts(run: Path, rows: list[dict]) -> dict[str, Any]:
    """Name, step, parameters, receptive field and resolved config (a dict, or the raw text when
    config.toml cannot be parsed), from the latest checkpoint where there is one."""
    from ..model.checkpoint import describe_checkpoint
    from ..runs import checkpoint_paths

    facts: dict[str, Any] = {"name": run.resolve().name, "step": None, "best_val_bits": None,
                             "parameters": None, "receptive_field": None, "config": None, "config_text": None}
    config_path = run / "config.toml"
    if config_path.is_file():
        text = config_path.read_text(encoding="utf-8", errors="replace")
        try:
            facts["config"] = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            facts["config_text"] = text
    checkpoint = next((p for p in checkpoint_paths(run).values() if p.is_file()), None)
    if checkpoint is not None:
        described = describe_checkpoint(checkpoint)
        facts.update(step=described["step"], best_val_bits=described["best_val_bits"],
                     parameters=described["parameters"],
                     receptive_field=(described["receptive_field_samples"], described["receptive_field_ms"]))
        if facts["config"] is None and facts["config_text"] is None:
            facts["config"] = described["config"]
    elif facts["config"] is not None:
        from ..config import Config
        from ..model.network import WaveNet

        config = Config.from_dict(facts["config"], source=str(config_path))
        rf = WaveNet(config.model).receptive_field
        facts.update(parameters=WaveNet(config.model).parameter_count(),
                     receptive_field=(rf, round(1000 * rf / config.data.sample_rate, 2)))
    if facts["step"] is None and rows:
        facts["step"] = int(rows[-1]["step"])
    return facts


def _timestamp(record: dict, fallback: Path) -> float:
    created = str(record.get("created", ""))
    for parse in (lambda s: datetime.strptime(s, "%Y-%m-%dT%H:%M:%S%z"), datetime.fromisoformat):
        try:
            return parse(created).timestamp()
        except ValueError:
            pass
    try:
        return fallback.stat().st_mtime
    except OSError:
        return 0.0


def input_of(record: dict[str, Any]) -> tuple[str | None, str | None]:
    """A vocode sample's input recording beside it: (WAV name, spectrogram name), each None
    when absent or not a plain file name. ``input`` is {"wav", "spectrogram", "source"} as
    vocode writes it (``artifacts``); a bare WAV name is accepted too."""
    given = record.get("input")
    wav, png = (given.get("wav"), given.get("spectrogram")) if isinstance(given, dict) else (given, None)
    return (wav if plain_name(wav, ".wav") else None), (png if plain_name(png, ".png") else None)


def find_samples(run_name: str, folders: list[Path]) -> list[dict[str, Any]]:
    """This run's samples in ``folders``, newest first (metadata records with "folder")."""
    from ..audio.artifacts import read_samples
    from ..outputs import safe_name

    found, seen = [], set()
    names = {run_name, safe_name(run_name)}  # synth names its files and metadata after the safe one
    pattern = re.compile(rf"(?:{'|'.join(re.escape(n) for n in names)})-step(\d+)(?:-(.+?))?-seed(-?\d+)\.wav")
    for folder in folders:
        key = folder.resolve()
        if key in seen or not folder.is_dir():
            continue
        seen.add(key)
        records = read_samples(folder)
        inputs = {input_of(r)[0] for r in records} - {None}
        described = {r["wav"] for r in records}
        for record in records:
            if record["wav"] in inputs:  # another sample's input recording, shown beside it
                continue
            run = record.get("run")
            if isinstance(run, str) and (run in names or Path(run).name in names):
                found.append(record)
        for wav in sorted(folder.glob("*.wav")):  # synth's WAVs from before metadata was written
            match = pattern.fullmatch(wav.name)
            if match and wav.name not in described and wav.name not in inputs and not wav.with_suffix(".json").exists():
                step, label, seed = match.groups()
                found.append({"kind": "synth", "run": run_name, "step": int(step), "seed": int(seed),
                              **({"label": label} if label else {}), "wav": wav.name, "folder": str(folder),
                              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(wav.stat().st_mtime)),
                              "inferred": True})
    order = [(_timestamp(r, Path(r["folder"]) / r["wav"]), _mtime_ns(Path(r["folder"]) / r["wav"]), r["wav"])
             for r in found]
    return [r for _, r in sorted(zip(order, found), key=lambda pair: pair[0], reverse=True)]


def _mtime_ns(path: Path) -> int:
    meta = path.with_suffix(".json")
    try:
        return (meta if meta.exists() else path).stat().st_mtime_ns
    except OSError:
        return 0


class _Folder:
    """The page's folder: files put into it under unique plain names, each written atomically."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.root = out.resolve()
        self.names: dict[str, Path] = {}  # name in OUT -> the file it shows
        self.reserved = {"index.html", CURVES}

    def _claim(self, wanted: str, source: Path) -> str:
        stem, suffix = os.path.splitext(wanted)
        name, i = wanted, 1
        while name in self.reserved or (name in self.names and self.names[name] != source):
            i += 1
            name = f"{stem}-{i}{suffix}"
        self.names[name] = source
        return name

    def put(self, source: Path) -> str:
        """Show ``source`` in the page: its name in OUT (in place when it is already there)."""
        source = source.resolve()
        if source.parent == self.root and source.name not in self.reserved:
            return self._claim(source.name, source)
        for name, shown in self.names.items():
            if shown == source:
                return name
        name = self._claim(source.name, source)
        target = self.out / name
        if target.exists() and os.path.samefile(target, source):
            return name
        tmp = self.out / f".{name}.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        try:
            try:
                os.link(source, tmp)
            except OSError:  # another filesystem, or links not allowed: a copy
                shutil.copyfile(source, tmp)
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


def _spectrogram(folder: Path, wav: str, png: Any, page: _Folder) -> str:
    """The page's name for the spectrogram of ``folder/wav``: the PNG its metadata names, or the
    one beside it (NAME.png), or one drawn now into the page's folder."""
    for name in (plain_name(png, ".png"), Path(wav).with_suffix(".png").name):
        if name and (folder / name).is_file():
            return page.put(folder / name)
    import soundfile as sf

    from ..audio.artifacts import spectrogram_png
    from ..audio.io import load_audio

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
    plots = [("bits.png", "bits per sample: training (noisy inputs, per logged step) and validation",
              [("train_bits", "training"), ("val_bits", "validation")], "bits / sample"),
             ("lr.png", "learning rate", [("lr", "learning rate")], "learning rate")]
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


def build_report(run: Path | None = None, sample_dirs: list[Path] | None = None, out: Path | None = None,
                 log: Callable[[str], None] = print, timings: bool = True) -> Page:
    """Write the page about ``run`` (default: the newest) into ``out`` (default RUN/report).
    ``timings=False``: no date, elapsed times or generation times (``TIMING_META``) on the page,
    so that the same run and samples make the same bytes."""
    run = find_run(run)
    out = Path(out) if out is not None else run / "report"
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder (give --out a folder for the page)")
    with no_empty_folders_on_failure(out):
        return _build_report(run, sample_dirs, out, log, timings)


def _build_report(run: Path, sample_dirs: list[Path] | None, out: Path, log: Callable[[str], None],
                  timings: bool = True) -> Page:
    if sample_dirs:
        for folder in sample_dirs:
            if not Path(folder).is_dir():
                raise ConfigError(f"--samples {folder}: no such folder")
        folders = [Path(f) for f in sample_dirs]
    else:
        folders = [run / "samples", Path("samples")]
    rows = read_log(run / "log.csv")
    facts = run_facts(run, rows)
    out.mkdir(parents=True, exist_ok=True)
    page = _Folder(out)
    curves = draw_curves(rows, out / CURVES) if rows else []
    samples = []
    for record in find_samples(facts["name"], folders):
        folder = Path(record["folder"])
        try:
            shown = {"record": record, "png": _spectrogram(folder, record["wav"], record.get("spectrogram"), page)}
            source, source_png = input_of(record)
            if source and (folder / source).is_file():
                shown["input_png"] = _spectrogram(folder, source, source_png, page)
                shown["input_wav"] = page.put(folder / source)
        except (AudioReadError, RuntimeError) as exc:  # soundfile's errors are RuntimeErrors
            log(f"skipped {folder / record['wav']}: cannot read it ({exc})")
            continue
        shown["wav"] = page.put(folder / record["wav"])
        samples.append(shown)
    index = out / "index.html"
    atomic_write_text(index, render(facts, rows, curves, samples, timings))  # last: the page appears complete
    log(f"wrote {index}: {len(samples)} sample{'s' * (len(samples) != 1)}, "
        f"{'curves of ' + str(len(rows)) + ' log rows' if rows else 'no training log yet'}")
    return Page(index, [s["record"] for s in samples], [name for name, _ in curves])


STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;padding:0 1em;color:#222}
h1{margin-bottom:.2em} table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ccc;padding:.2em .6em;
text-align:left;vertical-align:top} th{background:#f4f4f4} .sample{border:1px solid #ddd;border-radius:6px;
padding:.8em;margin:1em 0} .pair{display:flex;gap:1em;flex-wrap:wrap} .pair>figure{flex:1;min-width:300px;margin:0}
figure{margin:0 0 .5em 0} figure img,.curve img{max-width:100%;height:auto} audio{width:100%} .meta{font-size:.9em;color:#444}
.missing{color:#b00;font-weight:bold} code{background:#f4f4f4;padding:0 .2em} .empty{color:#666;font-style:italic}
"""


# Marks every player and image with what happened when it loaded (data-loaded="yes" or "error", the
# duration or width); a failure is also said in words beside it. Viewing needs none of it.
SCRIPT = """
(function(){
  function failed(el){el.setAttribute('data-loaded','error');var n=document.createElement('span');
    n.className='missing';n.textContent=' file missing: '+el.getAttribute('src');el.parentNode.insertBefore(n,el.nextSibling);}
  document.querySelectorAll('audio').forEach(function(a){
    function ok(){a.setAttribute('data-loaded','yes');a.setAttribute('data-duration',String(a.duration));}
    a.addEventListener('loadedmetadata',ok);a.addEventListener('error',function(){failed(a);});
    if(a.readyState>=1){ok();} else if(a.error){failed(a);}
  });
  function image(i){if(i.naturalWidth>0){i.setAttribute('data-loaded','yes');i.setAttribute('data-width',String(i.naturalWidth));}
    else{failed(i);}}
  document.querySelectorAll('img').forEach(function(i){
    if(i.complete){image(i);} else {i.addEventListener('load',function(){image(i);});i.addEventListener('error',function(){failed(i);});}
  });
})();
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _src(name: str) -> str:
    return _e(quote(name))


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _media(wav: str, png: str, caption: str, role: str) -> str:
    return (f'<figure data-role="{role}"><figcaption>{_e(caption)}: <code>{_e(wav)}</code></figcaption>'
            f'<audio controls preload="metadata" src="{_src(wav)}"></audio>'
            f'<img class="spectrogram" src="{_src(png)}" alt="spectrogram of {_e(wav)}"></figure>')


def _sample(shown: dict, timings: bool = True) -> str:
    record = shown["record"]
    keys = [k for k in SHOWN_META if k in record] + sorted(
        k for k in record if k not in SHOWN_META and k not in HIDDEN_META and isinstance(k, str))
    keys = [k for k in keys if timings or k not in TIMING_META]
    meta = "".join(f"<tr><th>{_e(k)}</th><td>{_e(_number(record[k]))}</td></tr>"
                   for k in keys if isinstance(record[k], (str, int, float, bool)) or record[k] is None)
    if record.get("inferred"):
        meta += "<tr><th>metadata</th><td>none beside the WAV: step, seed and label from its name</td></tr>"
    if "input_wav" in shown:
        body = ('<div class="pair">' + _media(shown["input_wav"], shown["input_png"], "input", "input")
                + _media(shown["wav"], shown["png"], "output", "output") + "</div>")
    else:
        body = _media(shown["wav"], shown["png"], str(record.get("kind", "sample")), "output")
    return (f'<section class="sample" data-kind="{_e(record.get("kind", ""))}"><h3>{_e(record["wav"])}</h3>'
            f'{body}<table class="meta">{meta}</table></section>')


def render(facts: dict, rows: list[dict], curves: list[tuple[str, str]], samples: list[dict],
           timings: bool = True) -> str:
    name = facts["name"]
    rf = facts["receptive_field"]
    summary = [("run", name), ("step", facts["step"] if facts["step"] is not None else "not trained yet")]
    if facts["parameters"] is not None:
        summary.append(("parameters", f"{facts['parameters']:,}"))
    if rf is not None:
        summary.append(("receptive field", f"{rf[0]} samples ({rf[1]} ms)"))
    if facts["best_val_bits"] is not None:
        summary.append(("best validation", f"{facts['best_val_bits']:.4f} bits/sample"))
    parts = [f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
             f"<title>wavegen report: {_e(name)}</title><style>{STYLE}</style></head><body>",
             f"<h1>wavegen run <code>{_e(name)}</code></h1>",
             "<p class=\"meta\">made by <code>wavegen report</code>"
             + (f" on {_e(time.strftime('%Y-%m-%d %H:%M'))}" if timings else "")
             + "; everything it shows is in this folder.</p>",
             "<table id=\"summary\">" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in summary)
             + "</table>"]

    parts.append("<h2>Training</h2>")
    if curves:
        parts += [f'<figure class="curve"><img src="{_src(CURVES + "/" + n)}" alt="{_e(c)}">'
                  f"<figcaption>{_e(c)}</figcaption></figure>" for n, c in curves]
    else:
        parts.append('<p class="empty" id="no-log">No training log yet (no log.csv in the run).</p>')

    validation = [r for r in rows if r.get("val_bits") is not None]
    parts.append("<h2>Validation history</h2>")
    if validation:
        best = min(r["val_bits"] for r in validation)
        cells = []
        for r in validation:
            train = "" if r.get("train_bits") is None else f"{r['train_bits']:.4f}"
            elapsed = "" if r.get("elapsed_s") is None else f"{r['elapsed_s']:g}"
            mark = " ← best" if r["val_bits"] == best else ""
            cells.append(f"<tr><td>{int(r['step'])}</td><td>{r['val_bits']:.4f}{mark}</td><td>{train}</td>"
                         + (f"<td>{elapsed}</td>" if timings else "") + "</tr>")
        parts.append('<table id="validation"><tr><th>step</th><th>validation bits/sample</th>'
                     "<th>training bits/sample</th>" + ("<th>elapsed (s)</th>" if timings else "") + "</tr>"
                     + "".join(cells) + "</table>")
    else:
        parts.append('<p class="empty">No validation yet.</p>')

    parts.append(f"<h2>Samples ({len(samples)}, newest first)</h2>")
    if samples:
        parts += [_sample(s, timings) for s in samples]
    else:
        parts.append('<p class="empty" id="no-samples">No samples of this run yet: <code>wavegen synth</code> or '
                     "<code>wavegen vocode</code> writes them (to <code>samples/</code>), then run "
                     "<code>wavegen report</code> again.</p>")

    parts.append("<h2>Config</h2>")
    if facts["config"] is not None:
        for section, values in facts["config"].items():
            if isinstance(values, dict):
                parts.append(f"<h3>[{_e(section)}]</h3><table class=\"config\">" + "".join(
                    f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in values.items()) + "</table>")
            else:
                parts.append(f"<p>{_e(section)} = {_e(values)}</p>")
    elif facts["config_text"] is not None:
        parts.append(f"<pre>{_e(facts['config_text'])}</pre>")
    else:
        parts.append('<p class="empty">No config.toml in the run.</p>')
    parts.append(f"<script>{SCRIPT}</script></body></html>\n")
    return "\n".join(parts)
