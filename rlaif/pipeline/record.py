"""``run.json`` as a typed record: what a finished run was, made and spent.

:class:`RunRecord` reads the file the main job writes (and the files of older versions, which
lack some fields: a field that is absent reads as None). A field of the wrong type is an
:class:`~rlaif.errors.InputError` naming the file and the field. Keys the record does not know
are kept, so :meth:`RunRecord.to_json` gives back the object it was read from.

:meth:`RunRecord.summary_rows` is the run's summary as ``rlaif run`` prints it and the run
report shows it.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Union

from rlaif.errors import InputError
from rlaif.pipeline.outputs import RUN_JSON
from rlaif.stats import pct
from rlaif.synth import truncation_summary

#: what a summary row shows for a figure the run never measured
NOT_MEASURED = "n/a"
#: what a summary row shows for a field its run.json lacks (written by an older version)
UNKNOWN = "?"


@dataclass(frozen=True)
class JsonRecord:
    """A JSON object read into typed fields; keys the record does not know are kept."""

    #: the object's keys in their order, and the values of those the record does not know
    _keys: tuple[str, ...] | None = field(default=None, repr=False, compare=False, kw_only=True)
    _extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False, kw_only=True)

    @classmethod
    def from_json(cls, data: object, where: str = RUN_JSON, path: str = ""):
        """The record of the JSON object ``data``; InputError naming ``where`` and the field
        (``path``: the dotted name of ``data`` itself) if a field has the wrong type."""
        if not isinstance(data, dict):
            raise InputError(
                f"{where}: {path or 'the file'} must be a JSON object, not {_show(data)}"
            )
        hints = typing.get_type_hints(cls)
        known = [f.name for f in fields(cls) if not f.name.startswith("_")]
        values = {k: _checked(data[k], hints[k], where, f"{path}{k}") for k in known if k in data}
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(**values, _keys=tuple(data), _extra=extra)

    def to_json(self) -> dict:
        """The JSON object: the keys it was read with, in their order (all fields if built)."""
        keys = self._keys
        if keys is None:
            keys = tuple(f.name for f in fields(self) if not f.name.startswith("_"))
        out = {}
        for key in keys:
            value = self._extra[key] if key in self._extra else getattr(self, key)
            out[key] = value.to_json() if isinstance(value, JsonRecord) else value
        return out


def _checked(value: object, hint: Any, where: str, path: str) -> Any:
    """``value`` if it has the type ``hint`` (a nested record is read); InputError if not."""
    options = (
        typing.get_args(hint) if typing.get_origin(hint) in (Union, types.UnionType) else (hint,)
    )
    if value is None and type(None) in options:
        return None
    for option in options:
        if isinstance(option, type) and issubclass(option, JsonRecord):
            if isinstance(value, dict):
                return option.from_json(value, where, f"{path}.")
        elif _is(value, option):
            return value
    names = " or ".join(_describe(o) for o in options)
    raise InputError(f"{where}: field {path!r} must be {names}, not {_show(value)}")


def _is(value: object, hint: Any) -> bool:
    if hint is Any:
        return True
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    origin = typing.get_origin(hint) or hint
    return isinstance(origin, type) and isinstance(value, origin)


def _describe(hint: Any) -> str:
    if hint is type(None):
        return "null"
    if isinstance(hint, type) and issubclass(hint, JsonRecord):
        return "an object"
    origin = typing.get_origin(hint) or hint
    return {dict: "an object", list: "a list", str: "a string", bool: "true or false"}.get(
        origin, "a number" if origin in (int, float) else str(origin)
    )


def field_rows(record: type[JsonRecord] = None, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted name, JSON type, meaning) of every field of ``record`` (default: run.json's),
    the fields of a nested record after their parent's."""
    rows = []
    hints = typing.get_type_hints(record or RunRecord)
    for f in fields(record or RunRecord):
        if f.name.startswith("_"):
            continue
        options = _options(hints[f.name])
        nested = [o for o in options if isinstance(o, type) and issubclass(o, JsonRecord)]
        # every field may be absent or null in an older run.json: the type says what it holds
        kinds = [_describe(o).split(" ", 1)[-1] for o in options if o is not type(None)]
        kind = " or ".join(kinds)
        rows.append((prefix + f.name, kind, f.metadata.get("doc", "")))
        if nested:
            rows += field_rows(nested[0], f"{prefix}{f.name}.")
    return rows


