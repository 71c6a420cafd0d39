"""The ``rlaif`` command line: ``app`` holds the group and the entry point, one module a command
group, ``options`` the options they share."""

from rlaif.cli.app import cli, main

__all__ = ["cli", "main"]
