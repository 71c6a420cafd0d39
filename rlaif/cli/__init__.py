"""The ``rlaif`` command line: options parsed, the library called, its results printed."""

from rlaif.cli.main import main

__all__ = ["main"]
