"""The options as a new user meets them: short forms, defaults shown one way (parsed, not run)."""

import re

import click
import pytest

from wavegen.cli import main

pytestmark = pytest.mark.slow  # (make test-fast leaves these out; make test runs them)

UNSET = getattr(click.core, "UNSET", None)  # click >= 8.3: an option given no default
SHORT = {"--quiet": "-q", "--out": "-o", "--n": "-n", "--verbose": "-v"}  # every short option there is (besides -h)


def options():
    for name, command in main.commands.items():
        for param in command.params:
            if isinstance(param, click.Option):
                yield name, param


def test_common_flags_have_the_same_short_option_in_every_command():
    seen = set()
    for name, option in options():
        shorts = [o for o in option.opts + option.secondary_opts if not o.startswith("--")]
        longs = [o for o in option.opts if o.startswith("--")]
        want = [SHORT[o] for o in longs if o in SHORT]
        assert shorts == want, f"{name} {longs}: {shorts}"
        seen.update(shorts)
    assert seen == set(SHORT.values())


@pytest.mark.parametrize(
    "command, short, long",
    [
        ("synth", ["-n", "3", "-o", "here", "-q"], ["--n", "3", "--out", "here", "--quiet"]),
        ("demo", ["-n", "1", "-o", "x", "-q"], ["--n", "1", "--out", "x", "--quiet"]),
        ("prepare", ["data", "-o", "p", "-q"], ["data", "--out", "p", "--quiet"]),
        ("train", ["-q"], ["--quiet"]),
        ("report", ["-o", "page"], ["--out", "page"]),
    ],
)
def test_short_options_mean_the_long_ones(command, short, long):
    cmd = main.commands[command]
    assert cmd.make_context(command, list(short)).params == cmd.make_context(command, list(long)).params


def test_defaults_are_shown_one_way():
    """A fixed default is shown by click ([default: x]) and not again in words; a default that
    depends on something is said in words as '(default: ...)', never 'default 2'."""
    for name, option in options():
        text = option.help or ""
        fixed = not (option.is_flag or option.count or option.multiple) and option.default not in (None, UNSET)
        if fixed:
            assert option.show_default is True, f"{name} {option.opts} hides its default"
            assert "(default:" not in text, f"{name} {option.opts} says its default twice"
        assert not re.search(r"\bdefault \d", text), f"{name} {option.opts}: {text}"
    help_text = main.commands["synth"].get_help(click.Context(main.commands["synth"], info_name="synth"))
    assert "-n, --n INTEGER" in help_text and "-o, --out PATH" in help_text and "[default: samples]" in help_text
