"""``python -m rlaif``: the same as the ``rlaif`` command."""

from rlaif.cli import main

main()
