"""The options several ``rlaif`` commands share, each declared once, and defaults read from the
library's settings dataclasses."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import click

from rlaif.backends.specs import MODEL_HELP

F = TypeVar("F", bound=Callable[..., Any])
#: what click.option returns: it adds an option to the command it decorates
Decorator = Callable[[F], F]

RULE_HELP = (
    "Or a programmatic judge: rule:max_words=N, rule:contains=TEXT, rule:json, ... or "
    "python:MODULE:FUNCTION (a TRL reward function)."
)
#: the policies `rlaif train grpo` and `rlaif loop` can train
TRAINABLE_HELP = "smollm2 (the embedded model) or hf:DIR (a local checkpoint)."
#: the models `rlaif train reward` and `rlaif train dpo` start from
TRAIN_MODEL_HELP = (
    "Model to start from: smollm2 (the embedded model, converted once from its GGUF and "
    "cached) or hf:DIR (a local Hugging Face checkpoint, e.g. one rlaif train wrote)."
)

# click types several options use
AT_LEAST_0 = click.IntRange(min=0)
AT_LEAST_1 = click.IntRange(min=1)
NOT_NEGATIVE = click.FloatRange(min=0)
ABOVE_0 = click.FloatRange(min=0, min_open=True)
#: a distance of a label probability from 0.5
MARGIN = click.FloatRange(0, 0.5, max_open=True)
MODES = click.Choice(["pairwise", "pointwise"])
LOSSES = click.Choice(["auto", "soft", "hard"])
#: what DPO does with a pair whose chosen answer is cut off or looping
DEGENERATE_CHOSEN = click.Choice(["keep", "drop"])
PORTS = click.IntRange(0, 65535)


class Settings:
    """A settings dataclass by module and class name, imported only when an option's default is
    first read, so that ``rlaif --help`` does not import it."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def cls(self) -> type:
        """The dataclass itself (imported now)."""
        return getattr(importlib.import_module(self.module), self.name)

    def default(self, field: str) -> Any:
        """The default of the dataclass field ``field``."""
        for f in dataclasses.fields(self.cls()):
            if f.name == field and f.default is not dataclasses.MISSING:
                return f.default
        raise TypeError(f"{self.module}.{self.name} has no field {field!r} with a default")

    def option(self, field: str, *decls: str, **attrs: Any) -> Decorator:
        """``click.option`` for ``field`` (``--field-name`` unless ``decls`` name it) with the
        field's default, shown in the help. Give ``type`` for anything but a string."""
        decls = (*(decls or ("--" + field.replace("_", "-"),)), field)
        attrs.setdefault("show_default", True)
        return click.option(*decls, cls=FieldOption, settings=self, field=field, **attrs)


class FieldOption(click.Option):
    """An option whose default is a settings dataclass field's, read when first needed."""

    def __init__(self, *args: Any, settings: Settings, field: str, **attrs: Any) -> None:
        self.settings, self.field = settings, field
        super().__init__(*args, default=partial(settings.default, field), **attrs)

    def get_default(self, ctx: click.Context, call: bool = True) -> Any:
        """The field's default; read for the help too (click would show "(dynamic)")."""
        return super().get_default(ctx, call=True)


def settings_from(settings: Settings, **options: Any) -> Any:
    """The settings dataclass built from parsed options; its ValueError is a usage error."""
    try:
        return settings.cls()(**options)
    except ValueError as e:
        raise click.UsageError(str(e)) from e


def stack(*decorators: Decorator) -> Decorator:
    """One decorator applying ``decorators`` so that their options list in the given order."""

    def apply(f: F) -> F:
        for decorator in reversed(decorators):
            f = decorator(f)
        return f

    return apply


def _shared(
    settings: Settings | None, field: str, default: Any, decl: str, **attrs: Any
) -> Decorator:
    """An option read from ``settings`` when the command has them, else with ``default``."""
    if settings is not None:
        return settings.option(field, decl, **attrs)
    return click.option(decl, field, default=default, show_default=True, **attrs)


def model(
    decl: str = "--model",
    settings: Settings | None = None,
    *,
    prefix: str = "",
    rules: bool = False,
    required: bool = False,
) -> Decorator:
    """A model string (``--model``, ``--judge``, ``--policy``, ...): ``prefix``, the model-string
    help, then the rule judges' when ``rules``; default smollm2 unless ``required``."""
    help = prefix + MODEL_HELP + (" " + RULE_HELP if rules else "")
    if required:
        return click.option(decl, required=True, help=help)
    return _shared(settings, decl.removeprefix("--"), "smollm2", decl, help=help)


def constitution(settings: Settings | None = None, why: str | None = None) -> Decorator:
    """``--constitution``: what it is for in ``why`` (None: the formats it reads instead)."""
    if why is None:
        help = "Constitution file (YAML/JSON, rlaif or llm-swarm format) or 'default'."
    else:
        help = "Constitution file or 'default'" + (f" ({why})." if why else ".")
    return _shared(settings, "constitution", "default", "--constitution", help=help)


def seed(settings: Settings | None = None, help: str | None = None) -> Decorator:
    """``--seed``, 0 unless the settings say otherwise; ``help`` says what it seeds."""
    return _shared(settings, "seed", 0, "--seed", type=int, help=help)


def limit(settings: Settings | None = None, what: str = "prompts") -> Decorator:
    """``--limit N``: use the first N ``what`` (default: all)."""
    return _shared(
        settings, "limit", None, "--limit", type=AT_LEAST_1, help=f"Use the first N {what}."
    )


def n_responses(settings: Settings, help: str) -> Decorator:
    """``--n-responses``: responses sampled per prompt."""
    return settings.option("n_responses", type=AT_LEAST_1, help=help)


def revisions(settings: Settings, what: str) -> Decorator:
    """``--revisions``: critique-revise rounds per response; ``what`` says what one gives."""
    return settings.option(
        "revision_rounds",
        "--revisions",
        type=AT_LEAST_0,
        help=f"Critique-revise rounds per response ({what}).",
    )


def out(help: str, required: bool = True) -> Decorator:
    """``--out``: the file or directory a command writes."""
    return click.option("--out", required=required, help=help)


def quiet(help: str = "No progress bars.") -> Decorator:
    """``--quiet``: no progress display."""
    return click.option("--quiet", is_flag=True, help=help)


def host(needs: str) -> Decorator:
    """``--host``, the address a server listens on (127.0.0.1); ``needs`` says what any other
    address needs."""
    return click.option(
        "--host", default="127.0.0.1", show_default=True, help=f"Address to listen on; {needs}."
    )


def port(default: int, help: str) -> Decorator:
    """``--port``, the port a server listens on (0: a free one)."""
    return click.option("--port", default=default, show_default=True, type=PORTS, help=help)


json_flag = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")

drift = click.option(
    "--drift-prompts",
    default=6,
    show_default=True,
    type=AT_LEAST_0,
    help="After training, answer this many held-out prompts greedily with the starting and "
    "the trained model and compare (mean length, empty and looping answers, KL); warn when "
    "the policy did not move or degenerated. 0 skips the check.",
)
