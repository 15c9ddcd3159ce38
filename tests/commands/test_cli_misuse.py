"""Misuse of every command, through the real command line: one ``Error:`` line that names the
file or setting and says what to do, a non-zero exit status, no traceback, and nothing written.

One small project (a dataset, prepared data, a tiny run and a tiny vocoder run, earlier samples,
crafted checkpoints) is built once for the module; every misuse runs against it in a process of
its own. Those processes are forked from one that has imported torch and wavegen already
(``forking_cli.py``: milliseconds each instead of seconds of imports), and
``test_forked_runs_match_fresh_processes`` checks that they behave as ``python -m wavegen``
does. Afterwards the project must be exactly as it was: refusals come before any writing.

Output names: labels from a crafted checkpoint and hostile input file names must give files
inside ``--out`` only, distinct, and nothing anywhere else.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import shutil
import subprocess
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from wavegen.audio.io import write_wav
from wavegen.config import Config, apply_overrides
from wavegen.data.prepare import prepare
from wavegen.model import checkpoint as ckpt
from wavegen.model.network import WaveNet
from wavegen.outputs import distinct_names, inside, safe_name
from wavegen.recipe import load_recipe
from wavegen.synthesis.synth import synthesize
from wavegen.synthesis.vocode import vocode
from wavegen.train.loop import train

from helpers import tone

pytestmark = pytest.mark.slow  # (make test-fast leaves these out; make test runs them)

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
NO_CUDA = {"CUDA_VISIBLE_DEVICES": ""}  # so that --device cuda fails the same way on a GPU machine
UNWRITABLE = "/proc/wavegen-out"  # Linux: nothing can be created in /proc, not even by root


def wavegen(*args, cwd, env=None, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "wavegen", *args],
        cwd=cwd,
        env={**ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ok(*args, cwd):
    proc = wavegen(*args, cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    phrase: str  # in the error line
    status: int = 1  # 1: wavegen's own errors; 2: click's usage errors (unknown option, out of range)
    cwd: str = "."  # "empty": a folder with no runs and no prepared data
    env: tuple[tuple[str, str], ...] = ()

    @property
    def id(self) -> str:
        return " ".join(self.args)[:90] + (f" [in {self.cwd}]" if self.cwd != "." else "")


def case(*args, phrase, status=1, cwd=".", env=None):
    return Case(tuple(args), phrase, status, cwd, tuple((env or {}).items()))


TINY = ("--run", "runs/tiny")
VOC = ("--run", "runs/voc")
CASES = [
    # -- prepare: missing or empty dataset, output folder, recipe and --set
    case("prepare", "nowhere", phrase="nowhere: no such folder; give the folder that holds the recordings"),
    case("prepare", "emptyds", phrase="emptyds: no audio files found"),
    case("prepare", "afile", phrase="afile: is a file, not a folder; give the folder that holds the recordings"),
    case("prepare", phrase="Missing argument 'DATASET'", status=2),
    case("prepare", "dataset", "--out", "afile", phrase="afile: --out is a file, not a folder"),
    case("prepare", "dataset", "--out", "afile/prepared", phrase="afile is a file, not a folder; choose another --out"),
    case("prepare", "dataset", "--out", UNWRITABLE, phrase="cannot write there"),
    case("prepare", "dataset", "--recipe", "nope", phrase="unknown recipe 'nope' (known: default"),
    case("prepare", "dataset", "--set", "model.cycles=2", phrase="prepare only takes data.* settings"),
    case("prepare", "dataset", "--set", "data.colour=red", phrase="unknown setting 'data.colour'"),
    case("prepare", "dataset", "--set", "data.sample_rate", phrase="expected section.key=value"),
    case("prepare", "dataset", "--set", "data.sample_rate=fast", phrase="data.sample_rate=fast: expected int"),
    case("prepare", "dataset", "--set", "data.val_fraction=most", phrase="expected float"),
    case("prepare", "dataset", "--set", "data.trim_silence=maybe", phrase="expected bool"),
    case(  # data.labels: the old name of data.label_source, still read (the message names the new one)
        "prepare", "dataset", "--set", "data.labels=speakers", phrase="'data.label_source' must be 'none' or 'folders'"
    ),
    case("prepare", "dataset", "--channel", "left", phrase="'data.channel' must be 'mix' or a channel number"),
    case(
        "prepare", "dataset", "--set", "data.sample_rate=-16000", phrase="'data.sample_rate' must be in [1000, 192000]"
    ),
    case("prepare", "dataset", "--set", "data.trim_db=nan", phrase="'data.trim_db' must be a finite number"),
    case("prepare", "dataset", "--sample-rate", "10", phrase="Invalid value for '--sample-rate'", status=2),
    case("prepare", "dataset", "--val-fraction", "1", phrase="Invalid value for '--val-fraction'", status=2),
    case("prepare", "dataset", "--mels", "-1", phrase="Invalid value for '--mels'", status=2),
    # -- train: no prepared data, --set of every type, the run folder, resuming another shape
    case("train", phrase="prepared: no prepared data here (run `wavegen prepare", cwd="empty"),
    case("train", "--data", "emptyds", phrase="emptyds: no prepared data here"),
    case("train", "--data", "afile", phrase="afile: is a file, not a folder"),
    case("train", "--recipe", "nope", phrase="unknown recipe 'nope'"),
    case("train", "--set", "model.colour=red", phrase="unknown setting 'model.colour'"),
    case("train", "--set", "train.steps=1.5", phrase="train.steps=1.5: expected int"),
    case("train", "--set", "train.lr=fast", phrase="train.lr=fast: expected float"),
    case("train", "--set", "train.compile=maybe", phrase="train.compile=maybe: expected bool"),
    case("train", "--set", "train.precision=fp8", phrase="'train.precision' must be one of auto, fp32, bf16"),
    case("train", "--set", "model.labels=a,b", phrase="--set model.labels=a,b: a model conditions on what its data"),
    case("train", "--set", "model.mel_channels=80", phrase="prepare the data with --labels folders or --mels N"),
    case("train", "--set", "train.lr=nan", phrase="'train.lr' must be a finite number, got nan"),
    case("train", "--set", "train.batch_size=-8", phrase="'train.batch_size' must be in (0, 65536], got -8"),
    case("train", "--set", "train.threads=-1", phrase="'train.threads' must be in [0, 4096]"),
    case("train", "--steps", "0", phrase="Invalid value for '--steps': 0 is not in the range", status=2),
    case("train", "--steps", "-5", phrase="Invalid value for '--steps'", status=2),
    case("train", "--nproc", "0", phrase="Invalid value for '--nproc'", status=2),
    case("train", "--run", "afile", phrase="afile: --run is a file, not a folder; choose another --run"),
    case("train", "--run", "afile/run", phrase="afile is a file, not a folder; choose another --run"),
    case("train", "--run", UNWRITABLE, phrase="cannot write there"),
    case("train", *TINY, "--recipe", "default", phrase="model shape differs from recipe 'default'"),
    case("train", *TINY, "--set", "model.cycles=2", phrase="was trained with model.cycles = 1, and it cannot change"),
    case("train", *TINY, "--steps", "1", phrase="runs/tiny: already trained to step 2; --steps 1 is behind it"),
    case(
        "train",
        *TINY,
        "--data",
        "prepmel",
        phrase="prepmel: the data has no labels, 8 mel bands every 256 samples but the run was trained with",
    ),
    case("train", "--run", "runs/reshaped", "--steps", "5", phrase="runs/reshaped: checkpoint cannot be resumed"),
    case(
        "train",
        "--recipe",
        "tiny",
        "--run",
        "runs/new",
        "--device",
        "cuda",
        phrase="no CUDA device is available",
        env=NO_CUDA,
    ),
    # -- synth: no run, bad checkpoints, lengths, streams, temperature, output folder, conditioning
    case("synth", phrase="runs: no trained runs found (run `wavegen train` first", cwd="empty"),
    case("synth", "--run", "runs/empty", phrase="runs/empty: no checkpoints in runs/empty/checkpoints"),
    case(
        "synth", "--run", "runs/nope", phrase="runs/nope: no such run folder (train one: wavegen train --run runs/nope)"
    ),
    case("synth", "--run", "afile", phrase="afile: --run is a file, not a run folder"),
    case("synth", "--run", "runs/tiny/checkpoints/best.pt", phrase="give a checkpoint file with --checkpoint"),
    case("synth", "--checkpoint", "runs/tiny", phrase="runs/tiny: --checkpoint is a folder, not a file"),
    case(
        "synth", *TINY, "--checkpoint", "reshaped.pt", phrase="--run runs/tiny and --checkpoint reshaped.pt: give one"
    ),
    case("synth", "--checkpoint", "missing.pt", phrase="missing.pt: checkpoint not found"),
    case("synth", "--checkpoint", "afile", phrase="afile: is a text file, not a checkpoint"),
    case("synth", "--checkpoint", "reshaped.pt", phrase="weights do not fit the model shape in its config"),
    case("synth", "--checkpoint", "badconfig.pt", phrase="bad config in checkpoint"),
    case("synth", *TINY, "--seconds", "0", phrase="--seconds must be in (0, 3600], got 0", status=2),
    case("synth", *TINY, "--seconds", "-1", phrase="--seconds must be in (0, 3600], got -1", status=2),
    case(
        "synth",
        *TINY,
        "--seconds",
        "1e9",
        phrase="got 1e+09 (an hour per stream at most: generation runs sample by sample)",
        status=2,
    ),
    case("synth", *TINY, "--seconds", "nan", phrase="--seconds must be in (0, 3600], got nan", status=2),
    case("synth", *TINY, "--seconds", "x", phrase="Invalid value for '--seconds'", status=2),
    case("synth", *TINY, "--n", "0", phrase="--n must be at least 1, got 0", status=2),
    case("synth", *TINY, "--n", "-3", phrase="--n must be at least 1, got -3", status=2),
    case("synth", *TINY, "--n", "100000", phrase="--n 100000: at most 4096 streams are generated at once", status=2),
    case("synth", *TINY, "--n", "4096", "--seconds", "3600", phrase="one call generates at most 268,435,456", status=2),
    case("synth", *TINY, "--temperature", "0", phrase="--temperature must be > 0", status=2),
    case("synth", *TINY, "--temperature", "-1", phrase="--temperature must be > 0", status=2),
    case("synth", *TINY, "--temperature", "nan", phrase="--temperature must be > 0", status=2),
    case("synth", *TINY, "--temperature", "inf", phrase="--temperature must be > 0 (and finite), got inf", status=2),
    case("synth", *TINY, "--out", "afile", phrase="afile: --out is a file, not a folder"),
    case("synth", *TINY, "--out", "afile/samples", phrase="afile is a file, not a folder; choose another --out"),
    case("synth", *TINY, "--out", UNWRITABLE, phrase="cannot write there"),
    case("synth", *TINY, "--device", "cuda", phrase="--device cuda: no CUDA device is available", env=NO_CUDA),
    case("synth", *TINY, "--engine", "warp", phrase="Invalid value for '--engine'", status=2),
    case("synth", *TINY, "--label", "x", phrase="--label: this model was trained without labels"),
    case("synth", *TINY, "--mel", "mel.npy", phrase="--mel: this model was trained without mel features"),
    case("synth", *VOC, phrase="conditioned on log-mel features: give --mel FILE.npy"),
    case("synth", *TINY, "--prime", "nothing.wav", phrase="nothing.wav: cannot use as a prime"),
    case(
        "synth",
        *TINY,
        "--temprature",
        "1",
        phrase="No such option '--temprature'. Did you mean '--temperature'?",
        status=2,
    ),
    # -- vocode
    case("vocode", phrase="Missing argument 'INPUTS...'", status=2),
    case("vocode", "dataset/a.wav", phrase="no trained runs found", cwd="empty"),
    case("vocode", "nothing.wav", *VOC, phrase="nothing.wav: cannot vocode"),
    case("vocode", "dataset", *VOC, phrase="dataset: is a folder, not a file; vocode takes recordings"),
    case("vocode", "dataset/a.wav", *TINY, phrase="this model was trained without mel features"),
    case("vocode", "dataset/a.wav", *VOC, "--temperature", "0", phrase="--temperature must be > 0", status=2),
    case("vocode", "dataset/a.wav", *VOC, "--out", "afile", phrase="afile: --out is a file, not a folder"),
    case("vocode", "dataset/a.wav", *VOC, "--out", "afile/v", phrase="afile is a file, not a folder"),
    case("vocode", "dataset/a.wav", *VOC, "--out", UNWRITABLE, phrase="cannot write there"),
    case("vocode", "dataset/a.wav", *VOC, "--label", "x", phrase="this model was trained without labels"),
    case("vocode", "dataset/a.wav", *VOC, "--seconds", "2", phrase="No such option '--seconds'", status=2),
    case("vocode", "dataset/a.wav", "--checkpoint", "reshaped.pt", phrase="weights do not fit the model shape"),
    # -- eval
    case("eval", phrase="no trained runs found", cwd="empty"),
    case("eval", *TINY, "--data", "emptyds", phrase="emptyds: no prepared data here"),
    case("eval", *TINY, "--data", "prepmel", phrase="prepmel: mel features (8 bands every 256 samples) differ"),
    case("eval", *VOC, "--data", "prepared", phrase="prepared: mel features (0 bands every 0 samples) differ"),
    case("eval", *TINY, "--seconds", "nan", phrase="--seconds must be in (0, 3600], got nan", status=2),
    case(
        "eval",
        *VOC,
        "--data",
        "prepmel",
        "--seconds",
        "inf",
        phrase="--seconds must be in (0, 3600], got inf",
        status=2,
    ),
    case("eval", *TINY, "--max-seconds", "nan", phrase="--max-seconds must be > 0, got nan", status=2),
    case("eval", *TINY, "--seconds", "0", phrase="Invalid value for '--seconds'", status=2),
    case("eval", *TINY, "--files", "0", phrase="Invalid value for '--files'", status=2),
    case("eval", "--checkpoint", "runs", phrase="runs: --checkpoint is a folder"),
    # -- info
    case("info", phrase="no trained runs found", cwd="empty"),
    case("info", "--run", "runs/empty", phrase="no checkpoints in runs/empty/checkpoints"),
    case("info", "--checkpoint", "afile", phrase="afile: is a text file, not a checkpoint"),
    case("info", "--checkpoint", "reshaped.pt", phrase="weights do not fit the model shape"),
    case("info", "--checkpoint", "badconfig.pt", phrase="bad config in checkpoint"),
    # -- demo: refused before the dataset is written or anything is trained
    case("demo", "--seconds", "0", phrase="--seconds must be in (0, 3600], got 0", status=2),
    case("demo", "--seconds", "1e9", phrase="--seconds must be in (0, 3600]", status=2),
    case("demo", "--n", "0", phrase="Invalid value for '-n' / '--n'", status=2),
    case("demo", "--n", "100000", phrase="--n 100000: at most 4096 streams", status=2),
    case("demo", "--steps", "0", phrase="Invalid value for '--steps'", status=2),
    case("demo", "--out", "afile", phrase="afile: --out is a file, not a folder"),
    case("demo", "--workdir", "afile", phrase="afile: --workdir is a file, not a folder"),
    case("demo", "--workdir", "afile/demo", phrase="afile is a file, not a folder; choose another --workdir"),
    case("demo", "--workdir", UNWRITABLE, phrase="cannot write there"),
    # -- bench
    case("bench", "--recipe", "nope", phrase="unknown recipe 'nope'"),
    case("bench", "sample", "--set", "model.cycles=x", phrase="model.cycles=x: expected int"),
    case("bench", "train", "--set", "model.colour=red", phrase="unknown setting 'model.colour'"),
    case("bench", "sample", "--seconds", "nan", phrase="--seconds must be in (0, 3600], got nan", status=2),
    case("bench", "sample", "--seconds", "1e9", phrase="(wall time per measurement)", status=2),
    case("bench", "sample", "--batch", "100000", phrase="--batch 100000: at most 4096 streams", status=2),
    case("bench", "sample", "--batch", "0", phrase="Invalid value for '--batch'", status=2),
    case("bench", "sample", "--device", "cuda", phrase="no CUDA device is available", env=NO_CUDA),
    case("bench", "train", "--engine", "torch", phrase="--engine is an option of `bench sample`", status=2),
    case("bench", "startup", "--seconds", "nan", phrase="--seconds must be in (0, 3600], got nan", status=2),
    case("bench", "startup", "--repeats", "0", phrase="Invalid value for '--repeats'", status=2),
    case("bench", "startup", "--engine", "torch", phrase="--engine is an option of `bench sample`", status=2),
    # (the older spellings: no subcommand is sample, --train is train)
    case("bench", "--batch", "100000", phrase="--batch 100000: at most 4096 streams", status=2),
    case("bench", "--train", "--engine", "torch", phrase="--engine is an option of `bench sample`", status=2),
    # -- the command itself
    case("nosuch", phrase="No such command 'nosuch' (see `wavegen --help`)", status=2),
    case("synth", "--n", "x", phrase="'x' is not a valid integer (see `wavegen synth --help`)", status=2),
]


assert len({c.id for c in CASES}) == len(CASES)


def snapshot(root: Path) -> dict[str, tuple]:
    """Every folder and file under ``root``: kind, size, modification time and content hash."""
    seen = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            seen[os.path.relpath(os.path.join(folder, name), root)] = ("dir",)
        for name in files:
            path = os.path.join(folder, name)
            stat = os.lstat(path)
            digest = hashlib.sha1(Path(path).read_bytes()).hexdigest() if not os.path.islink(path) else ""
            seen[os.path.relpath(path, root)] = ("file", stat.st_size, stat.st_mtime_ns, digest)
    return seen


def crafted(source: Path, target: Path, edit) -> Path:
    """A copy of a real checkpoint whose payload ``edit`` has changed, saved the normal way."""
    payload = ckpt.load(source)
    edit(payload)
    ckpt.save(target, {k: v for k, v in payload.items() if k not in ("format", "version")})
    return target


def quiet(message: str) -> None:
    pass


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A dataset, prepared data (plain and with 8-band mels), a tiny run and a tiny vocoder run
    of 2 steps, earlier samples, and checkpoints crafted to misfit (built in this process: no
    imports to wait for)."""
    root = tmp_path_factory.mktemp("project")
    write_wav(root / "dataset" / "a.wav", tone(440, 3.0), 16000)
    write_wav(root / "dataset" / "more" / "b.wav", tone(330, 2.0), 16000)
    (root / "emptyds").mkdir()
    (root / "afile").write_text("a file where a folder is expected")
    (root / "empty").mkdir()
    (root / "runs" / "empty" / "checkpoints").mkdir(parents=True)
    np.save(root / "mel.npy", np.zeros((10, 8), np.float32))
    tiny = apply_overrides(load_recipe("tiny"), ["train.steps=2"])
    prepare(root / "dataset", root / "prepared", tiny.data, progress=False)
    train(tiny, root / "prepared", root / "runs" / "tiny", device="cpu", progress=False)
    vocoder = apply_overrides(load_recipe("tiny"), ["train.steps=2", "data.mel_bands=8"])
    prepare(root / "dataset", root / "prepmel", vocoder.data, progress=False)
    train(vocoder, root / "prepmel", root / "runs" / "voc", device="cpu", progress=False)
    latest = root / "runs" / "tiny" / "checkpoints" / "latest.pt"
    # Earlier outputs, which no refused command may touch.
    synthesize(latest, root / "samples", seconds=0.01, n=2, engine="torch", progress=False)
    write_wav(root / "short.wav", tone(440, 0.02), 16000)
    vocode(
        root / "runs" / "voc" / "checkpoints" / "latest.pt",
        [root / "short.wav"],
        root / "samples",
        engine="torch",
        progress=False,
    )

    def reshape(payload):  # the config says 32 channels, the weights have 16
        payload["config"]["model"]["residual_channels"] = 32

    def nonsense(payload):
        payload["config"]["model"]["classes"] = 7

    crafted(latest, root / "reshaped.pt", reshape)
    crafted(latest, root / "badconfig.pt", nonsense)
    shutil.copytree(root / "runs" / "tiny", root / "runs" / "reshaped")
    crafted(latest, root / "runs" / "reshaped" / "checkpoints" / "latest.pt", reshape)
    # (its config.toml would be refused first, as an edit of the shape the crafted checkpoint claims)
    (root / "runs" / "reshaped" / "config.toml").unlink()
    return root


