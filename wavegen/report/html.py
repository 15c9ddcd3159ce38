"""The report's HTML: the page's text, style and script, written from the facts, curves and
samples ``page`` gathered."""

from __future__ import annotations

import html
import time
from typing import Any
from urllib.parse import quote

import tomli_w

CURVES = "curves"  # OUT/curves/: the plots of log.csv (sample files end in .wav or .png: no clash)


SHOWN_META = [
    "kind",
    "step",
    "seed",
    "temperature",
    "label",
    "engine",
    "precision",
    "seconds",
    "sample_rate",
    "took_s",
    "created",
    "checkpoint",
]
# What changes when the same page is made again (when, and how fast this machine was): left out of
# a page built with timings=False, such as the demo's committed samples/index.html.
TIMING_META = {"took_s", "created"}


HIDDEN_META = {"wav", "spectrogram", "input", "folder", "run", "inferred"}


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


def toml_value(value: Any) -> str:
    """A setting's value as a recipe writes it (``true``, ``[]``, ``"mix"``), so that it can be
    pasted back into one; a value TOML cannot hold (None) as nothing."""
    if value is None:
        return ""
    return tomli_w.dumps({"v": value}).removeprefix("v = ").strip()


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _src(name: str) -> str:
    return _e(quote(name))


def _number(value: Any) -> str:
    """A sample record's value as a reader wants it: ``1.5``, ``none`` (not Python's ``None``)."""
    if isinstance(value, float):
        return f"{value:g}"
    if value is None:
        return "none"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _media(wav: str, png: str, caption: str, role: str) -> str:
    return (
        f'<figure data-role="{role}"><figcaption>{_e(caption)}: <code>{_e(wav)}</code></figcaption>'
        f'<audio controls preload="metadata" src="{_src(wav)}"></audio>'
        f'<img class="spectrogram" src="{_src(png)}" alt="spectrogram of {_e(wav)}"></figure>'
    )


def _sample(shown: dict, timings: bool = True) -> str:
    record = shown["record"]
    keys = [k for k in SHOWN_META if k in record] + sorted(
        k for k in record if k not in SHOWN_META and k not in HIDDEN_META and isinstance(k, str)
    )
    keys = [k for k in keys if timings or k not in TIMING_META]
    meta = "".join(
        f"<tr><th>{_e(k)}</th><td>{_e(_number(record[k]))}</td></tr>"
        for k in keys
        if isinstance(record[k], (str, int, float, bool)) or record[k] is None
    )
    if record.get("inferred"):
        meta += "<tr><th>metadata</th><td>none beside the WAV: step, seed and label from its name</td></tr>"
    if "input_wav" in shown:
        body = (
            '<div class="pair">'
            + _media(shown["input_wav"], shown["input_png"], "input", "input")
            + _media(shown["wav"], shown["png"], "output", "output")
            + "</div>"
        )
    else:
        body = _media(shown["wav"], shown["png"], str(record.get("kind", "sample")), "output")
    return (
        f'<section class="sample" data-kind="{_e(record.get("kind", ""))}"><h3>{_e(record["wav"])}</h3>'
        f'{body}<table class="meta">{meta}</table></section>'
    )


def render(
    facts: dict, rows: list[dict], curves: list[tuple[str, str]], samples: list[dict], timings: bool = True
) -> str:
    name = facts["name"]
    rf = facts["receptive_field"]
    summary = [("run", name), ("step", facts["step"] if facts["step"] is not None else "not trained yet")]
    if facts["parameters"] is not None:
        summary.append(("parameters", f"{facts['parameters']:,}"))
    if rf is not None:
        summary.append(("receptive field", f"{rf[0]} samples ({rf[1]} ms)"))
    if facts["best_val_bits"] is not None:
        summary.append(("best validation", f"{facts['best_val_bits']:.4f} bits/sample"))
    parts = [
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>wavegen report: {_e(name)}</title><style>{STYLE}</style></head><body>",
        f"<h1>wavegen run <code>{_e(name)}</code></h1>",
        '<p class="meta">made by <code>wavegen report</code>'
        + (f" on {_e(time.strftime('%Y-%m-%d %H:%M'))}" if timings else "")
        + "; everything it shows is in this folder.</p>",
        '<table id="summary">' + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in summary) + "</table>",
    ]

    parts.append("<h2>Training</h2>")
    if curves:
        parts += [
            f'<figure class="curve"><img src="{_src(CURVES + "/" + n)}" alt="{_e(c)}">'
            f"<figcaption>{_e(c)}</figcaption></figure>"
            for n, c in curves
        ]
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
            cells.append(
                f"<tr><td>{int(r['step'])}</td><td>{r['val_bits']:.4f}{mark}</td><td>{train}</td>"
                + (f"<td>{elapsed}</td>" if timings else "")
                + "</tr>"
            )
        parts.append(
            '<table id="validation"><tr><th>step</th><th>validation bits/sample</th>'
            "<th>training bits/sample</th>"
            + ("<th>elapsed (s)</th>" if timings else "")
            + "</tr>"
            + "".join(cells)
            + "</table>"
        )
    else:
        parts.append('<p class="empty">No validation yet.</p>')

    parts.append(f"<h2>Samples ({len(samples)}, newest first)</h2>")
    if samples:
        parts += [_sample(s, timings) for s in samples]
    else:
        parts.append(
            '<p class="empty" id="no-samples">No samples of this run yet: <code>wavegen synth</code> or '
            "<code>wavegen vocode</code> writes them (to <code>samples/</code>), then run "
            "<code>wavegen report</code> again.</p>"
        )

    parts.append("<h2>Config</h2>")
    if facts["config"] is not None:
        for section, values in facts["config"].items():
            if isinstance(values, dict):
                parts.append(
                    f'<h3>[{_e(section)}]</h3><table class="config">'
                    + "".join(f"<tr><th>{_e(k)}</th><td>{_e(toml_value(v))}</td></tr>" for k, v in values.items())
                    + "</table>"
                )
            else:
                parts.append(f"<p>{_e(section)} = {_e(toml_value(values))}</p>")
    elif facts["config_text"] is not None:
        parts.append(f"<pre>{_e(facts['config_text'])}</pre>")
    else:
        parts.append('<p class="empty">No config.toml in the run.</p>')
    parts.append(f"<script>{SCRIPT}</script></body></html>\n")
    return "\n".join(parts)
