"""The ``wavegen`` command line: a thin layer that builds a config and calls the library.

Heavy modules (torch, librosa) are imported inside the commands so ``wavegen --help`` is instant.
Every ``WavegenError`` becomes a one-line ``Error: ...`` and exit status 1; click's usage errors
(an unknown option, a value out of range) are one line too, with status 2. A command checks its
own values (lengths, counts, output folders) before it imports torch, so mistakes are answered
at once.
"""

from __future__ import annotations

import click

from .commands.bench import bench
from .commands.common import VERBOSE, VERBOSITY_HELP, one_line
from .commands.config import config
from .commands.demo import demo
from .commands.eval import evaluate_command
from .commands.export import export
from .commands.info import info
from .commands.models import models
from .commands.prepare import prepare
from .commands.report import report
from .commands.synth import synth
from .commands.train import train
from .commands.vocode import vocode


class OneLineGroup(click.Group):
    """click's own usage errors (an unknown option, a value out of range) as one ``Error:`` line
    like every other error, pointing at ``--help`` instead of printing the usage block. They keep
    click's exit status 2."""

    def make_context(self, *args, **kwargs):
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as exc:
            raise _one_line_usage(exc) from None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _one_line_usage(exc) from None

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)  # in workflow order, as added below: prepare, train, synth...

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Each command with its whole summary, wrapped, never cut with "..." as click's default
        width would cut most of them."""
        rows = [(name, self.commands[name].get_short_help_str(limit=1000)) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _one_line_usage(exc: click.UsageError) -> click.UsageError:
    if isinstance(exc, getattr(click.exceptions, "NoArgsIsHelpError", ())):  # bare `wavegen`: the help
        return exc
    names: list[str] = []
    ctx = exc.ctx
    while ctx is not None and ctx.parent is not None:  # the root's name may be "python -m wavegen"
        assert ctx.info_name is not None  # a subcommand's context is named as it was called
        names.insert(0, ctx.info_name)
        ctx = ctx.parent
    where = " ".join(["wavegen", *names])
    short = click.UsageError(one_line(f"{exc.format_message().rstrip('.')} (see `{where} --help`)"))
    # click's stubs declare exit_code a ClassVar, yet click reads it from the instance (show, main),
    # so an instance's own code is honoured: no context means no usage block and no hint printed
    short.exit_code = exc.exit_code  # type: ignore[misc]
    return short


@click.group(cls=OneLineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="wavegen")
@click.option("-v", "--verbose", count=True, help=VERBOSITY_HELP)
def main(verbose: int) -> None:
    """wavegen: train WaveNet models on your recordings and listen to what they generate.

    \b
      wavegen synth --model melodies  hear a model that ships with wavegen (wavegen models)
      wavegen prepare dataset/        encode a folder of audio files
      wavegen train --recipe small    train (or resume) runs/small on it, on a CPU
      wavegen train                   the same with the default recipe, sized for a GPU
      wavegen synth --seconds 2       write WAVs to samples/ from the newest run
      wavegen vocode speech.wav       resynthesise a recording with a vocoder (mel) model
      wavegen eval                    validation bits/sample (and resynthesis distance)
      wavegen report                  an HTML page of the newest run and its samples
      wavegen export RUN OUT/         a model folder to share or start from
    """
    from .messages import setup
    from .noise import quiet_libraries

    quiet_libraries()  # here, not on import: a program using wavegen as a library keeps its logging
    setup(verbose)  # wavegen's messages on stderr, one line each, as the commands always wrote them


main.add_command(prepare)
main.add_command(train)
main.add_command(synth)
main.add_command(vocode)
main.add_command(evaluate_command)
main.add_command(info)
main.add_command(report)
main.add_command(export)
main.add_command(models)
main.add_command(demo)
main.add_command(bench)
main.add_command(config)


def _verbose_everywhere(group: click.Group) -> None:
    """``-v`` after any command's name too (wavegen train -v), as before it (wavegen -v train)."""
    for command in group.commands.values():
        VERBOSE(command)
        if isinstance(command, click.Group):
            _verbose_everywhere(command)


_verbose_everywhere(main)


if __name__ == "__main__":  # pragma: no cover
    main()
