"""A command that fails leaves no empty folder behind: not its --out (or --run, --workdir), nor
the parents it made for it. What was written before a failure stays.

Each command runs in this process through the command line (click's runner) on its failure
path: after its checks, where it has begun to write (nothing usable to prepare, a disk that is
full from the first byte: ``conftest.full_disk``), or refused before that. The checkpoints
are made from freshly initialised tiny models: nothing is trained.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from wavegen.cli import main
from wavegen.config import apply_overrides, to_toml
from wavegen.data.prepare import prepare
from wavegen.model import checkpoint as ckpt
from wavegen.model.network import WaveNet
from wavegen.recipe import load_recipe

from helpers import tone

pytestmark = pytest.mark.slow  # (make test-fast leaves these out; make test runs them)


def quiet(_message: str) -> None:
    pass


def folders(root: Path) -> set[str]:
    return {os.path.relpath(os.path.join(top, name), root) for top, dirs, _ in os.walk(root) for name in dirs}


def made_run(root: Path, name: str, *overrides: str) -> Path:
    """A run folder with an untrained tiny model's checkpoint and config."""
    config = apply_overrides(load_recipe("tiny"), list(overrides))
    run = root / "runs" / name
    model = WaveNet(config.model)
    ckpt.save(run / "checkpoints" / "latest.pt", {"config": config.to_dict(), "model": model.state_dict(), "step": 0})
    (run / "config.toml").write_text(to_toml(config))
    return run


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("project")
    (root / "dataset").mkdir()
    sf.write(root / "dataset" / "a.wav", tone(440, 1.0), 16000)
    (root / "silent").mkdir()
    sf.write(root / "silent" / "quiet.wav", np.zeros(16000, np.float32), 16000)
    sf.write(root / "silent" / "cancels.wav", np.stack([tone(440, 1.0), -tone(440, 1.0)], 1), 16000)
    prepare(root / "dataset", root / "prepared", load_recipe("tiny").data, progress=False)
    made_run(root, "tiny")
    # data.mels: the old name of data.mel_bands, still read
    made_run(root, "voc", "data.mels=8", "model.mel_channels=8", "model.mel_hop=256")
    return root


def run(project: Path, *args: str):
    here = os.getcwd()
    os.chdir(project)
    try:
        return CliRunner().invoke(main, list(args), catch_exceptions=False)
    finally:
        os.chdir(here)


TINY = ("--run", "runs/tiny")
FULL_DISK = [  # fail at the first file they write
    (
        "train",
        "--data",
        "prepared",
        "--recipe",
        "tiny",
        "--run",
        "new/runs/x",
        "--steps",
        "1",
        "--quiet",
        "--device",
        "cpu",
    ),
    ("synth", *TINY, "--seconds", "0.01", "--engine", "torch", "--out", "new/samples", "--quiet"),
    ("vocode", "dataset/a.wav", "--run", "runs/voc", "--engine", "torch", "--out", "new/vocoded", "--quiet"),
    ("report", *TINY, "--out", "new/report"),
    ("report", "--run", "runs/tiny"),  # the page's default folder, RUN/report
    ("demo", "--workdir", "new/demo", "--out", "new/samples", "--steps", "1", "--quiet"),
]
REFUSED = [  # fail before writing anything, or write nothing at all
    ("prepare", "silent", "--out", "new/deeper/prepared", "--recipe", "tiny", "--quiet"),
    ("prepare", "dataset", "--out", "new/prepared", "--set", "data.channel=left"),
    ("train", "--data", "silent", "--run", "new/runs/x", "--recipe", "tiny"),
    ("train", "--data", "prepared", "--run", "new/runs/x", "--recipe", "tiny", "--set", "train.lr=nan"),
    ("synth", *TINY, "--out", "new/samples", "--prime", "silent/none.wav"),
    ("vocode", "dataset/none.wav", "--run", "runs/voc", "--out", "new/vocoded"),
    ("eval", *TINY, "--data", "new/prepared"),
    ("bench", "learn", "new/prepared", "--steps", "1"),
    ("demo", "--workdir", "new/demo", "--out", "new/samples", "--seconds", "0"),
]


@pytest.mark.parametrize("args", FULL_DISK, ids=[" ".join(a[:4]) for a in FULL_DISK])
def test_a_command_that_fails_at_its_first_write_leaves_no_new_folder(project, full_disk, args):
    before = folders(project)
    full_disk.room = 0
    result = run(project, *args)
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines()[-1].startswith("Error: ") and "no space left on device" in result.stderr
    assert full_disk.refused
    assert folders(project) == before, result.stderr


@pytest.mark.parametrize("args", REFUSED, ids=[" ".join(a[:4]) for a in REFUSED])
def test_a_command_refused_leaves_no_new_folder(project, args):
    before = folders(project)
    result = run(project, *args)
    assert result.exit_code == (2 if "--seconds" in args else 1), result.output  # (out of range: a usage error)
    assert result.stderr.splitlines()[-1].startswith("Error: ")
    assert folders(project) == before, result.stderr


def test_what_was_written_before_a_failure_stays(tmp_path):
    """Only empty folders the failed work created go: a written file keeps its folders, and
    folders that existed before stay even when empty."""
    from wavegen.outputs import no_empty_folders_on_failure

    (tmp_path / "existing").mkdir()
    with pytest.raises(RuntimeError):
        with no_empty_folders_on_failure(tmp_path / "a" / "b" / "c", tmp_path / "existing", tmp_path / "d" / "e"):
            (tmp_path / "a" / "b" / "c" / "x").mkdir(parents=True)
            (tmp_path / "a" / "kept").mkdir()
            (tmp_path / "a" / "kept" / "written.wav").write_bytes(b"RIFF")
            (tmp_path / "existing" / "empty").mkdir()
            (tmp_path / "d" / "e").mkdir(parents=True)
            raise RuntimeError("failed")
    # (a folder made inside one that existed is not this call's to judge: it stays)
    assert sorted(folders(tmp_path)) == ["a", "a/kept", "existing", "existing/empty"]
    with no_empty_folders_on_failure(tmp_path / "f"):  # success: an empty folder made on purpose stays
        (tmp_path / "f").mkdir()
    assert (tmp_path / "f").is_dir()
