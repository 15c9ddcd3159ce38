"""Files wavegen did not write, and earlier outputs: `train --run` on a folder holding a user's
log.csv or config.toml is refused before anything is touched; two `train` on one run do not
run at once; `synth` and `vocode` never replace another request's sample or a user's file
(a rerun of the same request replaces its own); `report` and `export` leave a user's files be."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import wavegen
from wavegen.audio.io import write_wav
from wavegen.bench.startup import as_trained, write_checkpoint
from wavegen.errors import ConfigError
from wavegen.synthesis.synth import synthesize
from wavegen.synthesis.vocode import vocode

from helpers import ENV, one_line_error, run_in_process, tone


def tiny():
    return wavegen.load_recipe("tiny")  # (a fresh one: override changes a config in place)


SMALL = ["train.batch_size=2", "train.segment_length=200", "train.val_every=2", "train.checkpoint_every=2"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("prepared")
    write_wav(root / "ds" / "a.wav", tone(440, 1.0), 16000)
    wavegen.prepare(root / "ds", root / "prepared", tiny())
    return root / "prepared"


FOREIGN_RUN_FILES = [
    ("log.csv", "a,b,c\n1,2,3\n"),
    ("log.csv", "step;loss\n1;0.5\n"),
    ("log.csv", "epoch,step,loss\n"),
    ("config.toml", 'name = "my project"\n[tool]\nx = 1\n'),
    ("config.toml", "[train]\nsteps = 5\n[paths]\ndata = 'x'\n"),
    ("config.toml", "this is not toml = = =\n"),
]


@pytest.mark.parametrize("name, content", FOREIGN_RUN_FILES)
def test_a_run_folder_holding_a_users_file_is_refused_before_anything_is_touched(prepared, tmp_path, name, content):
    run = tmp_path / "mine"
    run.mkdir()
    (run / name).write_text(content)
    (run / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match=f"{name}: not a .* that wavegen wrote, so it is left as it is"):
        wavegen.fit(prepared, run, tiny().override("train.steps=2", *SMALL))
    assert (run / name).read_text() == content
    assert sorted(p.name for p in run.iterdir()) == sorted([name, "notes.txt"])  # no checkpoint, no log


def test_the_command_line_refuses_a_users_log_in_one_line(prepared, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "log.csv").write_text(FOREIGN_RUN_FILES[0][1])
    status, _, stderr = run_in_process(
        "train", "--data", str(prepared), "--run", "mine", "--recipe", "tiny", cwd=tmp_path
    )
    assert status == 1 and stderr.startswith("Error: mine/log.csv: not a training log that wavegen wrote"), stderr
    assert (tmp_path / "mine" / "log.csv").read_text() == FOREIGN_RUN_FILES[0][1]


@pytest.mark.parametrize("edit", ["none", "no marker", "edited"])
def test_wavegens_own_run_files_are_still_its_own(prepared, tmp_path, edit):
    """A run's config.toml (with its first line, without it as older runs wrote it, or edited by
    hand) and log.csv are wavegen's: the run resumes."""
    run = tmp_path / "run"
    wavegen.fit(prepared, run, tiny().override("train.steps=2", *SMALL))
    text = (run / "config.toml").read_text()
    assert text.startswith("# wavegen run settings")
    if edit == "no marker":
        (run / "config.toml").write_text(text.split("\n", 1)[1])
    if edit == "edited":
        (run / "config.toml").write_text(
            "# tuned by hand\n" + text.split("\n", 1)[1].replace("[train]", "[train]\n# mine")
        )
    result = wavegen.fit(prepared, run, steps=4)
    assert result.step == 4


HOLDER = [sys.executable, "-m", "wavegen", "train", "--recipe", "tiny", "--steps", "100000", "--quiet"]


