"""``wavegen report``: a real tiny run and its samples → the page, checked by structure and in a
real browser (headless Chromium, installed here when missing and possible)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest

from wavegen.audio.artifacts import spectrogram_png, write_sample
from wavegen.audio.io import write_wav
from wavegen.data.builtin import make_dataset

from helpers import tone

pytestmark = pytest.mark.slow  # (make test-fast leaves these out; make test runs them)

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
HOSTILE = "<script>alert(1)</script>"


def wavegen(*args, cwd, ok=True):
    proc = subprocess.run(
        [sys.executable, "-m", "wavegen", *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600
    )
    if ok:
        assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def one_line_error(proc, text):
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and text in errors[0], proc.stderr


def sample(folder: Path, name: str, created: str, seconds: float = 0.25, freq: float = 440.0, **meta) -> None:
    """A sample as synth/vocode write it, made at ``created`` (write_sample stamps the present)."""
    write_sample(folder / name, tone(freq, seconds), 16000, {"run": "tiny", "step": 10, "seed": 0, **meta})
    path = (folder / name).with_suffix(".json")
    path.write_text(json.dumps({**json.loads(path.read_text()), "created": created}))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A tiny run trained for 10 steps through the command line, with samples in RUN/samples and
    ./samples: newest first they are
        1. ``<script>`` label        (samples/, 2024-01-05)
        2. vocode, input beside it   (RUN/samples/, 2024-01-04)
        3. "tiny take #2.wav"        (samples/, 2024-01-03: a name that needs quoting in a URL)
        4. synth, its PNG deleted    (samples/, 2024-01-02: the report draws one)
        5. synth in RUN/samples      (2024-01-01)
        6. a bare tiny-step10-seed7.wav with no metadata, dated 2023 (shown, from its name)
    and three that must not appear: another run's sample, metadata whose "wav" is "../x.wav",
    and a WAV without metadata that is not this run's."""
    work = tmp_path_factory.mktemp("report")
    make_dataset(work / "dataset", files=3, seconds=1.5)
    wavegen("prepare", "dataset", "--recipe", "tiny", cwd=work)
    wavegen(
        "train",
        "--recipe",
        "tiny",
        "--steps",
        "10",
        "--set",
        "train.val_every=5",
        "--set",
        "train.log_every=5",
        "--set",
        "train.checkpoint_every=5",
        "--quiet",
        cwd=work,
    )
    run_samples, samples = work / "runs" / "tiny" / "samples", work / "samples"
    sample(
        samples,
        "tiny-hostile.wav",
        "2024-01-05T00:00:00+0000",
        kind="synth",
        label=HOSTILE,
        temperature=0.9,
        engine="native",
        took_s=0.01,
    )
    sample(
        run_samples,
        "speech-vocoded.wav",
        "2024-01-04T00:00:00+0000",
        seconds=0.5,
        kind="vocode",
        input={
            "source": "speech.wav",
            "wav": "speech-vocoded.input.wav",  # as vocode writes it
            "spectrogram": "speech-vocoded.input.png",
        },
        engine="torch",
    )
    write_wav(run_samples / "speech-vocoded.input.wav", tone(330, 0.5), 16000)
    (run_samples / "speech-vocoded.input.png").write_bytes(spectrogram_png(tone(330, 0.5), 16000))
    sample(samples, "tiny take #2.wav", "2024-01-03T00:00:00+0000", kind="synth", seed=2)
    sample(samples, "tiny-nopng.wav", "2024-01-02T00:00:00+0000", kind="synth", seed=3)
    (samples / "tiny-nopng.png").unlink()
    sample(run_samples, "tiny-step10-seed0.wav", "2024-01-01T00:00:00+0000", kind="synth")
    write_wav(samples / "tiny-step10-seed7.wav", tone(500, 0.25), 16000)
    os.utime(samples / "tiny-step10-seed7.wav", (1.6e9, 1.6e9))  # 2020
    sample(samples, "other-step5-seed0.wav", "2024-01-06T00:00:00+0000", run="other")
    write_wav(work / "x.wav", tone(200, 0.25), 16000)
    sample(samples, "sneaky.wav", "2024-01-07T00:00:00+0000")
    meta = json.loads((samples / "sneaky.json").read_text())
    (samples / "sneaky.json").write_text(json.dumps({**meta, "wav": "../x.wav", "spectrogram": "../x.png"}))
    write_wav(samples / "default-step3-seed0.wav", tone(200, 0.25), 16000)
    return work


NEWEST_FIRST = [
    "tiny-hostile.wav",
    "speech-vocoded.wav",
    "tiny take #2.wav",
    "tiny-nopng.wav",
    "tiny-step10-seed0.wav",
    "tiny-step10-seed7.wav",
]