def run_forked(cases: list[Case], project: Path, logs: Path, parallel: int = 2) -> list[tuple[int, str, str]]:
    """(exit status, stdout, stderr) of each case, each in a process forked by forking_cli.py."""
    requests = []
    for i, c in enumerate(cases):
        requests.append(
            {
                "args": list(c.args),
                "cwd": str(project / c.cwd),
                "env": dict(c.env),
                "stdout": str(logs / f"{i}.out"),
                "stderr": str(logs / f"{i}.err"),
            }
        )
    server = subprocess.run(
        [sys.executable, str(Path(__file__).parent.parent / "forking_cli.py"), str(parallel)],
        input="".join(json.dumps(r) + "\n" for r in requests),
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert server.returncode == 0, server.stderr[-3000:]
    status = {r["index"]: r["status"] for r in map(json.loads, server.stdout.splitlines())}
    return [(status[i], (logs / f"{i}.out").read_text(), (logs / f"{i}.err").read_text()) for i in range(len(cases))]


def run_fresh(cases: list[Case], project: Path) -> list[tuple[int, str, str]]:
    """The same, each in a fresh ``python -m wavegen`` (a few at a time)."""

    def one(c: Case):
        proc = wavegen(*c.args, cwd=project / c.cwd, env=dict(c.env), timeout=300)
        return proc.returncode, proc.stdout, proc.stderr

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        return list(pool.map(one, cases))


@pytest.fixture(scope="module")
def outcomes(project, tmp_path_factory) -> dict:
    """Every case run once, with a snapshot of the project before and after."""
    before = snapshot(project)
    if hasattr(os, "fork"):
        results = run_forked(CASES, project, tmp_path_factory.mktemp("logs"))
    else:  # pragma: no cover - no fork (Windows): slower, the same
        results = run_fresh(CASES, project)
    return {"results": dict(zip((c.id for c in CASES), results)), "before": before, "after": snapshot(project)}


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_misuse_is_one_error_line(outcomes, c):
    status, stdout, stderr = outcomes["results"][c.id]
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert status == c.status, stderr[-3000:]
    assert "Traceback" not in stderr
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr[-3000:]
    assert c.phrase in lines[0], lines[0]
    assert stdout == ""


def test_forked_runs_match_fresh_processes(project, outcomes):
    """A few cases again as a user runs them: the same status and the same error line."""
    wanted = {("prepare", "emptyds"), ("synth", "--checkpoint", "reshaped.pt"), ("train", "--steps", "0")}
    picked = [c for c in CASES if c.args in wanted]
    assert len(picked) == 3
    for c, fresh in zip(picked, run_fresh(picked, project)):
        assert fresh == outcomes["results"][c.id], c.id


def test_refused_commands_write_nothing(outcomes):
    """Earlier samples, prepared data, runs and checkpoints are as they were, and nothing new
    (not even an empty output folder) appeared anywhere in the project."""
    before, after = outcomes["before"], outcomes["after"]
    assert sorted(set(after) - set(before)) == []
    assert sorted(set(before) - set(after)) == []
    assert [path for path in before if before[path] != after[path]] == []
    wavs = [p for p in before if p.startswith("samples/") and p.endswith(".wav") and not p.endswith(".input.wav")]
    assert len(wavs) == 3  # the earlier synth (2) and vocode (1), each with its .png and .json beside it


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permission bits (the /proc cases cover it)")
def test_a_read_only_folder_is_refused_before_generating(project, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        proc = wavegen(
            "synth",
            "--checkpoint",
            str(project / "runs/tiny/checkpoints/latest.pt"),
            "--out",
            str(locked / "samples"),
            cwd=tmp_path,
        )
    finally:
        locked.chmod(0o755)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "cannot write there (in " in proc.stderr and "Permission denied" in proc.stderr
    assert list(locked.iterdir()) == []


HOSTILE_LABELS = [
    "../../etc/x",
    "a/b",
    "a_b",
    "..",
    ".",
    ".hidden",
    "con",
    "",
    "/abs/path",
    "..\\..\\win",
    "x" * 300,
    "nul\x00byte",
    "new\nline",
    "A",
    "a",
    "-rf",
    "\u00e9",
    "e\u0301",
    "~",
    "a_b-2",
]


def hostile_checkpoint(project: Path, folder: Path) -> Path:
    """The tiny run's checkpoint relabelled with hostile names (embedding resized to match), in a
    run folder whose own name is odd too."""
    latest = project / "runs" / "tiny" / "checkpoints" / "latest.pt"

    def relabel(payload):
        config = Config.from_dict(payload["config"])
        config.model.labels = list(HOSTILE_LABELS)
        model = WaveNet(config.model)
        weights = model.state_dict()
        weights.update({k: v for k, v in payload["model"].items() if k in weights and v.shape == weights[k].shape})
        payload["config"], payload["model"] = config.to_dict(), weights
        if "ema" in payload:  # what synth loads when the run kept a moving average
            payload["ema"] = weights

    return crafted(latest, folder / "..odd\nrun" / "checkpoints" / "hostile.pt", relabel)


def test_labels_from_a_crafted_checkpoint_name_files_inside_out_only(project, tmp_path):
    path = hostile_checkpoint(project, tmp_path / "models")
    work = tmp_path / "work"
    (work / "keep").mkdir(parents=True)
    (work / "keep" / "x.wav").write_bytes(b"earlier")
    before = snapshot(tmp_path)
    proc = wavegen(
        "synth",
        "--checkpoint",
        str(path),
        "--seconds",
        "0.005",
        "--out",
        "out",
        "--quiet",
        "--engine",
        "torch",
        cwd=work,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = snapshot(tmp_path)
    new = sorted(set(after) - set(before))
    written = [p for p in new if after[p][0] == "file"]
    assert new == ["work/out"] + written  # one new folder, and files in it only
    assert all(Path(p).parent == Path("work/out") for p in written)
    assert all(before[p] == after[p] for p in before)  # nothing else changed
    # every sample is a .wav with its .png and .json (artifacts), all three named alike
    names = [Path(p).name for p in written if p.endswith(".wav")]
    assert sorted(Path(p).name for p in written) == sorted(
        n[:-4] + ext for n in names for ext in (".json", ".png", ".wav")
    )
    assert len(names) == len(HOSTILE_LABELS)  # one per label: none overwrote another
    assert len({n.casefold() for n in names}) == len(names)
    tags = {n.rsplit("-seed", 1)[0].casefold() for n in names}  # each label's part of the name
    assert len(tags) == len(HOSTILE_LABELS)  # 'a/b' and 'a_b' are told apart by more than the seed
    for name in names:
        assert name.startswith("odd_run-step2-") and name.endswith(".wav") and len(name.encode()) < 255
        assert not name.startswith(".") and ".." not in name and all(c.isprintable() for c in name)
    # Only the label named in --label is generated, under the same name as in the full run.
    again = wavegen(
        "synth",
        "--checkpoint",
        str(path),
        "--seconds",
        "0.005",
        "--out",
        "one",
        "--quiet",
        "--engine",
        "torch",
        "--label",
        "a/b",
        cwd=work,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert sorted(p.name for p in (work / "one").iterdir()) == [
        f"odd_run-step2-a_b-seed0{ext}" for ext in (".json", ".png", ".wav")
    ]
    # An error that lists the labels (one has a line break) is still one line.
    refused = wavegen("synth", "--checkpoint", str(path), "--label", "nope", "--out", "none", cwd=work)
    assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert refused.stderr.startswith("Error: --label nope: unknown label (known: ../../etc/x, a/b, a_b, ..")
    assert not (work / "none").exists()


HOSTILE_INPUTS = [
    "a.wav",
    "sub/a.wav",
    "a-2.wav",
    "A.wav",
    ".hidden.wav",
    "..wav",
    "new\nline.wav",
    "-rf.wav",
    "x" * 200 + ".wav",
    "\u00e9.wav",
    "e\u0301.wav",
]


def test_vocode_names_outputs_after_inputs_inside_out_only(project, tmp_path):
    inputs = tmp_path / "inputs"
    for name in HOSTILE_INPUTS:
        write_wav(inputs / name, tone(440, 0.05), 16000)
    before = snapshot(tmp_path)
    checkpoint = project / "runs" / "voc" / "checkpoints" / "latest.pt"
    given = [f"./{name}" if name.startswith("-") else name for name in HOSTILE_INPUTS]  # as a shell user would
    proc = wavegen(
        "vocode",
        *given,
        "../inputs/a.wav",
        "--checkpoint",
        str(checkpoint),
        "--out",
        "../out",
        "--quiet",
        "--engine",
        "torch",
        cwd=inputs,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = snapshot(tmp_path)
    new = sorted(set(after) - set(before))
    assert new[0] == "out" and all(Path(p).parent == Path("out") for p in new[1:])
    assert all(before[p] == after[p] for p in before)
    # each output .wav comes with its .png and .json, and the input as heard (.input.wav, .input.png)
    names = [Path(p).name for p in new[1:] if p.endswith("-vocoded.wav")]
    assert sorted(Path(p).name for p in new[1:]) == sorted(
        n[:-4] + ext for n in names for ext in (".json", ".png", ".wav", ".input.wav", ".input.png")
    )
    assert len(names) == len(HOSTILE_INPUTS) + 1  # the same input twice: two files
    assert len({n.casefold() for n in names}) == len(names)
    assert {"a-vocoded.wav", "a-2-vocoded.wav", "a-2-2-vocoded.wav", "hidden-vocoded.wav"} <= set(names)
    for name in names:
        assert not name.startswith(".") and all(c.isprintable() for c in name) and len(name.encode()) < 255


def test_safe_names_and_the_last_line_of_defence(tmp_path):
    for text in HOSTILE_LABELS:
        name = safe_name(text)
        assert name and "/" not in name and "\\" not in name and not name.startswith(".") and name.isprintable()
        assert inside(tmp_path, name).parent == tmp_path
    names = distinct_names(HOSTILE_LABELS)
    assert len({n.casefold() for n in names}) == len(names)
    assert distinct_names(["a/b", "a_b", "a/b"]) == ["a_b", "a_b-2", "a_b"]
    # words of any script keep their combining marks; a symbol is named by its code point
    for word in ("नमस्ते", "مَرْحَبًا", "สวัสดี", "café", "你好", "Ελληνικά"):
        assert safe_name(word) == unicodedata.normalize("NFC", word)
    assert safe_name("🎵 tune") == "U1F3B5_tune" and safe_name("👩\u200d💻") == "U1F469U1F4BB"
    assert safe_name("❤️") == "U2764" and safe_name("a\u0301") == "á"
    assert distinct_names(["a", "a"], share_equal=False) == ["a", "a-2"]
    for escape in ("..", "../x.wav", "/etc/x.wav", "", "."):
        with pytest.raises(Exception, match="outside the output folder"):
            inside(tmp_path / "out", escape)
