"""Write a run's preference file with human decisions overriding the AI judge's labels.

Each record keeps the run's fields and says where its label came from in ``label_source``:

- ``ai``: nobody reviewed the pair (or the reviewer skipped it); the judge's label stands;
- ``human``: the reviewer chose the side the judge did not prefer, or the judge had no label
  (an unreadable reply, or a low-margin pair the run had set aside);
- ``ai+human agree``: the reviewer chose the judge's side.

A record a human labelled (``human`` or ``ai+human agree``) has ``p_chosen = 1.0``: the
reviewer's decision is the label, so ``rlaif train dpo`` and ``train reward`` learn the human's
side at full weight. The judge's probabilities that ``chosen`` is better are kept beside it as
``p_chosen_ai``, ``p_chosen_ai_shown_first`` and ``p_chosen_ai_shown_second`` (below 0.5 where
the human overrode the judge; None where the judge had no label). A pair the reviewer called a
tie is left out (a preference file has no ties), as are the low-margin and unreadable pairs
nobody reviewed or that were skipped, unless ``include_low_margin`` asks for the AI's
low-margin labels. Only a pair of ``preferences.jsonl`` can be ``ai+human agree``: a low-margin
label is a coin flip the run set aside, so agreeing with it says nothing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from rlaif.review.decisions import Decision, DecisionLog
from rlaif.review.queue import ReviewItem, load_items

LABEL_SOURCES = ("ai", "human", "ai+human agree")
_ORDER = ("preferences", "low_margin", "unreadable")
#: fields of a run record that depend on which side is chosen; rewritten for human labels
_LABEL_FIELDS = {
    "chosen",
    "rejected",
    "response_a",
    "response_b",
    "p_chosen",
    "p_chosen_shown_first",
    "p_chosen_shown_second",
    "p_a_order_ab",
    "p_a_order_ba",
}


@dataclass
class ExportResult:
    """What was written: the file and how many records came from each source."""

    out: Path
    counts: dict[str, int] = field(default_factory=dict)
    dropped_ties: int = 0
    left_out: int = 0


def _side(item: ReviewItem, side: str) -> str | list:
    return item.first if side == "first" else item.second


def _p(p: float | None) -> float | None:
    return None if p is None else round(p, 6)


def merged_record(item: ReviewItem, decision: Decision | None) -> dict | None:
    """The exported record of one item, or None when it is left out of the preference file."""
    human = decision.winner if decision is not None else None
    if human == "tie":
        return None
    if human is None:
        if item.source == "unreadable":
            return None
        return {**item.record, "label_source": "ai"}
    winner = human
    loser = "second" if winner == "first" else "first"
    agree = item.source == "preferences" and item.ai_winner == winner
    source = "ai+human agree" if agree else "human"
    base = {k: v for k, v in item.record.items() if k not in _LABEL_FIELDS}
    # the judge's probabilities, seen from the side the human chose
    if winner == "first":
        p, p_sf, p_ss = item.p_first, item.p_first_shown_first, item.p_first_shown_second
    else:
        p = None if item.p_first is None else 1 - item.p_first
        p_sf = None if item.p_first_shown_second is None else 1 - item.p_first_shown_second
        p_ss = None if item.p_first_shown_first is None else 1 - item.p_first_shown_first
    prompt = base.pop("prompt")
    return {
        "prompt": prompt,
        "chosen": _side(item, winner),
        "rejected": _side(item, loser),
        "p_chosen": 1.0,
        "p_chosen_ai": _p(p),
        "p_chosen_ai_shown_first": _p(p_sf),
        "p_chosen_ai_shown_second": _p(p_ss),
        **base,
        "label_source": source,
        "ai_source_file": f"{item.source}.jsonl",
        "human": {
            "reviewer": decision.reviewer,
            "decided_at": decision.created,
            "comment": decision.comment,
        },
    }


def export_preferences(
    run_dir: str | Path, out: str | Path, *, include_low_margin: bool = False
) -> ExportResult:
    """Write the merged preference file of a finished run; returns what was written."""
    items = load_items(run_dir)
    log = DecisionLog.open(run_dir)
    try:
        latest = log.latest()
    finally:
        log.close()
    result = ExportResult(Path(out), dict.fromkeys(LABEL_SOURCES, 0))
    records = []
    # the run's own order (preferences, then low margin, then unreadable), not the queue's
    for item in sorted(items, key=lambda i: (_ORDER.index(i.source), i.line)):
        decision = latest.get(item.item_id)
        unlabelled = decision is None or decision.winner is None  # not reviewed, or skipped
        if item.source == "low_margin" and unlabelled and not include_low_margin:
            result.left_out += 1
            continue
        record = merged_record(item, decision)
        if record is None:
            if decision is not None and decision.winner == "tie":
                result.dropped_ties += 1
            else:
                result.left_out += 1
            continue
        result.counts[record["label_source"]] += 1
        records.append(record)
    result.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = result.out.with_name(result.out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(tmp, result.out)
    return result
