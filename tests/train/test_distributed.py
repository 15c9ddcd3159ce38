"""Data-parallel training in two CPU processes (gloo): the real Trainer in lockstep, and the real
command line under torchrun, its resumes across a change in process count and its SIGTERM."""

import csv
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

from wavegen.audio.io import write_wav
from wavegen.config import apply_overrides
from wavegen.data.prepare import prepare
from wavegen.data.prepared import PreparedData
from wavegen.data.windows import Batch, WindowSampler
from wavegen.errors import ConfigError
from wavegen.model import checkpoint as ckpt
from wavegen.recipe import load_recipe
from wavegen.train import distributed
from wavegen.train.loop import train
from wavegen.train.trainer import Trainer

from helpers import tone

pytestmark = [
    pytest.mark.skipif(
        not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed with gloo is not available"
    ),
    pytest.mark.slow,
]  # (make test-fast leaves these out; make test runs them)

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
# 2 windows of 2 micro-batches per rank and step; no warm-up, so every step moves every weight by
# about lr and a wrong gradient shows in the weights at once.
# No windows from a file's start: their leading silence is not a target, and with targets
# left out the mean over both ranks' windows is no longer the mean of the ranks' means.
LOCKSTEP = [
    "train.batch_size=2",
    "train.accumulate=2",
    "train.segment_length=200",
    "train.warmup_steps=0",
    "train.steps=100",
    "train.val_batches=1",
    "train.precision=fp32",
    "train.start_fraction=0",
]
STEPS, POISONED_STEP = 4, 2  # rank 1's loss is NaN in the last micro-batch of step 2 (0-based)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def flat(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def _lockstep(rank: int, port: int, prepared: Path, out: Path) -> None:
    """One of two processes: the real Trainer under DDP, recording what it draws and weighs."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    world = distributed.start(torch.device("cpu"))
    try:
        config = apply_overrides(load_recipe("tiny"), LOCKSTEP)
        data = PreparedData(prepared)
        trainer = Trainer(config, data, out / "run", torch.device("cpu"), world)
        batches, inputs, calls = [], [], []
        draw, noisy, bits = trainer.sampler.batch, trainer._noisy, trainer._loss
        trainer.sampler.batch = lambda size: batches.append(draw(size)) or batches[-1]
        trainer._noisy = lambda codes: inputs.append(noisy(codes)) or inputs[-1]

        def poisoned(batch, model=None):
            value = bits(batch, model)
            calls.append(None)
            return value * float("nan") if rank == 1 and len(calls) == 2 * POISONED_STEP + 2 else value

        trainer._loss = poisoned
        reductions = []  # (step, bucket) of every bucket of gradients DDP averages

        def counting(state, bucket):
            reductions.append((trainer.step, bucket.index()))
            return allreduce_hook(state, bucket)

        trainer.net.register_comm_hook(None, counting)
        weights = []
        for _ in range(STEPS):
            trainer.train_step()
            weights.append(world.gather(flat(trainer.model)))  # both ranks' weights, on both
        # Resume: rank 0's checkpoint, with every rank's sampling state, into fresh trainers.
        payload = world.gather(trainer.state(world.gather(trainer.rng_state())))[0]
        resumed = Trainer(config, data, out / "run", torch.device("cpu"), world)
        resumed.load_state(payload)
        trainer.train_step()
        resumed.train_step()
        torch.save(
            {
                "weights": weights,
                "inputs": inputs,
                "targets": [b.targets for b in batches],
                "skipped": trainer.skipped,
                "reductions": reductions,
                "saved_ranks": len(payload["rng"]["ranks"]),
                "resumed_same": torch.equal(flat(trainer.model), flat(resumed.model)),
            },
            out / f"rank{rank}.pt",
        )
    finally:
        world.close()


def test_without_torchrun_a_process_trains_alone_and_bad_variables_are_refused(monkeypatch):
    world = distributed.start(torch.device("cpu"), environ={})
    assert (world.size, world.rank, world.is_main, world.distributed) == (1, 0, True, False)
    assert not dist.is_initialized()  # no process group: one process computes what it always did
    loss = torch.tensor(3.0)
    assert world.mean(loss) is loss and world.gather("state") == ["state"] and world.any(True)
    with pytest.raises(ConfigError, match="need 0 <= RANK < WORLD_SIZE"):
        distributed.from_env({"WORLD_SIZE": "2", "RANK": "2", "LOCAL_RANK": "0"})
    with pytest.raises(ConfigError, match="must be whole numbers"):
        distributed.from_env({"WORLD_SIZE": "two", "RANK": "0", "LOCAL_RANK": "0"})
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="--nproc: this is already one of torchrun's processes"):
        distributed.launch(2, torch.device("cpu"), ["-m", "wavegen", "train"])


def every_option(command) -> list[str]:
    """Each of ``command``'s options given a value of its type other than its default (twice
    where it is repeatable): a new option is in it without anyone writing it here."""
    import click

    args = []
    for param in command.params:
        name = param.opts[-1]
        if param.is_flag or param.count:  # (a count, as -v: given once)
            args.append(name)
        elif isinstance(param.type, click.Choice):
            args += [name, param.type.choices[-1]]
        elif isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType)):
            args += [name, "7"]
        else:
            args += [name, f"-odd {name} value"]  # a value that looks like an option stays a value
        if param.multiple:
            args += args[-2:]
    return args


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--run", "grown", "--set", "train.lr=1e-3", "--set", "model.cycles=2", "-q", "--steps", "420", "--nproc", "2"],
        "every option",
    ],
)
def test_torchrun_gets_back_every_option_train_was_given(argv):
    """``train --nproc N`` starts itself again under torchrun with an argument list derived from
    train's own parameters: parsed by train it gives the same values, and torchrun passes it on."""
    from torch.distributed.run import parse_args

    from wavegen.commands.common import command_line
    from wavegen.commands.train import train as train_command

    argv = every_option(train_command) if argv == "every option" else argv
    given = train_command.make_context("train", list(argv))
    again = command_line(given)
    assert train_command.make_context("train", list(again)).params == given.params
    moved = command_line(given, run=Path("elsewhere"), nproc=None)  # what train passes: its run, no --nproc
    assert "--run-dir=elsewhere" in moved and not any(part.startswith("--nproc") for part in moved)
    # torchrun passes it on untouched (its options match abbreviations: --run would be its --run-path)
    torchrun = parse_args(["--standalone", "--nproc-per-node", "2", "-m", "wavegen", "train", *moved])
    assert torchrun.module and torchrun.training_script == "wavegen"
    assert torchrun.training_script_args == ["train", *moved]


