"""``wavegen report --samples S`` publishes only the samples' own files: a WAV or PNG in S that is
a symbolic link (to any file the user can read) is never followed into the page folder, which
is meant to be zipped or committed."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from wavegen.audio.artifacts import write_sample
from wavegen.config import to_toml
from wavegen.recipe import load_recipe
from wavegen.report.page import build_report

from helpers import tone


@pytest.fixture
def run_and_samples(tmp_path):
    run = tmp_path / "tiny"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.toml").write_text(to_toml(load_recipe("tiny")))
    samples, outside = tmp_path / "S", tmp_path / "private"
    samples.mkdir()
    outside.mkdir()
    write_sample(samples / "tiny-step10-seed0.wav", tone(440, 0.1), 16000, {"run": "tiny", "step": 10, "seed": 0})
    write_sample(outside / "secret.wav", tone(550, 0.1), 16000, {"run": "other"})
    (outside / "notes.txt").write_text("private words\n")
    return run, samples, outside


def _link(target, link):
    os.symlink(target, link)


def _meta(samples, name, **extra):
    record = {"run": "tiny", "step": 10, "seed": 1, "wav": name, **extra}
    (samples / name).with_suffix(".json").write_text(json.dumps(record))


LEAKS = {
    "a WAV its record names, linked to a WAV elsewhere": lambda s, o: (
        _link(o / "secret.wav", s / "leak.wav"),
        _meta(s, "leak.wav"),
    ),
    "a WAV linked to a text file": lambda s, o: (_link(o / "notes.txt", s / "text.wav"), _meta(s, "text.wav")),
    "a WAV named as synth names them, with no record, linked": lambda s, o: _link(
        o / "secret.wav", s / "tiny-step20-seed3.wav"
    ),
    "a sample's spectrogram linked to a PNG elsewhere": lambda s, o: (
        os.remove(s / "tiny-step10-seed0.png"),
        _link(o / "secret.png", s / "tiny-step10-seed0.png"),
    ),
    "a vocode record whose input recording is a link": lambda s, o: (
        shutil.copy(s / "tiny-step10-seed0.wav", s / "v.wav"),
        _link(o / "secret.wav", s / "v.input.wav"),
        _meta(s, "v.wav", input={"wav": "v.input.wav"}),
    ),
    "a relative link": lambda s, o: (_link("../private/secret.wav", s / "rel.wav"), _meta(s, "rel.wav")),
}


@pytest.mark.parametrize("kind", sorted(LEAKS))
def test_no_file_outside_the_samples_reaches_the_page(run_and_samples, kind, said):
    run, samples, outside = run_and_samples
    LEAKS[kind](samples, outside)
    page = build_report(run, [samples], run / "page", timings=False)
    private = {(os.stat(p).st_ino, os.stat(p).st_dev) for p in outside.iterdir()}
    secrets = {p.read_bytes() for p in outside.iterdir()}
    for shown in (run / "page").rglob("*"):
        assert not shown.is_symlink()
        if shown.is_file():
            assert (shown.stat().st_ino, shown.stat().st_dev) not in private, shown
            assert shown.read_bytes() not in secrets, shown
    assert "tiny-step10-seed0.wav" in [r["wav"] for r in page.samples]  # the real sample is still shown


def test_each_linked_sample_is_named_in_one_line(run_and_samples, said):
    run, samples, outside = run_and_samples
    for kind in ("a WAV its record names, linked to a WAV elsewhere", "a WAV linked to a text file"):
        LEAKS[kind](samples, outside)
    build_report(run, [samples], run / "page", timings=False)
    skipped = sorted(line for line in said if line.startswith("skipped "))
    assert skipped == [
        f"skipped {samples / name}: not a WAV file of its own (a link, or not audio)"
        for name in ("leak.wav", "text.wav")
    ]
