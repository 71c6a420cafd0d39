"""The options whose defaults come from the settings dataclasses, and the lazy imports."""

from __future__ import annotations

import subprocess
import sys

import click

from rlaif.cli.app import cli
from rlaif.cli.options import FieldOption


def field_options(group: click.Group):
    for command in group.commands.values():
        if isinstance(command, click.Group):
            yield from field_options(command)
        else:
            yield from ((command, p) for p in command.params if isinstance(p, FieldOption))


def test_a_field_option_passes_its_field_and_parses_to_the_fields_type():
    options = list(field_options(cli))
    assert len(options) > 50
    for command, option in options:
        default = option.settings.default(option.field)
        assert option.name == option.field, (command.name, option.name)
        parsed = option.type_cast_value(click.Context(command), default)
        assert parsed == default and type(parsed) is type(default), (command.name, option.name)


SETTINGS_MODULES = (
    "rlaif.pipeline.config",
    "rlaif.loop",
    "rlaif.train.dpo",
    "rlaif.train.reward",
    "rlaif.train.grpo",
    "rlaif.evaluate.winrate",
    "rlaif.evaluate.agreement",
)


def test_listing_the_commands_imports_no_settings_module():
    code = f"import sys, rlaif.cli.app; print([m for m in {SETTINGS_MODULES} if m in sys.modules])"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"