@pytest.fixture(scope="module")
def tones(tmp_path_factory) -> Path:
    """Four 2 s tones (220-660 Hz), prepared: windows differ enough that batch size matters."""
    root = tmp_path_factory.mktemp("tones")
    for freq in (220, 330, 440, 660):
        write_wav(root / "dataset" / f"t{freq}.wav", tone(freq, 2.0), 16000)
    prepare(root / "dataset", root / "prepared", load_recipe("tiny").data, progress=False)
    return root / "prepared"


def test_ranks_average_their_gradients_into_identical_weights(tones, tmp_path):
    pair = torch.multiprocessing.spawn(_lockstep, (free_port(), tones, tmp_path), nprocs=2, join=False)
    deadline = time.monotonic() + 120
    while not pair.join(timeout=1):  # a child's exception is raised here
        if time.monotonic() > deadline:  # a collective that one rank never reaches waits for 30 min
            for process in pair.processes:
                process.kill()
            pytest.fail("the two processes did not finish within 120 s: they wait for each other")
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    weights = ranks[0]["weights"]
    assert all(torch.equal(a, b) for a, b in weights), "the ranks' weights differ after a step"
    # Each rank draws its own windows; rank 0 draws exactly what a lone process draws.
    assert not any(torch.equal(a, b) for a, b in zip(ranks[0]["inputs"], ranks[1]["inputs"]))
    config = apply_overrides(load_recipe("tiny"), LOCKSTEP)
    alone = WindowSampler(
        PreparedData(tones).train, 0, 200, config.train.seed, config.train.start_fraction, start_silence=129
    )  # as Trainer draws them (train.full_context = false)
    assert (alone.batch(2).targets == ranks[0]["targets"][0]).all()
    # DDP averaged once per step, the skipped one included: the first micro-batch of each step
    # only accumulated (no_sync), and the skipped step's reduction did not spill into the next.
    for step in range(STEPS + 1):
        buckets = [bucket for at, bucket in ranks[0]["reductions"] if at == step]
        assert buckets and len(set(buckets)) == len(buckets), (step, ranks[0]["reductions"])
    # A NaN on rank 1 alone made both skip the same step, and training went on after it.
    assert ranks[0]["skipped"] == ranks[1]["skipped"] == 1
    assert torch.equal(weights[POISONED_STEP][0], weights[POISONED_STEP - 1][0])
    assert not torch.equal(weights[-1][0], weights[POISONED_STEP][0])

    # The same steps in one process on both ranks' windows (after the input noise) together.
    reference = Trainer(config, PreparedData(tones), tmp_path / "ref", torch.device("cpu"))
    merged = iter(
        [
            Batch(
                torch.cat([ranks[0]["inputs"][i], ranks[1]["inputs"][i]]).numpy(),
                torch.cat([torch.from_numpy(ranks[r]["targets"][i]) for r in range(2)]).numpy(),
            )
            for i in range(len(ranks[0]["inputs"]))
        ]
    )
    reference.sampler.batch = lambda size: next(merged)
    reference._noisy = lambda codes: codes
    for step in range(STEPS):
        if step == POISONED_STEP:
            next(merged), next(merged)
            reference.step += 1
        else:
            reference.train_step()
        # Rounding: ~1e-6. A gradient that is not the average of both ranks': ~lr = 3e-3.
        gap = (flat(reference.model) - weights[step][0]).abs().max().item()
        assert gap < 1e-4, f"step {step}: weights {gap:.1e} from one process on the union of the windows"
    # A resumed pair of processes continues exactly where the first pair goes.
    assert ranks[0]["saved_ranks"] == 2 and ranks[0]["resumed_same"] and ranks[1]["resumed_same"]


