"""wavegen's messages go through the stdlib ``logging`` (the ``wavegen`` logger): a program routes
or silences them with the standard tools, the command line prints each once on stderr as it
always has (``-v`` adds the debug lines), and no module prints a message itself."""

from __future__ import annotations

import ast
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import wavegen
from wavegen.audio.io import write_wav
from wavegen.cli import main
from wavegen.commands.common import verbosity
from wavegen.messages import setup, silenced
from wavegen.train.distributed import rank_zero_speaks

from helpers import ENV, tone

PACKAGE = Path(wavegen.__file__).parent

# print() where what is printed is data, not a message: module → why
PRINTS_DATA = {
    "wavegen.generate.native.check": "the check's result line on stdout (it is a program of its own)",
}


def dataset(root: Path, kind: str) -> Path:
    """A small folder of recordings; ``kind`` adds what prepare names: a text file (ignored, an
    INFO line) or a file that is not audio though named so (skipped, a WARNING line)."""
    folder = root / f"dataset-{kind}"
    for hz, seconds in ((440, 1.0), (330, 0.6)):
        write_wav(folder / f"{hz}.wav", tone(hz, seconds), 16000)
    if kind == "ignored":
        (folder / "README.txt").write_text("notes, not audio")
    if kind == "skipped":
        (folder / "broken.wav").write_bytes(b"RIFF but nothing else")
    return folder


class Gathered(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self, level: int = logging.DEBUG) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= level]


@pytest.fixture
def gathered():
    """A program's own handler on the ``wavegen`` logger (at INFO), removed afterwards."""
    logger, handler = logging.getLogger("wavegen"), Gathered()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.mark.parametrize("kind", ["plain", "ignored", "skipped"])
def test_a_programs_handler_gets_prepares_messages_and_a_level_silences_them(tmp_path, gathered, kind):
    folder = dataset(tmp_path, kind)
    wavegen.prepare(folder, tmp_path / "prepared", recipe="tiny")
    said = gathered.lines()
    assert said[-1].startswith("prepared 2 files") and said.count(said[-1]) == 1
    assert all(r.name.startswith("wavegen.") for r in gathered.records)  # each module's own logger
    warned = [r.getMessage() for r in gathered.records if r.levelno == logging.WARNING]
    assert warned == ([f"skipped {folder / 'broken.wav'}: {warned[0].split(': ', 1)[1]}"] if kind == "skipped" else [])
    if kind == "ignored":
        assert f"ignored {folder / 'README.txt'}: not audio (looks like text)" in said
    gathered.records.clear()
    logging.getLogger("wavegen").setLevel(logging.WARNING)  # the program wants problems only
    wavegen.prepare(folder, tmp_path / "again", recipe="tiny")
    assert gathered.lines() == warned


def test_a_programs_handler_gets_trainings_messages(tmp_path, gathered):
    wavegen.prepare(dataset(tmp_path, "plain"), tmp_path / "prepared", recipe="tiny")
    gathered.records.clear()
    wavegen.fit(tmp_path / "prepared", tmp_path / "run", recipe="tiny", steps=2, device="cpu")
    said = gathered.lines()
    assert said[0].startswith("training ") and said[-1].startswith("done: step 2")
    gathered.records.clear()
    logging.getLogger("wavegen").setLevel(logging.WARNING)
    wavegen.fit(tmp_path / "prepared", tmp_path / "run", steps=3, device="cpu")  # resumed, a step on
    assert gathered.lines() == []


PROGRAM = """
import logging, sys
import wavegen
how = sys.argv[1]
if how == "configured":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
elif how == "silenced":
    logging.basicConfig(level=logging.INFO)
    logging.getLogger("wavegen").setLevel(logging.WARNING)
wavegen.prepare(sys.argv[2], sys.argv[3], recipe="tiny")
"""