def test_a_second_train_on_a_running_run_is_refused_naming_the_first(prepared, tmp_path):
    run = tmp_path / "run"
    first = subprocess.Popen(
        [*HOLDER, "--data", str(prepared), "--run", str(run), *(f"--set={s}" for s in SMALL)],
        env=ENV,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (run / "log.csv").is_file() and time.monotonic() < deadline:  # it trains
            assert first.poll() is None, first.stderr.read()
            time.sleep(0.2)
        rows = (run / "log.csv").read_text()
        proc = subprocess.run(
            [sys.executable, "-m", "wavegen", "train", "--data", str(prepared), "--run", str(run), "--steps", "3"],
            env=ENV,
            capture_output=True,
            text=True,
            timeout=300,
        )
        one_line_error(proc, f"{run}: another wavegen process trains here (process {first.pid})")
        assert (run / "log.csv").read_text().startswith(rows)  # the first's rows are all there
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # a killed process's lock does not block: the run goes on
    steps = str(int((run / "log.csv").read_text().splitlines()[-1].split(",")[0]) + 2)
    status, _, stderr = run_in_process(
        "train", "--data", str(prepared), "--run", str(run), "--steps", steps, cwd=tmp_path
    )
    assert status == 0 and "another wavegen process" not in stderr, stderr


def model(root: Path, mels: int = 0) -> Path:
    config = tiny().override(f"data.mel_bands={mels}", "data.mel_hop=128", "data.mel_fmax=8000") if mels else tiny()
    path = root / "checkpoints" / "best.pt"
    path.parent.mkdir(parents=True)
    return write_checkpoint(as_trained(config), path)


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_synth_never_replaces_another_requests_sample(tmp_path, said):
    """Two models whose run folders share a name, two lengths, a user's file: each its own
    name; the same request again replaces its own sample."""
    a, b = model(tmp_path / "a" / "tiny"), model(tmp_path / "b" / "tiny")
    out = tmp_path / "samples"
    first = synthesize(a, out, seconds=0.02, progress=False).files
    assert [p.name for p in first] == ["tiny-step0-seed0.wav"]
    wav = first[0].read_bytes()
    second = synthesize(b, out, seconds=0.02, progress=False).files
    assert [p.name for p in second] == ["tiny-2-step0-seed0.wav"] and first[0].read_bytes() == wav
    assert "note: " in said[-2] and "holds a sample that differs in checkpoint" in said[-2]
    longer = synthesize(a, out, seconds=0.04, progress=False).files
    assert [p.name for p in longer] == ["tiny-3-step0-seed0.wav"]
    again = synthesize(b, out, seconds=0.02, progress=False).files  # a rerun: its own file
    assert again == second and len(files(out)) == 9
    (out / "tiny-step0-seed1.wav").write_text("mine")
    mine = synthesize(a, out, seconds=0.02, n=2, progress=False).files
    assert [p.name for p in mine] == ["tiny-step0-seed0.wav", "tiny-2-step0-seed1.wav"]
    assert (out / "tiny-step0-seed1.wav").read_text() == "mine"


def test_vocode_never_replaces_the_output_of_another_recording(tmp_path):
    checkpoint = model(tmp_path / "voc", mels=20)
    for folder, hz in (("a", 440), ("b", 330), ("c", 550)):
        write_wav(tmp_path / folder / "take.wav", tone(hz, 0.03), 16000)
    out = tmp_path / "o"

    def run(*names):
        return [
            p.name for p in vocode(checkpoint, [tmp_path / n / "take.wav" for n in names], out, progress=False).files
        ]

    assert run("a") == ["take-vocoded.wav"]
    first = (out / "take-vocoded.wav").read_bytes()
    assert run("b") == ["take-2-vocoded.wav"]
    assert (out / "take-vocoded.wav").read_bytes() == first
    assert run("a", "c") == ["take-vocoded.wav", "take-3-vocoded.wav"]  # a again: its own file
    assert run("b") == ["take-2-vocoded.wav"]
    assert len(files(out)) == 3 * 5


def test_a_report_leaves_a_users_page_and_files_be(tmp_path):
    checkpoint = model(tmp_path / "runs" / "tiny")
    synthesize(checkpoint, tmp_path / "samples", seconds=0.02, progress=False)
    run = tmp_path / "runs" / "tiny"
    page = tmp_path / "page"
    page.mkdir()
    (page / "index.html").write_text("<html>my page</html>")
    status, _, stderr = run_in_process(
        "report", "--run", str(run), "--samples", "samples", "--out", "page", cwd=tmp_path
    )
    assert status == 1 and "page/index.html: not a page that wavegen report wrote" in stderr, stderr
    assert files(page) == ["index.html"] and (page / "index.html").read_text() == "<html>my page</html>"
    other = tmp_path / "other"
    other.mkdir()
    (other / "tiny-step0-seed0.wav").write_text("mine")
    for _ in range(2):  # and again, over its own page
        status, _, stderr = run_in_process(
            "report", "--run", str(run), "--samples", "samples", "--out", "other", cwd=tmp_path
        )
        assert status == 0, stderr
        assert (other / "tiny-step0-seed0.wav").read_text() == "mine"
        assert "tiny-step0-seed0-2.wav" in files(other)


@pytest.mark.parametrize("names", [["README.md"], ["config.json"], ["README.md", "config.json"]])
def test_export_leaves_a_users_readme_and_config_be(tmp_path, names):
    checkpoint = model(tmp_path / "runs" / "tiny")
    out = tmp_path / "out"
    out.mkdir()
    for name in names:
        (out / name).write_text("mine")
    status, _, stderr = run_in_process("export", str(checkpoint), "out", cwd=tmp_path)
    assert status == 1 and "not an earlier export" in stderr, stderr
    assert files(out) == sorted(names) and all((out / n).read_text() == "mine" for n in names)
    assert run_in_process("export", str(checkpoint), "fresh", cwd=tmp_path)[0] == 0
    assert run_in_process("export", str(checkpoint), "fresh", cwd=tmp_path)[0] == 0  # an earlier export: replaced
    os.remove(tmp_path / "fresh" / "model.safetensors")
    (tmp_path / "fresh" / "model.safetensors").write_text("not a model")
    assert run_in_process("export", str(checkpoint), "fresh", cwd=tmp_path)[0] == 1
