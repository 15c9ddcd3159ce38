"""Training on a CPU: the ``small`` recipe is named before the first step when the settings are
sized for a GPU, the first validation has a bar, and a run records the recipe it came from."""

import pytest
import torch

from wavegen.audio.io import write_wav
from wavegen.config import apply_overrides
from wavegen.model import checkpoint as ckpt
from wavegen.recipe import load_recipe
from wavegen.train import slow

from helpers import run_in_process, tone

QUICK = ["--set", "train.val_every=2", "--set", "train.checkpoint_every=2", "--quiet"]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """Two prepared tones at 16 kHz (the tiny recipe's data settings)."""
    root = tmp_path_factory.mktemp("cpu-recipe")
    write_wav(root / "dataset" / "a.wav", tone(440, 2.0), 16000)
    write_wav(root / "dataset" / "b.wav", tone(523.25, 2.0), 16000)
    status, _, err = run_in_process("prepare", "dataset", "--recipe", "tiny", "--quiet", cwd=root)
    assert status == 0, err
    return root


@pytest.mark.parametrize("recipe", ["default", "speakers", "vocoder"])
def test_a_gpu_recipe_on_a_cpu_is_named_with_how_much_more_a_step_asks(recipe):
    config = load_recipe(recipe)
    note = slow.gpu_sized_note(config, torch.device("cpu"))
    times = slow.step_work(config) / slow.step_work(load_recipe("small"))
    assert note is not None and "\n" not in note and f"{times:.1f}× the work of --recipe small" in note
    assert times > slow.GPU_SIZED and "training goes on" in note
    assert slow.gpu_sized_note(config, torch.device("cuda")) is None  # a GPU trains it as meant


@pytest.mark.parametrize(
    "recipe, overrides",
    [
        ("small", []),
        ("tiny", []),
        ("small", ["model.residual_channels=32"]),
        ("default", ["model.cycles=1", "train.batch_size=4"]),
    ],
)
def test_recipes_a_cpu_trains_well_get_no_note(recipe, overrides):
    config = apply_overrides(load_recipe(recipe), overrides)
    assert slow.gpu_sized_note(config, torch.device("cpu")) is None


def test_the_small_recipe_is_the_one_measured():
    """The constant the note compares against is the shipped small recipe's work per step."""
    assert slow.step_work(load_recipe("small")) == slow.CPU_STEP_WORK


def test_train_names_the_cpu_recipe_before_the_first_validation_and_only_for_a_new_run(project, monkeypatch):
    monkeypatch.setattr(slow, "CPU_STEP_WORK", 1)  # the tiny recipe, made to look sized for a GPU
    status, _, err = run_in_process(
        "train", "--recipe", "tiny", "--run", "runs/big", "--steps", "2", *QUICK, cwd=project
    )
    assert status == 0, err
    lines = err.splitlines()
    notes = [i for i, line in enumerate(lines) if "sized for a GPU" in line]
    assert len(notes) == 1 and "wavegen train --recipe small" in lines[notes[0]]
    assert notes[0] == 1 + next(i for i, line in enumerate(lines) if line.startswith("training "))
    status, _, err = run_in_process("train", "--run", "runs/big", "--steps", "4", *QUICK, cwd=project)
    assert status == 0 and "sized for a GPU" not in err  # said once, when the run starts


def test_the_first_validation_shows_a_bar(project, monkeypatch):
    monkeypatch.setenv("WAVEGEN_PROGRESS", "always")
    status, _, err = run_in_process(
        "train", "--recipe", "tiny", "--run", "runs/bar", "--steps", "1", "--set", "train.val_batches=3", cwd=project
    )
    assert status == 0, err
    assert "validation: 100%" in err and "3/3" in err


@pytest.mark.parametrize(
    "args, named",
    [
        (["--recipe", "tiny"], "tiny"),
        (["--recipe", "recipes/mine.toml"], "recipes/mine.toml"),
        (["--recipe", "tiny", "--set", "train.lr=0.002"], "tiny"),
    ],
)
def test_a_run_records_its_recipe_and_info_names_it(project, args, named):
    (project / "recipes").mkdir(exist_ok=True)
    (project / "recipes" / "mine.toml").write_text('extends = "tiny"\n[train]\nlr = 0.001\n')
    run = f"runs/{abs(hash(tuple(args)))}"
    status, _, err = run_in_process("train", *args, "--run", run, "--steps", "2", *QUICK, cwd=project)
    assert status == 0, err
    assert ckpt.load(project / run / "checkpoints" / "latest.pt")["recipe"] == named
    status, _, err = run_in_process("train", "--run", run, "--steps", "4", *QUICK, cwd=project)  # resumed
    assert status == 0 and ckpt.load(project / run / "checkpoints" / "latest.pt")["recipe"] == named
    status, out, _ = run_in_process("info", "--run", run, cwd=project)
    assert status == 0 and f"recipe           {named}\n" in out
    status, out, _ = run_in_process("export", run, "exported/" + run.split("/")[1], cwd=project)
    assert status == 0
    status, out, _ = run_in_process("info", "--checkpoint", "exported/" + run.split("/")[1], cwd=project)
    assert f"recipe           {named}\n" in out


def test_a_run_from_before_recipes_were_recorded_says_so(project):
    status, _, err = run_in_process(
        "train", "--recipe", "tiny", "--run", "runs/old", "--steps", "2", *QUICK, cwd=project
    )
    assert status == 0, err
    for path in (project / "runs" / "old" / "checkpoints").glob("*.pt"):  # as a run of an older version wrote them
        payload = ckpt.load(path)
        del payload["recipe"]
        torch.save(payload, path)
    status, out, _ = run_in_process("info", "--run", "runs/old", cwd=project)
    assert status == 0 and "recipe           unknown (an older run)\n" in out