@pytest.mark.parametrize("how", ["unconfigured", "configured", "silenced"])
def test_a_program_sees_warnings_unconfigured_and_info_once_it_asks(tmp_path, how):
    """Python's defaults: unconfigured, the warnings alone reach stderr (its last-resort handler);
    basicConfig at INFO shows every message; the ``wavegen`` logger at WARNING silences INFO."""
    folder = dataset(tmp_path, "skipped")
    proc = subprocess.run(
        [sys.executable, "-c", PROGRAM, how, str(folder), str(tmp_path / "prepared")],
        env={**ENV, "PYTHONPATH": os.pathsep.join(sys.path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""  # nothing on stdout, ever
    lines = proc.stderr.splitlines()
    skipped = [line for line in lines if f"skipped {folder / 'broken.wav'}" in line]
    assert len(skipped) == 1
    summary = [line for line in lines if "prepared 2 files" in line]
    if how == "configured":
        assert summary == [summary[0]] and summary[0].startswith("INFO wavegen.data.prepare: prepared 2 files")
        assert skipped[0].startswith("WARNING wavegen.data.prepare: skipped")
    else:
        assert summary == [] and all("prepared 2 files" not in line for line in lines)


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("kind", ["plain", "ignored", "skipped"])
def test_the_cli_says_each_message_once_on_stderr_however_often_it_runs(tmp_path, kind):
    folder = dataset(tmp_path, kind)
    runs = [cli("prepare", str(folder), "--out", str(tmp_path / f"p{i}"), "--recipe", "tiny", "-q") for i in range(3)]
    for i, (status, out, err) in enumerate(runs):
        assert status == (3 if kind == "skipped" else 0) and out == ""
        lines = err.replace(str(tmp_path / f"p{i}"), "OUT").splitlines()
        assert len(lines) == len(set(lines)), lines  # no message twice
        assert lines == runs[0][2].replace(str(tmp_path / "p0"), "OUT").splitlines()  # the same each time
        assert lines[-1].startswith("prepared 2 files")
        assert not any(line.startswith(("WARNING", "INFO", "DEBUG")) for line in lines)  # the message alone
        if kind == "skipped":
            assert lines[0].startswith(f"skipped {folder / 'broken.wav'}: ")
    # (the held-out line of each file is a debug line: not said without -v)
    assert "held out for validation" not in runs[0][2]


@pytest.mark.parametrize("where", ["before", "after", "both"])
def test_verbose_adds_the_debug_lines_before_or_after_the_command(tmp_path, where):
    folder = dataset(tmp_path, "plain")
    args = ["prepare", str(folder), "--out", str(tmp_path / "p"), "--recipe", "tiny", "-q"]
    args = (["-v"] if where != "after" else []) + args + (["-v"] if where != "before" else [])
    status, out, err = cli(*args)
    assert status == 0 and out == ""
    held = [line for line in err.splitlines() if "held out for validation" in line]
    assert len(held) == len(set(held)) == 2, err  # one for each file, once
    assert err.splitlines()[-1].startswith("prepared 2 files")
    assert verbosity() == 1
    status, _, err = cli("prepare", str(folder), "--out", str(tmp_path / "p"), "--recipe", "tiny", "-q")
    assert status == 0 and "held out" not in err and verbosity() == 0  # the next command without -v: none


def test_setup_keeps_one_handler_and_lets_records_propagate(caplog):
    logger = logging.getLogger("wavegen")
    before = list(logger.handlers)
    try:
        for verbose in (0, 1, 0, 2):
            setup(verbose)
            ours = [h for h in logger.handlers if h not in before]
            assert len(ours) <= 1 and len(logger.handlers) <= len(before) + 1
            assert logger.level == (logging.DEBUG if verbose else logging.INFO)
        caplog.set_level(logging.INFO, logger="wavegen")
        logging.getLogger("wavegen.train.loop").info("a message")
        assert caplog.messages == ["a message"]  # propagated to pytest's handler too
    finally:
        setup(0)


@pytest.mark.parametrize("main_rank", [True, False])
def test_only_rank_0_speaks_in_a_distributed_run(gathered, main_rank):
    class World:
        is_main = main_rank

    @rank_zero_speaks
    def work(*, world):
        logging.getLogger("wavegen.train.loop").info("training")
        logging.getLogger("wavegen.train.slow").warning("a slow step")
        return "done"

    assert work(world=World()) == "done"
    assert gathered.lines() == (["training", "a slow step"] if main_rank else [])
    assert logging.getLogger("wavegen").level == logging.INFO  # restored
    with silenced(False):
        logging.getLogger("wavegen.x").info("heard")
    assert gathered.lines()[-1] == "heard"


def _prints(tree: ast.AST) -> list[int]:
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"
    ]


def test_no_module_prints_a_message_or_takes_a_log_callable():
    """Messages go through logging: print() only where the output is data (``PRINTS_DATA``), and
    no function threads a ``log`` callable any more."""
    found, callables = {}, []
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        tree = ast.parse(path.read_text())
        if _prints(tree):
            found[name] = _prints(tree)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names = [a.arg for a in node.args.args + node.args.kwonlyargs]
                callables += [f"{name}.{node.name}" for a in names if a == "log"]
    assert set(found) == set(PRINTS_DATA), found
    assert len(found["wavegen.generate.native.check"]) == 1
    assert not callables, callables
