"""From the per-pair records of ``pairs.jsonl`` to one entry of metrics per strategy.

Everything in ``metrics.json`` is computed here from the records alone, so anyone holding
``pairs.jsonl`` can recompute it (``summarize(read_pairs(path))``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from rlaif.errors import InputError
from rlaif.evaluate import metrics as m

HUMAN_CODES = {"a": 1.0, "b": 0.0, "tie": float("nan")}
#: the strategy others are compared with, pair by pair, when it was measured
REFERENCE = "both-orders"


def read_pairs(path: str | Path) -> list[dict]:
    """The records of a ``pairs.jsonl`` file."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from e
    try:
        return [json.loads(line) for line in lines if line.strip()]
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSONL ({e.msg})") from e


def _num(x) -> float:
    return float("nan") if x is None else float(x)


class _Columns:
    """The records of one strategy as arrays, one element per pair."""

    def __init__(self, records: list[dict]) -> None:
        self.records = records
        self.pair_id = [str(r["pair_id"]) for r in records]
        self.human = np.array([HUMAN_CODES[r["human"]] for r in records])
        self.p_a = np.array([_num(r["p_a"]) for r in records])
        self.p_ab = np.array([_num(r["p_a_order_ab"]) for r in records])
        self.p_ba = np.array([_num(r["p_a_order_ba"]) for r in records])
        self.len_a = np.array([_num(r.get("len_a")) for r in records])
        self.len_b = np.array([_num(r.get("len_b")) for r in records])
        annotators = [r.get("annotators") or [] for r in records]
        widths = {len(a) for a in annotators}
        self.annotators = (
            m.annotator_codes(annotators) if len(widths) == 1 and 0 not in widths else None
        )