class Page(HTMLParser):
    """The page's structure: sections with their figures, audio and images."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.audio, self.images, self.curves, self.sections, self.scripts = [], [], [], [], 0
        self.inside, self._text = False, None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.sections.append({"kind": a.get("data-kind"), "title": "", "roles": [], "audio": [], "images": []})
            self.inside = True
        elif tag == "h3" and self.inside:
            self._text = []
        elif tag == "figure" and self.sections and "data-role" in a:
            self.sections[-1]["roles"].append(a["data-role"])
        elif tag == "audio":
            self.audio.append(a)
            if self.sections:
                self.sections[-1]["audio"].append(a["src"])
        elif tag == "img":
            (self.images if "spectrogram" in (a.get("class") or "") else self.curves).append(a)
            if self.sections and "spectrogram" in (a.get("class") or ""):
                self.sections[-1]["images"].append(a["src"])
        elif tag == "script":
            self.scripts += 1

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag == "section":
            self.inside = False
        if tag == "h3" and self._text is not None:
            self.sections[-1]["title"] = "".join(self._text)
            self._text = None


def local(out: Path, src: str) -> Path:
    """The file a relative link in the page names, which must be inside the page's folder."""
    assert src and ":" not in src and not src.startswith("/") and ".." not in src.split("/"), src
    path = (out / unquote(src)).resolve()
    assert path.is_relative_to(out.resolve()) and path.is_file(), src
    return path


@pytest.fixture(scope="module")
def report(workdir) -> Path:
    proc = wavegen("report", cwd=workdir)  # the newest run, RUN/samples and ./samples, out RUN/report
    assert "6 samples" in proc.stderr, proc.stderr
    return workdir / "runs" / "tiny" / "report"


