"""`prepare` and files it did not write: a user's manifest.json (or any file of a prepared set's
names) in --out is refused, never replaced; a new set replaces the whole previous one; the
project's own outputs (runs, samples, report pages, exports) are never taken for recordings;
and two prepares into one --out do not run at once."""

import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import wavegen
from wavegen.audio.artifacts import SampleRecord
from wavegen.audio.io import write_wav
from wavegen.errors import ConfigError

from helpers import ENV, one_line_error, tone
from helpers import wavegen as run_wavegen


def tiny():
    return wavegen.load_recipe("tiny")  # (a fresh one: override changes a config in place)


def dataset(folder: Path, pitches=(440, 330)) -> Path:
    for hz in pitches:
        write_wav(folder / f"tone{hz}.wav", tone(hz, 1.0), 16000)
    return folder


CORPUS = '{"utterances": [{"file": "tone440.wav", "text": "hello"}]}\n'
FOREIGN = [  # a file of a prepared set's name that wavegen did not write
    ("manifest.json", CORPUS),
    ("manifest.json", "[1, 2, 3]\n"),
    ("manifest.json", '{"format": "another-tool"}'),
    ("manifest.json", "not json at all\n"),
    ("train.u8", "\x00\x01\x02"),
    ("val.mel", "floats"),
]


@pytest.mark.parametrize("name, content", FOREIGN)
@pytest.mark.parametrize("same_folder", [False, True])
def test_a_users_file_where_prepare_writes_is_refused_and_kept(tmp_path, name, content, same_folder):
    data = dataset(tmp_path / "ds")
    out = data if same_folder else tmp_path / "out"
    out.mkdir(exist_ok=True)
    path = out / name
    path.write_text(content)
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(ConfigError, match=f"{path.name}: not .* that wavegen wrote, so it is left as it is"):
        wavegen.prepare(data, out, tiny())
    assert path.read_text() == content
    assert sorted(p.name for p in out.iterdir()) == before  # nothing written, nothing left


def test_the_command_line_names_the_users_manifest_in_one_line(tmp_path):
    data = dataset(tmp_path / "ds")
    (data / "manifest.json").write_text(CORPUS)
    proc = run_wavegen("prepare", "ds", "--out", "ds", "--recipe", "tiny", cwd=tmp_path, ok=False)
    one_line_error(proc, "ds/manifest.json: not a manifest of prepared data that wavegen wrote")
    assert proc.returncode == 1 and (data / "manifest.json").read_text() == CORPUS


@pytest.mark.parametrize("first, second", [(20, 0), (16, 0), (20, 12)])
def test_a_new_set_replaces_the_whole_previous_one(tmp_path, first, second):
    data = dataset(tmp_path / "ds")
    out = tmp_path / "prepared"
    wavegen.prepare(data, out, wavegen.load_recipe("tiny").override(f"data.mel_bands={first}"))
    assert (out / "train.mel").is_file() and (out / "val.mel").is_file()
    manifest = wavegen.prepare(data, out, wavegen.load_recipe("tiny").override(f"data.mel_bands={second}"))
    names = sorted(p.name for p in out.iterdir())
    if second:
        assert names == ["manifest.json", "train.mel", "train.u8", "val.mel", "val.u8"]
        frames = manifest["train_frames"] * second * 4
        assert (out / "train.mel").stat().st_size == frames  # the new features, not the old
    else:
        assert names == ["manifest.json", "train.u8", "val.u8"]  # no stale log-mels beside the new set
    wavegen.fit(out, tmp_path / "run", tiny().override("train.steps=1"))  # and the set trains


def test_a_set_of_another_dataset_is_replaced_with_a_word(tmp_path, said):
    out = tmp_path / "prepared"
    wavegen.prepare(dataset(tmp_path / "a"), out, tiny())
    wavegen.prepare(dataset(tmp_path / "b", (220,)), out, tiny())
    assert any(line.startswith("note: replaced the prepared data of ") and "/a" in line for line in said), said