def wavegen(*args, cwd, ok=True):
    proc = subprocess.run(
        [sys.executable, "-m", "wavegen", *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300
    )
    if ok:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def mean_train_bits(run: Path) -> float:
    """The training loss averaged over every step of a run (log.csv, logged at every step)."""
    rows = [row for row in csv.DictReader(open(run / "log.csv")) if row["train_bits"]]
    return sum(float(row["train_bits"]) for row in rows) / len(rows)


def final_val_bits(stderr: str) -> float:
    found = re.search(r"done: step \d+, train [\d.]+ bits/sample, validation ([\d.]+)", stderr)
    assert found, stderr[-3000:]
    return float(found.group(1))


# Batch size matters here (Adam at a high rate on four tones, short windows): over seeds 0-3 a
# batch of 1 averages 0.41-0.59 bits/sample more over the 400 steps than a batch of 2.
RUN = [
    "train.steps=400",
    "train.segment_length=100",
    "train.warmup_steps=10",
    "train.lr=2e-2",
    "train.val_every=400",
    "train.val_batches=16",
    "train.checkpoint_every=400",
    "train.log_every=1",
    "train.precision=fp32",
]  # (the figures above were measured in float32)


@pytest.fixture(scope="module")
def runs(tones, tmp_path_factory):
    """The same 400 steps: two processes of batch 1 (wavegen train --nproc 2), and one process of
    batch 2 and of batch 1 (what a broken two-process run amounts to)."""
    root = tmp_path_factory.mktemp("runs")
    sets = [part for item in RUN + ["train.batch_size=1"] for part in ("--set", item)]
    two = wavegen(
        "train",
        "--data",
        str(tones),
        "--run",
        "two",
        "--recipe",
        "tiny",
        "--device",
        "cpu",
        "--quiet",
        "--nproc",
        "2",
        *sets,
        cwd=root,
    )
    val = {}
    for batch in (2, 1):
        config = apply_overrides(load_recipe("tiny"), RUN + [f"train.batch_size={batch}"])
        val[batch] = train(config, tones, root / f"one-batch{batch}", device="cpu", progress=False).val_bits
    return root, two.stderr, val


def test_two_processes_train_like_one_with_twice_the_batch(runs):
    root, stderr, val = runs
    assert "2 processes, 2 windows per step (batch_size 1 × accumulate 1 × 2 processes)" in stderr
    two, double, single = (mean_train_bits(root / name) for name in ("two", "one-batch2", "one-batch1"))
    assert single - double > 0.3, "the premise: here a batch of 2 learns clearly faster than a batch of 1"
    # Correct runs stay within 0.12 of the doubled batch (seeds 0-3); unaveraged gradients, ranks
    # that draw the same windows, or rank 0 training alone were 0.39-0.59 above it (seeds 0-1):
    # they learn like a batch of 1.
    assert abs(two - double) < 0.2, (two, double, single)
    assert abs(final_val_bits(stderr) - val[2]) < 0.25, (final_val_bits(stderr), val)  # correct: within 0.12
    saved = ckpt.load(root / "two" / "checkpoints" / "latest.pt")
    assert not any(k.startswith("module.") for k in saved["model"])  # the bare model's weights
    assert len(saved["rng"]["ranks"]) == 2 and saved["rng"]["sampler"] == saved["rng"]["ranks"][0]["sampler"]
    assert saved["rng"]["ranks"][0]["sampler"] != saved["rng"]["ranks"][1]["sampler"]
    assert len((root / "two" / "log.csv").read_text().splitlines()) == 1 + 1 + 400  # only rank 0 writes


def test_a_single_process_run_continues_in_two_processes(runs, tones):
    root, _, _ = runs
    shutil.copytree(root / "one-batch2", root / "grown")
    args = ["train", "--run", "grown", "--steps", "420", "--device", "cpu", "--quiet", "--nproc", "2"]
    missing = wavegen(*args, "--data", "nowhere", cwd=root, ok=False)  # one error line, before torchrun
    assert missing.returncode == 1 and missing.stderr.count("Error:") == 1 and "no prepared data here" in missing.stderr
    grown = wavegen(*args, "--data", str(tones), cwd=root)
    assert "resuming grown at step 400" in grown.stderr and "rank 1 draws windows from new seeds" in grown.stderr
    saved = ckpt.load(root / "grown" / "checkpoints" / "latest.pt")
    assert saved["step"] == 420 and len(saved["rng"]["ranks"]) == 2


def test_sigterm_to_torchrun_saves_and_one_process_resumes(tones, tmp_path):
    """torchrun passes SIGTERM on; the processes stop at the same step, rank 0 saves every
    rank's state, and the run goes on in one process, and synthesises."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "wavegen",
        "train",
        "--data",
        str(tones),
        "--run-dir",
        "run",
        "--recipe",
        "tiny",
        "--steps",
        "100000",
        "--set",
        "train.batch_size=2",
        "--set",
        "train.segment_length=100",
        "--device",
        "cpu",
        "--quiet",
    ]
    launcher = subprocess.Popen(command, cwd=tmp_path, env=ENV, stderr=subprocess.PIPE, text=True)
    log, deadline = tmp_path / "run" / "log.csv", time.monotonic() + 120
    while not (log.is_file() and len(log.read_text().splitlines()) >= 3) and launcher.poll() is None:
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.2)
    launcher.send_signal(signal.SIGTERM)
    _, stderr = launcher.communicate(timeout=60)
    stopped = re.findall(r"interrupted at step (\d+); saved run/checkpoints/latest.pt", stderr)
    assert len(stopped) == 1, stderr[-3000:]  # rank 0 alone says so
    step = int(stopped[0])
    saved = ckpt.load(tmp_path / "run" / "checkpoints" / "latest.pt")
    assert step >= 10 and saved["step"] == step and len(saved["rng"]["ranks"]) == 2

    resumed = wavegen(
        "train",
        "--data",
        str(tones),
        "--run",
        "run",
        "--steps",
        str(step + 5),
        "--device",
        "cpu",
        "--quiet",
        cwd=tmp_path,
    )
    assert f"resuming run at step {step}" in resumed.stderr
    assert ckpt.load(tmp_path / "run" / "checkpoints" / "latest.pt")["step"] == step + 5
    facts = json.loads(wavegen("info", "--run", "run", "--json", cwd=tmp_path).stdout)
    assert facts["step"] == step + 5 and facts["receptive_field_samples"] == 129
    wavegen("synth", "--run", "run", "--seconds", "0.02", "--engine", "torch", "--quiet", cwd=tmp_path)
    assert len(list((tmp_path / "samples").glob("*.wav"))) == 1