def test_page_shows_the_run_its_curves_and_every_sample_newest_first(workdir, report):
    text = (report / "index.html").read_text(encoding="utf-8")
    page = Page(text)
    assert [s["title"] for s in page.sections] == NEWEST_FIRST
    # every sample a player and a spectrogram, plus the vocode sample's input: all files in the folder
    assert len(page.audio) == len(page.images) == len(NEWEST_FIRST) + 1
    for a in page.audio:
        assert "controls" in a and local(report, a["src"]).suffix == ".wav"
    for img in page.images:
        assert local(report, img["src"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(local(report, c["src"]).name for c in page.curves) == ["bits.png", "lr.png"]
    # the vocode sample: input and output side by side, each with its own player and spectrogram
    vocode = page.sections[1]
    assert vocode["kind"] == "vocode" and vocode["roles"] == ["input", "output"]
    assert [unquote(s) for s in vocode["audio"]] == ["speech-vocoded.input.wav", "speech-vocoded.wav"]
    assert [unquote(s) for s in vocode["images"]] == ["speech-vocoded.input.png", "speech-vocoded.png"]
    assert [s["roles"] for s in page.sections if s is not vocode] == [["output"]] * 5
    # copies (or links) of the originals, under the names the page uses
    assert (report / "tiny take #2.wav").read_bytes() == (workdir / "samples" / "tiny take #2.wav").read_bytes()
    assert "tiny%20take%20%232.wav" in text
    assert (report / "tiny-nopng.png").is_file() and not (workdir / "samples" / "tiny-nopng.png").exists()
    # the run: name, step, parameters, receptive field, config, validation history
    assert "<code>tiny</code>" in text and "129 samples (8.06 ms)" in text and "44,672" in text
    assert 'id="validation"' in text and "<th>residual_channels</th><td>16</td>" in text
    # hostile metadata is text; the only script is the page's own; other runs and ../ are left out
    assert HOSTILE not in text and html_escaped(HOSTILE) in text and page.scripts == 1
    assert "x.wav" not in text and "other-step5" not in text and "default-step3" not in text
    assert sorted(p.name for p in report.iterdir() if p.suffix == ".tmp") == []


def html_escaped(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def test_a_run_without_log_or_samples_says_so(tmp_path):
    from wavegen.config import to_toml
    from wavegen.recipe import load_recipe

    (tmp_path / "runs" / "fresh").mkdir(parents=True)
    (tmp_path / "runs" / "fresh" / "config.toml").write_text(to_toml(load_recipe("tiny")))
    wavegen("report", "--run", "runs/fresh", "--out", "page", cwd=tmp_path)
    text = (tmp_path / "page" / "index.html").read_text()
    assert 'id="no-log"' in text and 'id="no-samples"' in text and "not trained yet" in text
    assert "129 samples" in text and not Page(text).audio


def test_misuse_is_one_line(workdir, tmp_path):
    one_line_error(
        wavegen("report", "--run", "runs/nope", cwd=workdir, ok=False),
        "runs/nope: no such run folder (train one: wavegen train --run runs/nope)",
    )
    one_line_error(wavegen("report", "--run", "dataset", cwd=workdir, ok=False), "not a run folder")
    one_line_error(wavegen("report", cwd=tmp_path, ok=False), "no trained runs found")
    (tmp_path / "file").write_text("x")
    one_line_error(
        wavegen("report", "--run", str(workdir / "runs" / "tiny"), "--out", "file", cwd=tmp_path, ok=False),
        "file: --out is a file, not a folder",
    )
    one_line_error(
        wavegen("report", "--samples", "missing", cwd=workdir, ok=False), "--samples missing: no such folder"
    )


def test_demo_writes_its_page_beside_its_samples(tmp_path):
    wavegen("demo", "--steps", "10", "--seconds", "0.1", "--n", "1", "--quiet", cwd=tmp_path)
    samples = tmp_path / "samples"
    page = Page((samples / "index.html").read_text())
    assert [a["src"] for a in page.audio] == ["melodies-step10-seed0.wav"]  # shown in place, not copied
    assert (samples / page.images[0]["src"]).is_file() and len(page.curves) == 2
    text = (samples / "index.html").read_text()  # values as a reader writes them, not Python's
    assert "<th>label</th><td>none</td>" in text and "<th>weight_norm</th><td>true</td>" in text
    assert [r for r in (">None<", ">True<", ">False<") if r in text] == []
    assert sorted(p.name for p in samples.glob("*.wav")) == ["melodies-step10-seed0.wav"]
    # The demo's samples are committed: made again (elsewhere, later), not a byte may differ.
    again = tmp_path / "again"
    again.mkdir()
    wavegen("demo", "--steps", "10", "--seconds", "0.1", "--n", "1", "--quiet", cwd=again)
    files = sorted(p.relative_to(samples) for p in samples.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again / "samples") for p in (again / "samples").rglob("*") if p.is_file())
    for name in files:
        assert (samples / name).read_bytes() == (again / "samples" / name).read_bytes(), name
    meta = json.loads((samples / "melodies-step10-seed0.json").read_text())
    assert meta["engine"] and not {"took_s", "created"} & set(meta)


# --- in a real browser -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium: found, or installed with apt-get when this runs as root; else a skip
    that says why."""

    def found():
        for name in ("chromium", "chromium-browser"):
            path = shutil.which(name)
            if path and subprocess.run([path, "--version"], capture_output=True, timeout=60).returncode == 0:
                return path
        return None

    path = found()
    if path:
        return path
    if os.name != "posix" or os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip(
            "headless Chromium is not installed and cannot be installed here (needs root and apt-get): "
            "apt-get install chromium"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    for attempt in ([], [["apt-get", "update"]]):
        try:
            for command in attempt + [install]:
                subprocess.run(command, env=env, capture_output=True, timeout=1200)
        except subprocess.TimeoutExpired:
            break
        path = found()
        if path:
            return path
    pytest.skip("headless Chromium is not installed and `apt-get install chromium` did not install it")


def load(chromium: str, index: Path, profile: Path) -> Page:
    """The page as Chromium has it once its media loaded (the page's script marks each element)."""
    proc = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            index.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0 and "<audio" in proc.stdout, proc.stderr[-2000:]
    return Page(proc.stdout)


def test_every_player_and_image_loads_in_chromium(chromium, report, tmp_path):
    tick = time.perf_counter()
    page = load(chromium, report / "index.html", tmp_path / "profile")
    print(f"chromium loaded the page in {time.perf_counter() - tick:.1f} s")
    assert len(page.audio) == len(NEWEST_FIRST) + 1
    for a in page.audio:
        assert a.get("data-loaded") == "yes", a
        assert float(a["data-duration"]) in (0.25, 0.5), a
    assert len(page.images) == len(page.audio) and len(page.curves) == 2
    for img in page.images + page.curves:
        assert img.get("data-loaded") == "yes" and int(img["data-width"]) > 0, img

    # the check can fail: a copy of the folder with one WAV and one spectrogram gone
    broken = tmp_path / "broken"
    shutil.copytree(report, broken)
    (broken / "tiny take #2.wav").unlink()
    (broken / "speech-vocoded.input.png").unlink()
    page = load(chromium, broken / "index.html", tmp_path / "profile")
    failed = [unquote(e["src"]) for e in page.audio + page.images + page.curves if e.get("data-loaded") != "yes"]
    assert sorted(failed) == ["speech-vocoded.input.png", "tiny take #2.wav"]