def _options(hint: Any) -> tuple:
    """The types a hint allows: the members of a union, or the hint itself."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _show(value: object) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:39] + "…"


def _doc(text: str) -> Any:
    """A field that may be absent (None), with what it means (for the outputs reference)."""
    return field(default=None, metadata={"doc": text})


@dataclass(frozen=True)
class Counts(JsonRecord):
    """Records per output file, and the prompts of the run."""

    prompts: int | None = _doc("prompts the run answered")
    preferences: int | None = _doc("records of `preferences.jsonl`")
    low_margin: int | None = _doc("records of `low_margin.jsonl`")
    unreadable: int | None = _doc("records of `unreadable.jsonl`")
    sft: int | None = _doc("records of `sft.jsonl`")
    revisions: int | None = _doc("records of `revisions.jsonl`")


@dataclass(frozen=True)
class LabelStats(JsonRecord):
    """The labels' figures (None: not measured, e.g. position consistency of one order)."""

    mean_margin: float | None = _doc(
        "mean |p - 0.5| of the readable labels; null: none was readable"
    )
    position_consistency_rate: float | None = _doc(
        "share of the pairs labelled in both orders that kept their winner; null: none was"
    )
    unreadable: int | None = _doc("labels whose judge reply could not be read")
    label_source: dict[str, int] | None = _doc(
        "labels by who decided them: `rule` (a check, a rule judge) and `ai` (the judge model)"
    )


@dataclass(frozen=True)
class Tokens(JsonRecord):
    """Tokens read (prompt) and written (completion), in all and by role."""

    prompt: int | None = _doc("tokens the models read")
    completion: int | None = _doc("tokens the models wrote")
    total: int | None = _doc("both")
    by_role: dict[str, dict[str, int]] | None = _doc(
        "`policy` and `judge`, each `{prompt, completion}`"
    )
    kv_cache_reused_this_invocation: int | None = _doc(
        "prompt tokens a model took from its KV cache in this invocation (fresh calls only)"
    )
    judge_choice_tokens_this_invocation: dict[str, int] | None = _doc(
        "the judge's verdict prompts in this invocation: tokens `evaluated` and `reused` from "
        "its KV cache (one prompt's questions are asked in token order, so a shared prefix is "
        "evaluated once)"
    )


@dataclass(frozen=True)
class BudgetSpent(JsonRecord):
    """The run's ``--max-cost`` and what it has spent of it."""

    max_cost: float | None = _doc("`--max-cost`, dollars")
    spent_this_invocation: float | None = _doc("dollars spent by this invocation")
    spent_in_all: float | None = _doc("dollars spent by every invocation of the run")


@dataclass(frozen=True)
class ConstitutionRef(JsonRecord):
    """Which constitution judged the run."""

    name: str | None = _doc("its name")
    source: str | None = _doc("`default` or the file it was read from")
    hash: str | None = _doc("hash of its principles (`constitution_hash` of every record)")


@dataclass(frozen=True)
class Requests(JsonRecord):
    """Where the stages ran and the requests retried, by reason."""

    executor: str | None = _doc("`local` or `ray`")
    retries: dict[str, int] | None = _doc("requests to servers retried, by reason")
    ray: dict[str, Any] | None = _doc(
        "with `--executor ray`: `workers`, `nodes`, `workers_lost`, `worker_busy_s`"
    )


