"""The files of a run directory, written so that no half-written file is ever trusted.

Records stream into ``*.tmp`` files while the run works; at the end ``run.json`` is removed,
the finished files take their final names, and ``run.json`` is written last. A directory whose
``run.json`` is present therefore holds one complete, consistent set of outputs.

=====================  =========================================================================
``preferences.jsonl``  TRL preference format (``prompt``, ``chosen``, ``rejected``) plus the label
``low_margin.jsonl``   same format, pairs with ``|p - 0.5| < --min-margin`` (or exactly 0.5)
``unreadable.jsonl``   pairs whose judge reply could not be read (``response_a``, ``response_b``)
``sft.jsonl``          ``prompt``, ``completion``: final revisions, for supervised fine-tuning
``revisions.jsonl``    every critique-revise round of every response
``run.json``           configuration, versions, counts, timings, tokens, cost per label
=====================  =========================================================================
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from rlaif.compare import Preference
from rlaif.fileio import write_json_atomic
from rlaif.prompts import Prompt

OUTPUT_FILES = (
    "preferences.jsonl",
    "low_margin.jsonl",
    "unreadable.jsonl",
    "sft.jsonl",
    "revisions.jsonl",
)
RUN_JSON = "run.json"


def record_prompt(prompt: Prompt, text_format: bool = False) -> str | list[dict]:
    """The ``prompt`` field: the message list, or the bare text with ``text_format``."""
    return prompt.text if text_format and not prompt.is_chat else prompt.chat()


def completion(prompt: Prompt, text: str, text_format: bool = False) -> str | list[dict]:
    """A response field: one assistant message, or the bare text with ``text_format``."""
    return text if text_format and not prompt.is_chat else [{"role": "assistant", "content": text}]


def preference_record(
    prompt: Prompt,
    a: str,
    b: str,
    pref: Preference,
    *,
    policy: str,
    pair_type: str,
    truncated: tuple[bool | None, bool | None] = (None, None),
    text_format: bool = False,
    min_margin: float | None = None,
) -> tuple[str, dict]:
    """(file name, record) for one labelled pair; chosen is the side with p > 0.5.

    The file: ``unreadable.jsonl`` for a reply that could not be read; with ``min_margin``,
    ``low_margin.jsonl`` for a label under the margin (see :func:`is_low_margin`); otherwise
    ``preferences.jsonl``.

    ``truncated`` says whether ``a`` and ``b`` were cut off at the token limit (None:
    unknown); records carry it as ``chosen_truncated`` / ``rejected_truncated`` (unreadable
    pairs: ``response_a_truncated`` / ``response_b_truncated``).
    """
    base = {
        "prompt_id": prompt.id,
        "pair_type": pair_type,
        "principle_id": pref.principle_id,
        "constitution_hash": pref.constitution_hash,
        "judge": pref.judge,
        "policy": policy,
        "method": pref.method,
        "mode": pref.mode,
        "position_consistent": pref.position_consistent,
        "prompt_tokens": pref.prompt_tokens,
        "completion_tokens": pref.completion_tokens,
        "label_source": pref.label_source,
    }
    if pref.cot:
        base["rationales"] = pref.rationales
    if pref.p_a is None:
        return "unreadable.jsonl", _unreadable(prompt, a, b, pref, truncated, text_format, base)
    a_wins = pref.p_a >= 0.5
    chosen, rejected = (a, b) if a_wins else (b, a)

    def flip(p: float | None) -> float | None:
        return None if p is None else (p if a_wins else 1.0 - p)

    record = {
        "prompt": record_prompt(prompt, text_format),
        "chosen": completion(prompt, chosen, text_format),
        "rejected": completion(prompt, rejected, text_format),
        "p_chosen": round(flip(pref.p_a), 6),
        # probability that the chosen response is better when it is shown first / second
        "p_chosen_shown_first": _round(flip(pref.p_a_order_ab if a_wins else pref.p_a_order_ba)),
        "p_chosen_shown_second": _round(flip(pref.p_a_order_ba if a_wins else pref.p_a_order_ab)),
        **_pointwise_scores(pref, ("p_yes_chosen", "p_yes_rejected"), a_first=a_wins),
        **_rule_scores(pref, a_first=a_wins),
        # cut off at the token limit (None: unknown); filter on these to drop cut-off pairs
        "chosen_truncated": truncated[0] if a_wins else truncated[1],
        "rejected_truncated": truncated[1] if a_wins else truncated[0],
        **base,
    }
    if min_margin is not None and is_low_margin(record["p_chosen"], min_margin):
        return "low_margin.jsonl", record
    return "preferences.jsonl", record


def is_low_margin(p_chosen: float, min_margin: float) -> bool:
    """A label too close to a coin to train on: ``|p - 0.5| < min_margin``, or exactly 0.5."""
    return abs(p_chosen - 0.5) < min_margin or p_chosen == 0.5


def _unreadable(
    prompt: Prompt,
    a: str,
    b: str,
    pref: Preference,
    truncated: tuple,
    text_format: bool,
    base: dict,
) -> dict:
    """The record of a pair whose judge reply could not be read: both responses as shown."""
    return {
        "prompt": record_prompt(prompt, text_format),
        "response_a": completion(prompt, a, text_format),
        "response_b": completion(prompt, b, text_format),
        "response_a_truncated": truncated[0],
        "response_b_truncated": truncated[1],
        "p_a_order_ab": pref.p_a_order_ab,
        "p_a_order_ba": pref.p_a_order_ba,
        **_pointwise_scores(pref, ("p_yes_a", "p_yes_b"), a_first=True),
        **base,
    }


def _pointwise_scores(pref: Preference, names: tuple[str, str], *, a_first: bool) -> dict:
    """Pointwise only: each response's own p("Yes") under its name (no order was shown, so
    ``p_chosen_shown_first``/``second`` and ``position_consistent`` stay null)."""
    if pref.mode != "pointwise":
        return {}
    first, second = (pref.p_yes_a, pref.p_yes_b) if a_first else (pref.p_yes_b, pref.p_yes_a)
    return {names[0]: _round(first), names[1]: _round(second)}


def _rule_scores(pref: Preference, *, a_first: bool) -> dict:
    """Rule labels only: the scoring function's score of the chosen and rejected response."""
    if pref.label_source != "rule":
        return {}
    first, second = (pref.score_a, pref.score_b) if a_first else (pref.score_b, pref.score_a)
    return {"score_chosen": first, "score_rejected": second}


def _round(p: float | None) -> float | None:
    return None if p is None else round(p, 6)


class OutputWriter:
    """Streams records into temporary files and publishes them together at the end."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self._files = {
            name: open(out / f"{name}.tmp", "w", encoding="utf-8") for name in OUTPUT_FILES
        }
        self.counts = dict.fromkeys(OUTPUT_FILES, 0)

    def write(self, name: str, record: dict) -> None:
        """Append one record to an output file."""
        self._files[name].write(json.dumps(record, ensure_ascii=False) + "\n")
        self.counts[name] += 1

    def publish(self, run_info: dict) -> None:
        """Give the finished files their names, then write ``run.json`` (the completion mark)."""
        for f in self._files.values():
            f.flush()
            os.fsync(f.fileno())
            f.close()
        run_json = self.out / RUN_JSON
        run_json.unlink(missing_ok=True)
        for name in OUTPUT_FILES:
            os.replace(self.out / f"{name}.tmp", self.out / name)
        write_json_atomic(run_json, run_info)

    def discard(self) -> None:
        """Close and delete the temporary files (after a failure)."""
        for name, f in self._files.items():
            f.close()
            (self.out / f"{name}.tmp").unlink(missing_ok=True)
