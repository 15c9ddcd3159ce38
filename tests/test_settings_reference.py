"""``wavegen config show`` and ``wavegen config reference``: the resolved settings are a recipe
that reads back to the same config, and docs/settings.md is the reference the config's own
definitions give, with ranges that are the ones ``validate`` enforces."""

import dataclasses
import math
import re
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from wavegen.cli import main
from wavegen.config import Config, apply_overrides, known_keys, validate
from wavegen.config_ranges import CHOICES, RANGES, RULES, in_range
from wavegen.config_reference import REFRESH, field_notes, reference, show
from wavegen.errors import ConfigError
from wavegen.recipe import load_recipe, recipe_names

ROOT = Path(__file__).resolve().parent.parent


def test_docs_settings_is_the_generated_reference():
    written = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    assert written == reference(), f"docs/settings.md is out of date: refresh it with `{REFRESH}`"


def test_the_reference_names_every_setting_with_a_meaning():
    page = reference()
    for section in dataclasses.fields(Config):
        notes = field_notes(type(getattr(Config(), section.name)))
        assert set(notes) == {f.name for f in dataclasses.fields(getattr(Config(), section.name))}
        assert all(len(note) > 10 for note in notes.values()), notes
    rows = [line for line in page.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == [k for k in _declared()]
    assert set(RANGES) | set(CHOICES) | set(RULES) <= set(known_keys())
    assert "| `train.ema` | `float` | `0.999` | in [0, 1) | decay of a moving average" in page
    assert '| `train.precision` | `str` | `"auto"` | one of `auto`, `fp32`, `bf16` |' in page


def _declared() -> list[str]:
    config = Config()
    return [
        f"{s.name}.{f.name}" for s in dataclasses.fields(Config) for f in dataclasses.fields(getattr(config, s.name))
    ]


def _validate_with(dotted: str, value) -> str:
    """The message ``validate`` gives for the default config with ``dotted`` set to ``value`` ("" if none)."""
    config = Config()
    section, _, key = dotted.partition(".")
    setattr(getattr(config, section), key, value)
    try:
        validate(config)
    except ConfigError as exc:
        return str(exc)
    return ""


def _ends(spec: str, integer: bool) -> tuple[list[float], list[float]]:
    """Values inside and just outside the range ``spec``."""
    step = 1 if integer else 1e-6
    read = int if integer else float  # (exactly: an integer end such as 2**64 - 1 is no float)
    if spec.startswith(">"):
        low = read(spec.split()[1])
        inside, outside = ([low, low + step], [low - step]) if spec.startswith(">=") else ([low + step], [low])
    else:
        spec = re.sub(r"(?<=[\])]) \(.*\)$", "", spec)  # "in [a, b) (a note)": the interval alone
        low, high = (read(x) for x in spec[4:-1].split(","))
        inside, outside = [(low + high) / 2 if not integer else (low + high) // 2], [low - step, high + step]
        (inside if spec[3] == "[" else outside).append(low)
        (inside if spec[-1] == "]" else outside).append(high)
    cast = int if integer else float
    return [cast(v) for v in inside], [cast(v) for v in outside]


@pytest.mark.parametrize("dotted", sorted(RANGES))
def test_each_stated_range_is_the_range_validate_enforces(dotted):
    section, _, key = dotted.partition(".")
    integer = isinstance(getattr(getattr(Config(), section), key), int)
    inside, outside = _ends(RANGES[dotted], integer)
    said = f"'{dotted}' must be {RANGES[dotted]}"
    for value in inside:
        assert said not in _validate_with(dotted, value), value
    for value in outside:
        assert _validate_with(dotted, value).startswith(said), value


def test_ranges_read_as_written():
    cases = [("> 0", 0, False), ("> 0", 1e-9, True), (">= 1", 1, True), (">= 1", 0.5, False), ("in [0, 1)", 1, False)]
    cases += [("in [0, 1)", 0, True), ("in (0, 60]", 60, True), ("in (0, 60]", 0, False), (">= 0 (0 = off)", 0, True)]
    for spec, value, expected in cases:
        assert in_range(value, spec) is expected, (spec, value)
    assert not any(in_range(math.nan, spec) for spec in RANGES.values())
    with pytest.raises(ValueError):
        in_range(1, "between 0 and 1")


@pytest.mark.parametrize("dotted", sorted(CHOICES))
def test_each_stated_choice_is_what_validate_accepts(dotted):
    for word in CHOICES[dotted]:
        assert _validate_with(dotted, word) == ""
    assert _validate_with(dotted, "nope").startswith(f"'{dotted}' must be")


BREAKS = {  # a config that breaks each rule the reference states beyond ranges and choices
    "model.classes": ["model.classes=128"],
    "model.labels": ["model.labels=a,b,a"],
    "model.mel_channels": ["model.mel_channels=80"],
    "model.mel_hop": ["model.mel_hop=256"],
    "data.channel": ["data.channel=left"],
    "data.mel_n_fft": ["data.mel_n_fft=128"],
    "data.mel_fmax": ["data.mel_fmax=9000"],
}


@pytest.mark.parametrize("dotted", sorted(RULES))
def test_each_stated_rule_is_enforced(dotted):
    assert set(BREAKS) == set(RULES)  # a new rule needs a config that breaks it here
    with pytest.raises(ConfigError):
        apply_overrides(Config(), BREAKS[dotted])
    apply_overrides(Config(), [])  # the defaults keep every rule


@pytest.mark.parametrize(
    "recipe, overrides",
    [(None, []), ("tiny", ["train.lr=1e-3", "model.cycles=2"]), ("vocoder", ["data.mel_fmax=7600"]), ("speakers", [])],
)
def test_show_prints_a_recipe_that_reads_back_to_the_same_config(tmp_path, recipe, overrides):
    text = show(recipe, overrides)
    head = text.splitlines()[:3]
    assert all(line.startswith("# ") for line in head) and "before train fits it to the prepared data" in text
    assert head[0].startswith(f"# recipe '{recipe or 'default'}'") and all(f"--set {o}" in head[0] for o in overrides)
    saved = tmp_path / "shown.toml"
    saved.write_text(text, encoding="utf-8")
    expected = apply_overrides(load_recipe(recipe or "default"), overrides)
    assert load_recipe(str(saved)) == expected
    assert tomllib.loads(text) == expected.to_dict()


def test_config_show_and_reference_on_the_command_line():
    runner = CliRunner()
    done = runner.invoke(main, ["config", "show", "--recipe", "tiny", "--set", "train.steps=500"])
    assert done.exit_code == 0 and tomllib.loads(done.output)["train"]["steps"] == 500
    assert runner.invoke(main, ["config", "show"]).output == show()
    bad = runner.invoke(main, ["config", "show", "--set", "train.lrr=1"])
    assert bad.exit_code == 1 and bad.output.strip().splitlines() == [
        "Error: --set: unknown setting 'train.lrr' (did you mean train.lr?)"
    ]
    bad = runner.invoke(main, ["config", "show", "--recipe", "nope"])
    assert bad.exit_code == 1 and "unknown recipe 'nope'" in bad.output and "tiny" in bad.output
    assert runner.invoke(main, ["config", "reference"]).output == reference()
    assert set(recipe_names()) >= {"tiny", "default", "vocoder", "speakers"}
