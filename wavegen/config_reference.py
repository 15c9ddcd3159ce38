"""What the settings are: the resolved config of a recipe as TOML (``wavegen config show``) and a
reference of every setting (``wavegen config reference``, kept as docs/settings.md), both made
from the config's own definitions: the dataclasses' fields, types and defaults, the comments
beside them, and the ranges ``validate`` enforces (``config_ranges``)."""

from __future__ import annotations

import dataclasses
import inspect
import io
import tokenize

import tomli_w

from .config import Config, apply_overrides, to_toml
from .config_ranges import CHOICES, RANGES, RULES
from .recipe import load_recipe

REFRESH = "wavegen config reference > docs/settings.md"  # how the page is made again


def show(recipe: str | None = None, overrides: tuple[str, ...] | list[str] = ()) -> str:
    """The config ``recipe`` (``default`` if None) resolves to with the ``--set`` strings
    ``overrides`` applied, as TOML a recipe file can hold, under comment lines saying what it is.
    Raises ``ConfigError`` for an unknown recipe or setting or a value out of range."""
    config = apply_overrides(load_recipe(recipe or "default"), list(overrides))
    given = f"recipe '{recipe or 'default'}'" + "".join(f" --set {item}" for item in overrides)
    head = (
        f"# {given}, resolved: what `wavegen prepare` and a new `wavegen train` run start from,\n"
        "# before train fits it to the prepared data (sample rate, labels, mel features).\n"
        "# Saved as a .toml file, this is a recipe (--recipe FILE.toml).\n"
    )
    return head + to_toml(config)


def field_notes(section: type) -> dict[str, str]:
    """Each field of a config dataclass with the comment that explains it: the comment at the
    end of its line, after the block of comment lines just above it when there is one."""
    lines = inspect.getsource(section).splitlines(keepends=True)
    trailing: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO("".join(lines)).readline):
        if token.type == tokenize.COMMENT:
            trailing[token.start[0]] = token.string.lstrip("#").strip()
    notes = {}
    names = {f.name for f in dataclasses.fields(section)}
    for number, line in enumerate(lines, start=1):
        name = line.strip().partition(":")[0]
        if name not in names or line.lstrip().startswith("#"):
            continue
        block: list[str] = []
        above = number - 1
        while above >= 1 and lines[above - 1].lstrip().startswith("#"):
            block.insert(0, trailing[above])
            above -= 1
        notes[name] = " — ".join(part for part in (" ".join(block), trailing.get(number, "")) if part)
    return notes


def bounds(dotted: str) -> str:
    """What ``validate`` allows for the setting ``dotted``, in words ("" where anything of its type goes)."""
    said = []
    if dotted in RANGES:
        said.append(RANGES[dotted])
    if dotted in CHOICES:
        said.append("one of " + ", ".join(f"`{word}`" for word in CHOICES[dotted]))
    if dotted in RULES:
        said.append(RULES[dotted])
    return "; ".join(said)


def _value(value: object) -> str:
    """A default as TOML writes it (``true``, ``"mix"``, ``[]``, ``0.004``)."""
    return tomli_w.dumps({"x": value}).partition("=")[2].strip()


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def reference() -> str:
    """docs/settings.md: every setting with its type, default, allowed values and meaning, a
    table per section, generated from the config's definitions (see ``REFRESH``)."""
    out = [
        "# Settings",
        "",
        f"<!-- Generated from wavegen/config.py by `{REFRESH}`; a test fails when it is out of date. -->",
        "",
        "Every setting a recipe, a run's `config.toml` or `--set section.key=value` can give, with its",
        "type, its default (the value when no recipe sets it; the recipes in `recipes/` set some), the",
        "values `wavegen` accepts and what it means. `wavegen config show --recipe R --set key=value`",
        "prints the settings a recipe resolves to; [Commands](commands.md#recipes-and-settings) says",
        "which settings may change in a run that has started.",
    ]
    config = Config()
    for section in dataclasses.fields(Config):
        values = getattr(config, section.name)
        notes = field_notes(type(values))
        out += ["", f"## [{section.name}]", "", inspect.getdoc(type(values)) or "", ""]
        out += ["| setting | type | default | allowed | meaning |", "|---|---|---|---|---|"]
        for f in dataclasses.fields(values):
            dotted = f"{section.name}.{f.name}"
            row = [f"`{dotted}`", f"`{f.type}`", f"`{_value(getattr(values, f.name))}`", bounds(dotted), notes[f.name]]
            out.append("| " + " | ".join(_cell(cell) for cell in row) + " |")
    return "\n".join(out) + "\n"