def summarize(
    records: list[dict], *, resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> dict[str, dict]:
    """One entry of metrics per strategy (in the order they first appear), each with CIs."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        groups[r["strategy"]].append(r)
    cols = {name: _Columns(recs) for name, recs in groups.items()}
    boot = {"resamples": resamples, "seed": seed, "level": level}
    out = {name: _entry(name, c, boot) for name, c in cols.items()}
    if REFERENCE in cols:
        ref = cols[REFERENCE]
        for name, c in cols.items():
            if name != REFERENCE:
                out[name]["agreement_vs_reference"] = _round(_paired(c, ref, boot))
    return out


def _ci(stat, *arrays, boot) -> list[float] | None:
    return m.bootstrap_ci(stat, *arrays, **boot)


def _round(x):
    if isinstance(x, float):
        return round(x, 6)
    if isinstance(x, list):
        return [_round(v) for v in x]
    if isinstance(x, dict):
        return {k: _round(v) for k, v in x.items()}
    return x


def _entry(name: str, c: _Columns, boot: dict) -> dict:
    n = len(c.records)
    credit = m.agreement_credit(c.human, c.p_a)
    readable = ~np.isnan(c.p_a)
    prompt_tokens = sum(r.get("prompt_tokens") or 0 for r in c.records)
    completion_tokens = sum(r.get("completion_tokens") or 0 for r in c.records)
    entry = {
        "strategy": name,
        "n": n,
        "human_ties": int(np.isnan(c.human).sum()),
        "unreadable": int((~readable).sum()),
        "unreadable_rate": float((~readable).mean()) if n else None,
        "errors": sum(1 for r in c.records if r.get("error")),
        "judge_ties": int((c.p_a == 0.5).sum()),
        "agreement": m.agreement(c.human, c.p_a),
        "agreement_ci": m.bootstrap_mean_ci(credit, **boot),
        "agreement_readable": m.agreement_readable(c.human, c.p_a),
        "kappa": m.judge_kappa(c.human, c.p_a),
        "kappa_ci": _ci(m.judge_kappa, c.human, c.p_a, boot=boot),
        "position_consistency": m.position_consistency(c.p_ab, c.p_ba),
        "position_consistency_ci": _ci(m.position_consistency, c.p_ab, c.p_ba, boot=boot),
        "first_position_rate": m.first_position_rate(c.p_ab, c.p_ba),
        "first_position_rate_ci": _ci(m.first_position_rate, c.p_ab, c.p_ba, boot=boot),
        "a_rate": m.a_rate(m.judge_choice(c.p_a)),
        "a_rate_ci": _ci(lambda p: m.a_rate(m.judge_choice(p)), c.p_a, boot=boot),
        "human_a_rate": m.a_rate(c.human),
        "brier": m.brier(c.human, c.p_a),
        "brier_ci": _ci(m.brier, c.human, c.p_a, boot=boot),
        "ece": m.ece(c.human, c.p_a),
        "ece_ci": _ci(m.ece, c.human, c.p_a, boot=boot),
        "reliability": m.reliability_curve(c.human, c.p_a),
        "mean_margin": m.mean_margin(c.p_a),
        "judge_prefers_longer": m.prefers_longer(m.judge_choice(c.p_a), c.len_a, c.len_b),
        "judge_prefers_longer_ci": _ci(
            lambda p, la, lb: m.prefers_longer(m.judge_choice(p), la, lb),
            c.p_a,
            c.len_a,
            c.len_b,
            boot=boot,
        ),
        "human_prefers_longer": m.prefers_longer(c.human, c.len_a, c.len_b),
        "human_prefers_longer_ci": _ci(m.prefers_longer, c.human, c.len_a, c.len_b, boot=boot),
        "prompt_tokens_per_label": prompt_tokens / n if n else None,
        "completion_tokens_per_label": completion_tokens / n if n else None,
        "tokens_per_label": (prompt_tokens + completion_tokens) / n if n else None,
        "by_principle": _breakdown(c, "principle_id", boot),
        "by_category": _breakdown(c, "category", boot),
        "annotators": _annotators(c, boot),
    }
    return _round(entry)


def _breakdown(c: _Columns, key: str, boot: dict) -> dict[str, dict]:
    """Agreement per value of a record field (principle, category), with CIs. An ensemble's
    pair (principle ``a+b+c``) counts under each principle that took part."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(c.records):
        if r.get(key) is not None:
            values = str(r[key]).split("+") if key == "principle_id" else [str(r[key])]
            for value in values:
                groups[value].append(i)
    out = {}
    for value in sorted(groups):
        idx = np.array(groups[value])
        credit = m.agreement_credit(c.human[idx], c.p_a[idx])
        out[value] = {
            "n": int(idx.size),
            "agreement": m.agreement(c.human[idx], c.p_a[idx]),
            "agreement_ci": m.bootstrap_mean_ci(credit, **boot),
        }
    return out


def _annotators(c: _Columns, boot: dict) -> dict | None:
    """The judge's agreement with each annotator next to the annotators' with each other."""
    if c.annotators is None or c.annotators.shape[1] < 2:
        return None
    codes = c.annotators
    rows = np.arange(len(codes))
    return {
        "count": int(codes.shape[1]),
        "human_agreement": m.annotator_agreement(codes),
        "human_agreement_ci": _ci(lambda i: m.annotator_agreement(codes[i]), rows, boot=boot),
        "human_kappa": m.annotator_kappa(codes),
        "judge_agreement": m.judge_annotator_agreement(codes, c.p_a),
        "judge_agreement_ci": _ci(
            lambda i: m.judge_annotator_agreement(codes[i], c.p_a[i]), rows, boot=boot
        ),
    }


def _paired(c: _Columns, ref: _Columns, boot: dict) -> dict | None:
    """Agreement minus the reference strategy's on the same pairs, with a paired bootstrap CI."""
    ref_credit = dict(zip(ref.pair_id, m.agreement_credit(ref.human, ref.p_a), strict=True))
    own = m.agreement_credit(c.human, c.p_a)
    diff = [x - ref_credit[p] for p, x in zip(c.pair_id, own, strict=True) if p in ref_credit]
    diff_arr = np.array(diff, dtype=float)
    if diff_arr.size == 0 or np.isnan(diff_arr).all():
        return None
    return {
        "reference": REFERENCE,
        "n": int((~np.isnan(diff_arr)).sum()),
        "difference": float(np.nanmean(diff_arr)),
        "difference_ci": m.bootstrap_mean_ci(diff_arr, **boot),
    }
