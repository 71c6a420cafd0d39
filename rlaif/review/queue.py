"""The pairs of a finished run, as items for a human to review, most worth a look first.

Items are read from the run's ``preferences.jsonl``, ``low_margin.jsonl`` and
``unreadable.jsonl``. An item's two responses are kept in a canonical order (``first``,
``second``) that does not depend on the AI label, so an item's id (a hash of the prompt and
both responses) stays the same when the run is relabelled by another judge.

The queue puts first the pairs where the judge's label is least trustworthy: unreadable replies
(no label at all), then position-inconsistent labels (the two orders disagree), each by
increasing ``|p - 0.5|``, then the consistent labels by increasing ``|p - 0.5|``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from rlaif.errors import InputError, RunError
from rlaif.pipeline.outputs import RUN_JSON
from rlaif.prompts import json_lines

#: run files holding labelled pairs, and what each item read from them is called
SOURCES = {
    "preferences.jsonl": "preferences",
    "low_margin.jsonl": "low_margin",
    "unreadable.jsonl": "unreadable",
}
_REQUIRED = {
    "preferences": ("prompt", "chosen", "rejected", "p_chosen"),
    "low_margin": ("prompt", "chosen", "rejected", "p_chosen"),
    "unreadable": ("prompt", "response_a", "response_b"),
}


@dataclass(frozen=True)
class ReviewItem:
    """One labelled pair of a run: the prompt, two responses in canonical order, the AI label."""

    item_id: str
    #: "preferences", "low_margin" or "unreadable": the run file the pair was read from
    source: str
    #: the record as the run wrote it
    record: dict = field(repr=False)
    first: str | list = field(repr=False)
    second: str | list = field(repr=False)
    #: the judge's probability that ``first`` is better (None: unreadable reply)
    p_first: float | None = None
    #: the same, with ``first`` shown first / shown second (None when not asked)
    p_first_shown_first: float | None = None
    p_first_shown_second: float | None = None
    #: line number of the record in its file
    line: int = 0

    @property
    def prompt(self) -> str | list:
        """The prompt as the run wrote it (text, or a chat message list)."""
        return self.record["prompt"]

    @property
    def ai_winner(self) -> str | None:
        """``"first"``/``"second"``: the side the AI judge prefers; None when it has no label."""
        if self.p_first is None:
            return None
        return "first" if self.p_first >= 0.5 else "second"

    @property
    def margin(self) -> float | None:
        """``|p - 0.5|``: how sure the judge is (None when unreadable)."""
        return None if self.p_first is None else abs(self.p_first - 0.5)

    @property
    def position_consistent(self) -> bool | None:
        """Whether both orders prefer the same response (None when unknown)."""
        return self.record.get("position_consistent")

    @property
    def rationales(self) -> list[str]:
        """The judge's chain-of-thought rationales, when the run used them."""
        return list(self.record.get("rationales") or [])

    def priority(self) -> tuple:
        """Sort key: smaller means a human look is worth more."""
        return (
            0 if self.p_first is None else 1,
            0 if self.position_consistent is False else 1,
            self.margin or 0.0,
            self.item_id,
        )


def _canonical(value: object) -> str:
    # A text and its one-message conversational form are the same prompt or response, so that
    # ids and sides do not change with the record form (runs before and after --text-format).
    if (
        isinstance(value, list)
        and len(value) == 1
        and isinstance(value[0], dict)
        and value[0].get("role") in ("user", "assistant")
        and set(value[0]) == {"role", "content"}
    ):
        value = value[0]["content"]
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def make_item_id(prompt: object, a: object, b: object) -> str:
    """Stable id of a pair: a hash of the prompt and both responses, in either order."""
    x, y = sorted((_canonical(a), _canonical(b)))
    digest = hashlib.sha256(_canonical([_canonical(prompt), x, y]).encode("utf-8"))
    return digest.hexdigest()[:16]


def _flip(p: float | None) -> float | None:
    return None if p is None else 1.0 - p


def _item(source: str, record: dict, item_id: str, line: int) -> ReviewItem:
    if source == "unreadable":
        a, b = record["response_a"], record["response_b"]
        a_first = _canonical(a) <= _canonical(b)
        first, second = (a, b) if a_first else (b, a)
        return ReviewItem(item_id, source, record, first, second, line=line)
    chosen, rejected = record["chosen"], record["rejected"]
    chosen_first = _canonical(chosen) <= _canonical(rejected)
    p = record["p_chosen"]
    shown_first = record.get("p_chosen_shown_first")
    shown_second = record.get("p_chosen_shown_second")
    if chosen_first:
        return ReviewItem(
            item_id, source, record, chosen, rejected, p, shown_first, shown_second, line
        )
    # P(rejected better | rejected shown first) = 1 - P(chosen better | chosen shown second)
    return ReviewItem(
        item_id,
        source,
        record,
        rejected,
        chosen,
        _flip(p),
        _flip(shown_second),
        _flip(shown_first),
        line,
    )


def _read_jsonl(path: Path, source: str):
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise RunError(f"{path}: cannot read ({e.strerror})") from e
    for number, record in json_lines(path, lines, "; re-run `rlaif run` on this directory"):
        if not isinstance(record, dict):
            raise InputError(f"{path}:{number}: expected a JSON object")
        for name in _REQUIRED[source]:
            if name not in record:
                raise InputError(
                    f"{path}:{number}: missing field {name!r}; is this an rlaif run directory?"
                )
        p = record.get("p_chosen")
        if source != "unreadable" and not isinstance(p, int | float):
            raise InputError(f"{path}:{number}: field 'p_chosen' must be a number, not {p!r}")
        yield number, record


def check_run_dir(run_dir: str | Path) -> Path:
    """The run directory as a Path; RunError unless it holds a finished run."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: no such directory; pass the --out directory of `rlaif run`")
    if not (run_dir / RUN_JSON).exists():
        raise RunError(
            f"{run_dir}: not a finished rlaif run (no {RUN_JSON}); finish it with "
            f"`rlaif run --out {run_dir}` first"
        )
    return run_dir


def load_items(run_dir: str | Path) -> list[ReviewItem]:
    """Every labelled pair of a finished run, most worth a human look first."""
    run_dir = check_run_dir(run_dir)
    items: list[ReviewItem] = []
    seen: dict[str, int] = {}
    for name, source in SOURCES.items():
        path = run_dir / name
        if not path.exists():
            continue
        for line, record in _read_jsonl(path, source):
            if source == "unreadable":
                a, b = record["response_a"], record["response_b"]
            else:
                a, b = record["chosen"], record["rejected"]
            item_id = make_item_id(record["prompt"], a, b)
            # the same pair twice in one run (rare): keep both, with distinct ids
            seen[item_id] = seen.get(item_id, 0) + 1
            if seen[item_id] > 1:
                item_id = f"{item_id}-{seen[item_id]}"
            items.append(_item(source, record, item_id, line))
    return sorted(items, key=ReviewItem.priority)


def as_text(value: str | list) -> str:
    """A response or prompt as plain text: chat messages are joined as ``role: content``."""
    if isinstance(value, str):
        return value
    # one message (a response, or a text prompt in conversational form) reads as its text
    if len(value) == 1 and isinstance(value[0], dict) and value[0].get("role") != "system":
        return str(value[0].get("content", ""))
    return "\n\n".join(
        f"{m.get('role', '?')}: {m.get('content', '')}" if isinstance(m, dict) else str(m)
        for m in value
    )
