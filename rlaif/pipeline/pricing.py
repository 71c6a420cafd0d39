"""What model calls cost: a price table per model and the spend recorded in a run store.

Prices are dollars per million input and output tokens. A price file (YAML or JSON) maps a
model string, or the bare model name of an ``openai:`` string, to its prices::

    openai:gpt-4o-mini@https://api.openai.com/v1: {input: 0.15, output: 0.60}
    gpt-4o-mini: {input: 0.15, output: 0.60}      # any openai:gpt-4o-mini@URL

A model the file does not name costs ``--price-in`` / ``--price-out`` (both 0 by default: local
models are free). Token counts of real calls come from the backend: the server's ``usage`` for
``openai:`` models, llama.cpp's own count for local ones.
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from rlaif.backends.base import Messages
from rlaif.errors import InputError

#: characters per token of the budget's quick estimate before a call; SmolLM2's tokenizer
#: averages 3.98 on the judge templates, so 3 over-counts (the check errs towards stopping)
CHARS_PER_TOKEN = 3.0
#: tokens a chat template adds per message (role markers), for the quick estimate
MESSAGE_OVERHEAD_TOKENS = 8
#: output tokens of a choice-scoring call: one token, or a short verdict on servers
#: without log-probabilities (the openai backend asks for at most 8)
CHOICE_OUTPUT_TOKENS = 8


@dataclass(frozen=True)
class Price:
    """Dollars per million input and output tokens."""

    input: float = 0.0
    output: float = 0.0

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """Dollars for these token counts."""
        return (input_tokens * self.input + output_tokens * self.output) / 1e6


@dataclass
class PriceTable:
    """Prices per model string, with one default for every model not named."""

    entries: dict[str, Price] = field(default_factory=dict)
    default: Price = Price()

    def price(self, model_id: str) -> Price:
        """The price of a model: its own entry, its bare ``openai:`` name's, or the default."""
        if model_id in self.entries:
            return self.entries[model_id]
        if model_id.startswith("openai:"):
            name = model_id.removeprefix("openai:").partition("@")[0]
            if name in self.entries:
                return self.entries[name]
        return self.default

    def is_free(self, model_ids: list[str]) -> bool:
        """Whether every one of these models costs nothing."""
        return all(self.price(m) == Price() for m in model_ids)


def load_price_table(
    path: str | Path | None, default_in: float = 0.0, default_out: float = 0.0
) -> PriceTable:
    """Read a price file (YAML or JSON); ``None`` gives only the default prices."""
    table = PriceTable(default=Price(default_in, default_out))
    if path is None:
        return table
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such price file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read the price file ({e})") from e
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as e:
        mark = getattr(e, "problem_mark", None)  # YAML's position; JSON's is lineno
        lineno = mark.line + 1 if mark is not None else getattr(e, "lineno", None)
        line = f":{lineno}" if lineno else ""
        raise InputError(f"{path}{line}: not valid YAML/JSON ({' '.join(str(e).split())})") from e
    if not isinstance(data, dict) or not data:
        raise InputError(
            f"{path}: a price file maps model strings to {{input: N, output: N}} "
            "(dollars per million tokens)"
        )
    for model, entry in data.items():
        if not isinstance(entry, dict):
            raise InputError(f"{path}: {model}: write {{input: N, output: N}}, not {entry!r}")
        unknown = set(entry) - {"input", "output"}
        if unknown:
            raise InputError(
                f"{path}: {model}: unknown field {sorted(unknown)[0]!r}; "
                "the fields are input and output"
            )
        values = {}
        for name in ("input", "output"):
            value = entry.get(name, 0.0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise InputError(
                    f"{path}: {model}: {name} must be a number >= 0 (dollars per million "
                    f"tokens), not {value!r}"
                )
            values[name] = float(value)
        table.entries[str(model)] = Price(**values)
    return table


def stored_spend(db_path: str | Path, prices: PriceTable) -> tuple[int, float]:
    """(calls, dollars) of every call result kept in a run store, at today's prices.

    Every stored result was paid for once; reading the store read-only makes this safe while
    the store is in use and on a store this process must not change.
    """
    db_path = Path(db_path)
    if not db_path.is_file():
        return 0, 0.0
    try:
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error as e:
        raise InputError(f"{db_path}: cannot read what the run has spent ({e})") from e
    try:
        rows = db.execute(
            "SELECT model, COUNT(*), SUM(json_extract(result, '$.prompt_tokens')),"
            " SUM(json_extract(result, '$.completion_tokens')) FROM calls GROUP BY model"
        ).fetchall()
    except sqlite3.Error as e:
        # never "nothing spent": a budget must not start from zero on a store it cannot read
        raise InputError(f"{db_path}: cannot read what the run has spent ({e})") from e
    finally:
        db.close()
    calls = sum(r[1] for r in rows)
    dollars = sum(prices.price(m).cost(int(pi or 0), int(po or 0)) for m, _, pi, po in rows)
    return calls, dollars


def quick_input_tokens(messages: Messages) -> int:
    """A fast over-estimate of a call's input tokens (characters / 3 + role markers)."""
    chars = sum(len(str(m.get("content", ""))) for m in messages)
    return math.ceil(chars / CHARS_PER_TOKEN) + MESSAGE_OVERHEAD_TOKENS * (len(messages) + 1)