def project(root: Path, kinds: list[str]) -> dict[str, str]:
    """A project folder after wavegen ran in it: its recordings in dataset/, and wavegen's
    outputs of ``kinds``; returns what prepare must say of each output (source -> reason)."""
    dataset(root / "dataset")
    rate, audio = 16000, tone(550, 0.5)
    record = SampleRecord(
        "synth", "tiny", "runs/tiny/checkpoints/best.pt", 40, "trained", 0, 1.0, "native", "int8", "cpu"
    )
    expected = {}
    if "samples" in kinds:  # synth's output in the project's samples/
        for seed in (0, 1):
            replace(record, seed=seed).write(root / "samples" / f"tiny-step40-seed{seed}.wav", audio, rate)
            expected[f"samples/tiny-step40-seed{seed}.wav"] = "made by wavegen synth: not a recording"
    if "vocode" in kinds:  # vocode's output and the input's copy beside it
        out = root / "voc" / "take-vocoded.wav"
        write_wav(out.with_suffix(".input.wav"), audio, rate)
        extra = {"input": {"source": "x/take.wav", "wav": "take-vocoded.input.wav", "spectrogram": "none.png"}}
        replace(record, kind="vocode", extra=extra).write(out, audio, rate)
        expected["voc/take-vocoded.wav"] = expected["voc/take-vocoded.input.wav"] = (
            "made by wavegen vocode: not a recording"
        )
    if "run" in kinds:  # a run folder, with training's periodic samples in it
        run = root / "runs" / "tiny"
        (run / "checkpoints").mkdir(parents=True)
        (run / "log.csv").write_text("step,train_bits,val_bits,lr,grad_norm,samples_per_s,elapsed_s,skipped\n")
        write_wav(run / "samples" / "step40.wav", audio, rate)  # (no record: the run folder says it)
        expected["runs/tiny/"] = "a wavegen run: not searched"
    if "report" in kinds:  # a report page elsewhere, with copies of the samples and no records
        page = root / "page"
        write_wav(page / "tiny-step40-seed0.wav", audio, rate)
        (page / "index.html").write_text('<!doctype html><p class="meta">made by <code>wavegen report</code>; x</p>')
        expected["page/"] = "a wavegen report page: not searched"
    return expected


@pytest.mark.parametrize(
    "kinds", [["samples"], ["vocode"], ["run"], ["report"], ["samples", "vocode", "run", "report"]]
)
def test_the_projects_own_outputs_are_not_taken_for_recordings(tmp_path, kinds, said):
    expected = project(tmp_path, kinds)
    manifest = wavegen.prepare(tmp_path, tmp_path / "prepared", tiny())
    assert sorted(entry["source"] for entry in manifest["files"]) == ["dataset/tone330.wav", "dataset/tone440.wav"]
    left_out = {e["source"]: e["reason"] for e in manifest["skipped"] if "wavegen" in e["reason"]}
    assert left_out == expected
    assert all(e.get("ignored") for e in manifest["skipped"])  # not problems: the exit status stays 0
    assert f"left out {_count(expected)} that wavegen wrote" in said[-1], said[-1]


def _count(entries: dict) -> str:
    folders = sum(source.endswith("/") for source in entries)
    files = len(entries) - folders
    parts = [f"{n} {word}{'s' if n != 1 else ''}" for n, word in ((files, "file"), (folders, "folder")) if n]
    return " and ".join(parts)


def test_a_wav_beside_a_json_that_is_not_a_sample_record_is_still_a_recording(tmp_path):
    data = dataset(tmp_path / "ds")
    for text in ('{"kind": "synth"}', '{"wav": "tone440.wav"}', '{"kind": "podcast", "wav": "tone440.wav"}'):
        (data / "tone440.json").write_text(text)
        manifest = wavegen.prepare(data, tmp_path / "out", tiny())
        assert len(manifest["files"]) == 2, text


HOLD = """
import fcntl, os, socket, sys, time
from pathlib import Path
folder = Path(sys.argv[1]); folder.mkdir(parents=True, exist_ok=True)
fd = os.open(folder / ".wavegen.lock", os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, f"{os.getpid()} {socket.gethostname()}\\n".encode())
print("held", flush=True)
time.sleep(60)
"""


def test_a_second_prepare_into_the_same_out_is_refused_while_the_first_writes(tmp_path):
    data = dataset(tmp_path / "ds")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "out")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        proc = run_wavegen("prepare", "ds", "--out", "out", "--recipe", "tiny", cwd=tmp_path, ok=False, env=ENV)
        one_line_error(proc, f"out: another wavegen process prepares data here (process {holder.pid})")
        assert not (tmp_path / "out" / "manifest.json").exists()
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    manifest = wavegen.prepare(data, tmp_path / "out", tiny())  # a killed holder's lock does not block
    assert len(manifest["files"]) == 2 and not (tmp_path / "out" / ".wavegen.lock").exists()
    assert np.fromfile(tmp_path / "out" / "train.u8", np.uint8).size == manifest["train_samples"]
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["format"] == "wavegen-prepared"
