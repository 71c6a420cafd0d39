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
from rlaif.prompts import Prompt

OUTPUT_FILES = (
    "preferences.jsonl",
    "low_margin.jsonl",
    "unreadable.jsonl",
    "sft.jsonl",
    "revisions.jsonl",
)
RUN_JSON = "run.json"


def _completion(prompt: Prompt, text: str) -> str | list[dict]:
    """A response as TRL expects it: text, or one assistant message for chat prompts."""
    return [{"role": "assistant", "content": text}] if prompt.is_chat else text


def preference_record(
    prompt: Prompt, a: str, b: str, pref: Preference, *, policy: str, pair_type: str
) -> tuple[str, dict]:
    """(file name, record) for one labelled pair; chosen is the side with p > 0.5."""
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
    }
    if pref.cot:
        base["rationales"] = pref.rationales
    if pref.p_a is None:
        return "unreadable.jsonl", {
            "prompt": prompt.for_record(),
            "response_a": _completion(prompt, a),
            "response_b": _completion(prompt, b),
            "p_a_order_ab": pref.p_a_order_ab,
            "p_a_order_ba": pref.p_a_order_ba,
            **base,
        }
    a_wins = pref.p_a >= 0.5
    chosen, rejected = (a, b) if a_wins else (b, a)

    def flip(p: float | None) -> float | None:
        return None if p is None else (p if a_wins else 1.0 - p)

    record = {
        "prompt": prompt.for_record(),
        "chosen": _completion(prompt, chosen),
        "rejected": _completion(prompt, rejected),
        "p_chosen": round(flip(pref.p_a), 6),
        # probability that the chosen response is better when it is shown first / second
        "p_chosen_shown_first": _round(flip(pref.p_a_order_ab if a_wins else pref.p_a_order_ba)),
        "p_chosen_shown_second": _round(flip(pref.p_a_order_ba if a_wins else pref.p_a_order_ab)),
        **base,
    }
    return "preferences.jsonl", record


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
        tmp = self.out / f"{RUN_JSON}.tmp"
        tmp.write_text(json.dumps(run_info, indent=2, ensure_ascii=False) + "\n")
        os.replace(tmp, run_json)

    def discard(self) -> None:
        """Close and delete the temporary files (after a failure)."""
        for name, f in self._files.items():
            f.close()
            (self.out / f"{name}.tmp").unlink(missing_ok=True)
