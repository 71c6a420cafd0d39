"""Preference pairs for training: ``preferences.jsonl`` read with its soft labels, and split.

A record holds ``prompt`` (text, or a chat message list), ``chosen`` and ``rejected`` (text, or
one assistant message each: TRL's conversational form) and ``p_chosen``, the judge's
probability that ``chosen`` is the better response. A file without ``p_chosen`` anywhere
(human-labelled TRL data) is read as hard labels, ``p_chosen = 1``.

Pairs are grouped by the prompt itself (its messages; a text prompt is one user message), not
by ``prompt_id``: the same prompt under two ids is one group, so a held-out split never puts
it on both sides.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

from rlaif.errors import InputError
from rlaif.prompts import json_lines


@dataclass(frozen=True)
class PreferencePair:
    """One labelled pair; ``p_chosen`` is the probability that ``chosen`` is better."""

    prompt: str | list[dict]
    chosen: str | list[dict]
    rejected: str | list[dict]
    p_chosen: float
    #: groups pairs of the same prompt: :func:`prompt_key` of the prompt
    group: str
    line: int
    #: whether each side was cut at the token limit (``rlaif run``'s records say; None: unknown)
    chosen_truncated: bool | None = None
    rejected_truncated: bool | None = None
    #: who decided the label (``rlaif run``'s records say: "rule" for a scoring function or a
    #: principle's check, "ai" for the judge model; None: not said)
    label_source: str | None = None

    @property
    def margin(self) -> float:
        """|p_chosen - 0.5|: how sure the judge was."""
        return abs(self.p_chosen - 0.5)

    def messages(self, side: str) -> list[dict]:
        """The chat messages prompt + ``chosen`` or ``rejected`` (for a reward model)."""
        answer = self.chosen if side == "chosen" else self.rejected
        return as_messages(self.prompt, "user") + as_messages(answer, "assistant")

    @property
    def is_chat(self) -> bool:
        """Whether any field came as chat messages (then it cannot be trained as plain text)."""
        return any(isinstance(v, list) for v in (self.prompt, self.chosen, self.rejected))

    def to_trl(self, *, conversational: bool = True) -> dict:
        """The record as TRL's DPOTrainer reads it, with ``p_chosen`` kept.

        Conversational (the default): ``prompt`` is a message list and ``chosen``/``rejected``
        one assistant message each, so TRL applies the chat template, as generation does.
        ``conversational=False`` passes text fields on as they are (for a base model without a
        chat template: TRL then tokenizes ``prompt + chosen`` as plain text).
        """
        if conversational:
            return {
                "prompt": as_messages(self.prompt, "user"),
                "chosen": as_messages(self.chosen, "assistant"),
                "rejected": as_messages(self.rejected, "assistant"),
                "p_chosen": self.p_chosen,
            }
        return {
            "prompt": self.prompt,
            "chosen": self.chosen,
            "rejected": self.rejected,
            "p_chosen": self.p_chosen,
        }


def as_messages(value: str | list[dict], role: str) -> list[dict]:
    """A record field as chat messages: text becomes one message of ``role``."""
    if isinstance(value, list):
        return [{"role": m["role"], "content": m["content"]} for m in value]
    return [{"role": role, "content": value}]


def prompt_key(prompt: str | list[dict]) -> str:
    """A short hash identifying a prompt by its content, whatever form it was written in.

    A text prompt and the same text as one user message give the same key; surrounding
    whitespace is ignored. Used to group pairs by prompt and to find training prompts among
    evaluation prompts.
    """
    msgs = [[m["role"], m["content"].strip()] for m in as_messages(prompt, "user")]
    text = json.dumps(msgs, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def hard_target(p: float) -> float:
    """The hard label of a soft one: 1 or 0 for the side preferred, 0.5 for an exact tie."""
    return 1.0 if p > 0.5 else 0.0 if p < 0.5 else 0.5


def _check_messages(value, where: str, field: str) -> None:
    ok = isinstance(value, list) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        for m in value
    )
    if not ok or not value:
        raise InputError(
            f"{where}: field {field!r} must be text or a non-empty list of "
            '{"role": ..., "content": ...} messages'
        )


def read_preferences(path: str | Path) -> list[PreferencePair]:
    """Every pair of a preferences JSONL file; InputError naming the line of a bad record."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such preferences file (rlaif run writes preferences.jsonl)")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read the preferences file ({e})") from e
    pairs: list[PreferencePair] = []
    soft = None  # whether the file carries p_chosen; must be the same on every line
    for n, rec in json_lines(path, lines):
        where = f"{path}:{n}"
        if not isinstance(rec, dict):
            raise InputError(f"{where}: a record must be a JSON object")
        for field in ("prompt", "chosen", "rejected"):
            value = rec.get(field)
            if value is None:
                raise InputError(f"{where}: missing field {field!r} (TRL preference format)")
            if not isinstance(value, str):
                _check_messages(value, where, field)
            elif not value.strip():
                raise InputError(f"{where}: field {field!r} is empty")
        has_p = "p_chosen" in rec
        if soft is None:
            soft = has_p
        elif soft != has_p:
            raise InputError(
                f"{where}: 'p_chosen' is {'missing' if soft else 'present'} here but "
                f"{'present' if soft else 'missing'} on earlier lines; label every pair or none"
            )
        p = rec.get("p_chosen", 1.0)
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise InputError(f"{where}: field 'p_chosen' must be a number in [0, 1], not {p!r}")
        if math.isnan(p):
            raise InputError(f"{where}: field 'p_chosen' is NaN")
        for field in ("chosen_truncated", "rejected_truncated"):
            if not isinstance(rec.get(field), bool | None):
                raise InputError(
                    f"{where}: field {field!r} must be true, false or null, not {rec[field]!r}"
                )
        if not isinstance(rec.get("label_source"), str | None):
            raise InputError(
                f"{where}: field 'label_source' must be a string (rule, ai, ...) or null, not "
                f"{rec['label_source']!r}"
            )
        pairs.append(
            PreferencePair(
                prompt=rec["prompt"],
                chosen=rec["chosen"],
                rejected=rec["rejected"],
                p_chosen=float(p),
                group=prompt_key(rec["prompt"]),
                line=n,
                chosen_truncated=rec.get("chosen_truncated"),
                rejected_truncated=rec.get("rejected_truncated"),
                label_source=rec.get("label_source"),
            )
        )
    if not pairs:
        raise InputError(f"{path}: no preference pairs in the file")
    return pairs


