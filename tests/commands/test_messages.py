"""Messages and help, by kind of fault: a path of the wrong kind is named as such, a run
folder's faults are said alike in every command, a file that is not a checkpoint is said to be
what it is, lengths print in units that fit, out-of-range values are usage errors (status 2)
everywhere, and every option has help, shown in an order and width that cut nothing."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import click
import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from wavegen.audio.io import AudioReadError, duration, read_recording
from wavegen.cli import main
from wavegen.data.reasons import short_reason
from wavegen.errors import CheckpointError
from wavegen.model import checkpoint as ckpt
from wavegen.model.network import receptive_field
from wavegen.recipe import load_recipe
from wavegen.report.html import toml_value
from wavegen.runs import pick_checkpoint, run_folder


def cli(*args: str, cwd: Path) -> tuple[int, str]:
    """(exit status, output) of ``wavegen ARGS`` in ``cwd``, in this process."""
    here = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(main, list(args), prog_name="wavegen")
    finally:
        os.chdir(here)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


@pytest.fixture
def place(tmp_path: Path) -> Path:
    (tmp_path / "afile").write_text("a file where a folder is expected")
    (tmp_path / "afolder").mkdir()
    sf.write(tmp_path / "song.wav", np.zeros(1600, np.float32), 16000)
    (tmp_path / "song.flac.bin").write_bytes((tmp_path / "song.wav").read_bytes())  # audio by content only
    return tmp_path


# -- a path of the wrong kind ----------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ("prepare", "afile"),
        ("prepare", "afolder", "--out", "afile"),
        ("train", "--data", "afile", "--recipe", "tiny", "--run", "r"),
        ("train", "--run", "afile"),
        ("bench", "learn", "afile", "--steps", "1"),
        ("synth", "--run", "afile"),
        ("synth", "--out", "afile", "--checkpoint", "song.wav"),
        ("info", "--run", "afile"),
        ("report", "--run", "afile"),
        ("demo", "--workdir", "afile"),
    ],
)
def test_a_file_where_a_folder_is_expected_is_named_a_file(place, args):
    status, output = cli(*args, cwd=place)
    assert status != 0
    assert "is a file, not a folder" in error_line(output) or "is a file, not a run folder" in error_line(output)


@pytest.mark.parametrize(
    "args",
    [
        ("synth", "--checkpoint", "afolder"),
        ("info", "--checkpoint", "afolder"),
        ("vocode", "afolder", "--checkpoint", "song.wav"),
    ],
)
def test_a_folder_where_a_file_is_expected_is_named_a_folder(place, args):
    status, output = cli(*args, cwd=place)
    assert status != 0 and "is a folder, not a file" in error_line(output)


def test_a_folder_given_as_a_recording_is_named_a_folder(place):
    with pytest.raises(AudioReadError, match="is a folder, not a file"):
        read_recording(place / "afolder", 16000)


# -- run folders: one wording, and a folder of runs recognised --------------------------------
def make_run(root: Path, name: str, mtime: float) -> Path:
    latest = root / name / "checkpoints" / "latest.pt"
    latest.parent.mkdir(parents=True)
    latest.write_bytes(b"not read")
    os.utime(latest, (mtime, mtime))
    return root / name


@pytest.mark.parametrize("command", ["info", "report", "synth", "eval"])
def test_a_missing_run_and_a_folder_of_runs_read_alike_in_every_command(place, command):
    status, output = cli(command, "--run", "runs/nope", cwd=place)
    assert status == 1
    assert error_line(output) == "Error: runs/nope: no such run folder (train one: wavegen train --run runs/nope)"
    make_run(place / "runs", "old", 1_000_000)
    make_run(place / "runs", "new", 2_000_000)
    status, output = cli(command, "--run", "runs", cwd=place)
    assert status == 1
    assert error_line(output) == (
        "Error: runs: a folder of runs, not a run; give one with --run (newest first): runs/new, runs/old"
    )


def test_run_folder_and_pick_checkpoint_agree(place):
    for wrong in (place / "nope", place / "afile", place / "afolder"):
        with pytest.raises(CheckpointError) as picked:
            pick_checkpoint(wrong)
        with pytest.raises(CheckpointError) as checked:
            run_folder(wrong)
        assert str(picked.value) == str(checked.value)


# -- a file that is not a checkpoint -----------------------------------------------------------
@pytest.mark.parametrize(
    "name, content, said",
    [
        ("song.wav", None, "is an audio file, not a checkpoint"),
        ("take.m4a", b"\x00\x00\x00\x20ftypM4A " + bytes(100), "is an audio file, not a checkpoint"),
        ("song.flac.bin", None, "is an audio file, not a checkpoint"),
        ("cover.pt", b"\x89PNG\r\n\x1a\n" + bytes(100), "is a PNG image, not a checkpoint"),
        ("notes.pt", b"some notes\n", "is a text file, not a checkpoint"),
        ("cut.pt", bytes(range(256)) * 4, "not a wavegen checkpoint (corrupt or truncated)"),
    ],
)
def test_a_file_that_is_not_a_checkpoint_is_said_to_be_what_it_is(place, name, content, said):
    if content is not None:
        (place / name).write_bytes(content)
    with pytest.raises(CheckpointError) as caught:
        ckpt.load(place / name)
    message = str(caught.value)
    assert said in message
    assert "Error" not in message and "Exception" not in message  # no Python exception names


def test_no_user_message_names_an_exception_class():
    package = Path(ckpt.__file__).parents[1]
    named = [
        f"{path.relative_to(package)}:{number}"
        for path in package.rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "{type(exc).__name__}" in line  # in a message's text (a fallback for an empty one is fine)
    ]
    assert not named, named


# -- lengths in units that fit -------------------------------------------------------------------
@pytest.mark.parametrize(
    "seconds, text",
    [(0.25, "0.25 s"), (2.5, "2.5 s"), (12.34, "12.3 s"), (59.9, "59.9 s"), (90, "1.5 min"), (7200, "2.0 h")],
)
def test_durations_print_in_units_that_fit(seconds, text):
    assert duration(seconds) == text


def test_prepare_summarises_a_few_seconds_of_data_in_seconds(place):
    sf.write(place / "afolder" / "a.wav", (0.5 * np.sin(np.arange(40000) / 5)).astype(np.float32), 16000)
    status, output = cli("prepare", "afolder", "--recipe", "tiny", "--quiet", cwd=place)
    assert status == 0, output
    assert "prepared 1 file (2.5 s at 16000 Hz" in output and "0.0 min" not in output


# -- too short: the recipe's receptive field, and what a smaller recipe needs ----------------------
def test_too_short_names_the_recipe_and_the_smallest_recipe():
    tiny = receptive_field(load_recipe("tiny").model)
    default = receptive_field(load_recipe("default").model)
    assert short_reason("default", default) == f"the default recipe's receptive field (--recipe tiny needs {tiny})"
    assert short_reason("tiny", tiny) == "the tiny recipe's receptive field"  # nothing smaller to suggest


# -- an audio format that cannot be decoded -------------------------------------------------------
def test_an_undecodable_format_gets_a_hint(place):
    (place / "take.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(2000))
    with pytest.raises(AudioReadError) as caught:
        read_recording(place / "take.m4a", 16000)
    assert "convert it to WAV or FLAC" in str(caught.value)


# -- settings as TOML ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value, text", [(True, "true"), (False, "false"), ([], "[]"), ("mix", '"mix"'), (0.05, "0.05"), (3, "3")]
)
def test_the_report_shows_settings_as_toml(value, text):
    assert toml_value(value) == text
    assert tomllib.loads(f"v = {text}")["v"] == value


# -- help ------------------------------------------------------------------------------------------
def commands(group: click.Group = main, path: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))


def test_every_option_has_help():
    missing = [
        f"{' '.join(path)} {param.opts[0]}"
        for path, command in commands()
        for param in command.params
        if isinstance(param, click.Option) and not param.help
    ]
    assert not missing, missing


def test_top_level_help_lists_commands_in_workflow_order_with_whole_summaries(tmp_path):
    status, output = cli("--help", cwd=tmp_path)
    rows = output.split("Commands:")[1].splitlines()
    assert status == 0 and not any("..." in row for row in rows), output
    listed = [row.split()[0] for row in rows if row.startswith("  ") and not row.startswith("   ")]
    assert listed[:4] == ["prepare", "train", "synth", "vocode"] and listed == list(main.commands)


@pytest.mark.parametrize("path", [path for path, _ in commands()])
def test_no_help_shows_rst_markup(tmp_path, path):
    status, output = cli(*path, "--help", cwd=tmp_path)
    assert status == 0 and "``" not in output


def test_every_device_option_defaults_to_auto():
    devices = [param for _, command in commands() for param in command.params if param.name == "device"]
    assert devices and all(param.default == "auto" for param in devices)


# -- the same mistake, the same exit status; ranges shown ----------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ("synth", "-n", "0"),
        ("demo", "-n", "0"),
        ("synth", "-n", "100000"),
        ("demo", "-n", "100000"),
        ("synth", "--seconds", "0"),
        ("demo", "--seconds", "0"),
        ("eval", "--seconds", "1e9"),
        ("eval", "--seconds", "0"),
        ("synth", "--temperature", "0"),
        ("vocode", "x.wav", "--temperature", "0"),
        ("bench", "sample", "--seconds", "nan"),
        ("bench", "sample", "--batch", "0"),
        ("bench", "sample", "--batch", "100000"),
        ("bench", "startup", "--seconds", "1e9"),
    ],
)
def test_out_of_range_values_are_usage_errors_everywhere(tmp_path, args):
    status, output = cli(*args, cwd=tmp_path)
    assert status == 2, output
    assert f"(see `wavegen {args[0]}" in error_line(output)


def test_numeric_options_show_their_range_in_help():
    unbounded = {"seed"}  # any integer is a seed
    hidden = []
    for path, command in commands():
        for param in command.params:
            if not isinstance(param, click.Option) or param.name in unbounded:
                continue
            if not isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType)):
                continue
            ranged = isinstance(param.type, click.types._NumberRangeBase)
            said = any(bound in (param.help or "") for bound in ("at most", "> 0", " to "))
            if not (ranged or said):
                hidden.append(f"{' '.join(path)} {param.opts[0]}")
    assert not hidden, hidden