@dataclass(frozen=True)
class RunRecord(JsonRecord):
    """``run.json`` of a finished run (docs/reference/outputs.md lists every field)."""

    config: dict[str, Any] | None = _doc("every setting of the run (`RunConfig`)")
    prompts_file: str | None = _doc("the prompts file")
    prompts_sha256: str | None = _doc("its sha256")
    constitution: ConstitutionRef | None = _doc("the constitution")
    template_version: str | int | None = _doc("version of the prompt templates")
    versions: dict[str, Any] | None = _doc(
        "versions of rlaif, Python, llama-cpp-python and openai (null: not installed)"
    )
    seed: int | None = _doc("seed of sampling and principle draws")
    model_calls: int | None = _doc("calls that reached a model in this invocation")
    cached_calls: int | None = _doc("distinct calls the run store answered")
    tokens: Tokens | None = _doc("tokens of every call behind the data, fresh or from the store")
    price_per_million: dict[str, Any] | None = _doc(
        "prices used, dollars per million tokens: `policy` and `judge`, each `{input, output}`"
    )
    cost: float | None = _doc("dollars of those tokens at those prices")
    judge_cost: float | None = _doc("the judge's share of `cost`")
    budget: BudgetSpent | None = _doc("with `--max-cost`: the budget; null without")
    counts: Counts | None = _doc("records written")
    labels: int | None = _doc("pairs labelled")
    stats: LabelStats | None = _doc("the labels' figures")
    truncated: dict[str, dict[str, int]] | None = _doc(
        "`responses` and `revisions`, each `{truncated, total, unknown}`: cut off at `--max-tokens`"
    )
    warnings: list[str] | None = _doc("one line per problem with the labels as a whole")
    timings_s: dict[str, float] | None = _doc(
        "seconds of `generate`, `revise`, `label` and the `total`"
    )
    requests: Requests | None = _doc("how the requests went")
    cost_per_label: float | None = _doc("`cost` / `labels`; null without labels")
    judge_cost_per_label: float | None = _doc("`judge_cost` / `labels`; null without labels")

    @classmethod
    def load(cls, directory: str | Path) -> RunRecord:
        """The record of ``DIR/run.json``; InputError if it cannot be read or a field is wrong."""
        path = Path(directory) / RUN_JSON
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise InputError(f"{path}: cannot read ({e})") from e
        return cls.from_json(data, str(path))

    def setting(self, name: str, default: Any = UNKNOWN) -> Any:
        """One setting of the run's configuration (``default`` where it is not recorded)."""
        return (self.config or {}).get(name, default)

    def setup_rows(self) -> list[tuple[str, str]]:
        """What the run was: its judge, policy, mode, constitution and prompts file."""
        mode = str(self.setting("mode")) + (" + chain of thought" if self.setting("cot", 0) else "")
        constitution = self.constitution.source if self.constitution else None
        return [
            ("judge", str(self.setting("judge"))),
            ("policy", str(self.setting("policy"))),
            ("mode", mode),
            ("constitution", _known(constitution)),
            ("prompts file", _known(self.prompts_file)),
        ]

    def summary_rows(self) -> list[tuple[str, str]]:
        """What the run made and spent, one (name, value) row each, as text."""
        counts, stats, tokens = self.counts or Counts(), self.stats or LabelStats(), self.tokens
        split = (counts.preferences, counts.low_margin, counts.unreadable)
        margin, consistency = stats.mean_margin, stats.position_consistency_rate
        return [
            ("prompts", _known(counts.prompts)),
            ("pairs labelled", _known(self.labels)),
            ("preferences / low margin / unreadable", " / ".join(_known(n) for n in split)),
            ("sft records (revisions)", _known(counts.sft)),
            ("cut off at --max-tokens", truncation_summary(self.truncated)),
            ("mean |p - 0.5|", "-" if margin is None else f"{margin:.3f}"),
            ("decided by rule / AI", _source_split(stats.label_source)),
            # None: never asked in both orders (pointwise, one order)
            ("position consistency", NOT_MEASURED if consistency is None else pct(consistency)),
            (
                "model calls / from store",
                f"{_known(self.model_calls)} / {_known(self.cached_calls)}",
            ),
            ("retried requests", _retry_split(self.requests.retries if self.requests else None)),
            ("tokens", _known(tokens and tokens.total, "{:,}")),
            ("judge tokens evaluated / reused", _judge_tokens(tokens)),
            (
                "cost per label",
                "-" if self.cost_per_label is None else f"${self.cost_per_label:.6f}",
            ),
            ("cost", self._cost_text()),
            ("time", _known((self.timings_s or {}).get("total"), "{:.1f} s")),
        ]

    def _cost_text(self) -> str:
        text = f"${self.cost or 0.0:.6f}"
        if self.budget:
            spent, cap = self.budget.spent_in_all or 0.0, self.budget.max_cost or 0.0
            text += f" (spent in all ${spent:.6f} of --max-cost ${cap:g})"
        return text


def _known(value: object, form: str = "{}") -> str:
    """``value`` as text in ``form``; ``?`` where run.json does not record it."""
    return UNKNOWN if value is None else form.format(value)


def _judge_tokens(tokens: Tokens | None) -> str:
    """The judge's verdict-prompt tokens evaluated / taken from its KV cache in this invocation."""
    counts = tokens and tokens.judge_choice_tokens_this_invocation
    if not counts:
        return UNKNOWN
    return f"{counts.get('evaluated', 0):,} / {counts.get('reused', 0):,}"


def _source_split(sources: dict | None) -> str:
    """Labels decided by a rule (a principle's check, a rule judge) / by the AI judge."""
    if not sources:
        return "-"
    return f"{sources.get('rule', 0)} / {sources.get('ai', 0)}"


def _retry_split(retries: dict | None) -> str:
    """Retried requests in all, and by reason."""
    if not retries:
        return "0"
    detail = ", ".join(f"{reason}: {n}" for reason, n in sorted(retries.items()))
    return f"{sum(retries.values())} ({detail})"
