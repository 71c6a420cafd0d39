"""The ``rlaif`` command group with every command registered, and ``main``, its entry point."""

from __future__ import annotations

import sys

import click

from rlaif.cli.doctor import doctor
from rlaif.cli.eval import eval_group, report
from rlaif.cli.loop import loop
from rlaif.cli.ops import compare, critique, generate, revise, synth_prompts
from rlaif.cli.review import export, review
from rlaif.cli.run import run
from rlaif.cli.serve import serve
from rlaif.cli.train import train_group
from rlaif.errors import RlaifError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rlaif")
def cli() -> None:
    """rlaif: AI preference labels guided by a constitution, from prompts to training data."""


for command in (
    compare,
    critique,
    revise,
    generate,
    synth_prompts,
    run,
    train_group,
    eval_group,
    report,
    loop,
    review,
    export,
    serve,
    doctor,
):
    cli.add_command(command)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI; library errors become one line on stderr and exit code 1."""
    try:
        cli.main(args=argv, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        click.echo(f"error: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except RlaifError as e:
        click.echo("error: " + " ".join(str(e).split()), err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