def split_pairs(
    pairs: list[PreferencePair], held_out: float, seed: int = 0
) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """(train, held-out) split by prompt, so no prompt is on both sides; deterministic.

    About ``held_out`` of the prompts go to the held-out side (at least one prompt when there
    are two or more and ``held_out > 0``).
    """
    if not 0.0 <= held_out < 1.0:
        raise ValueError(f"held_out must be in [0, 1), not {held_out}")
    groups = sorted({p.group for p in pairs})
    if held_out == 0.0 or len(groups) < 2:
        return list(pairs), []

    def rank(g: str) -> str:
        return hashlib.sha256(f"{seed}:{g}".encode()).hexdigest()

    order = sorted(groups, key=rank)
    n_held = min(len(groups) - 1, max(1, round(held_out * len(groups))))
    held = set(order[:n_held])
    return [p for p in pairs if p.group not in held], [p for p in pairs if p.group in held]


def filter_by_margin(pairs: list[PreferencePair], min_margin: float) -> list[PreferencePair]:
    """Pairs whose label is at least ``min_margin`` away from a coin flip (|p - 0.5|)."""
    if not 0.0 <= min_margin < 0.5:
        raise ValueError(f"min_margin must be in [0, 0.5), not {min_margin}")
    return [p for p in pairs if p.margin >= min_margin]
