"""From the per-pair records of ``pairs.jsonl`` to one entry of metrics per strategy.

Everything in ``metrics.json`` is computed here from the records alone, so anyone holding
``pairs.jsonl`` can recompute it (``summarize(read_pairs(path))``).

Intervals resample prompts, not pairs, where several pairs share a prompt (``prompt_id``), and
rates set next to the humans' (label is A, prefers the longer response) are taken over the same
pairs for both. Each entry's ``comparisons`` (every other strategy) and ``vs_chance`` (the best
constant answer) are paired tests, Holm-adjusted over the whole family (``significance``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from rlaif import stats as m
from rlaif.errors import InputError
from rlaif.evaluate import significance as sig

HUMAN_CODES = {"a": 1.0, "b": 0.0, "tie": float("nan")}


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
        #: the resampling unit: pairs of one prompt go together (older files: each pair alone)
        self.cluster = [str(r.get("prompt_id") or f"pair {r['pair_id']}") for r in records]
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
    _compare_all(cols, out, boot)
    return out


def _ci(stat, *arrays, boot) -> list[float] | None:
    return m.bootstrap_ci(stat, *arrays, **boot)


# Rates set next to the humans' are over the same pairs: those the humans decided and the
# judge answered (readable; for the length figure also not a judge tie).
def _judge_a_rate(human, p_a) -> float | None:
    return m.a_rate(m.judge_choice(np.where(np.isnan(human), np.nan, p_a)))


def _human_a_rate(human, p_a) -> float | None:
    return m.a_rate(np.where(np.isnan(p_a), np.nan, human))


def _judge_longer(human, p_a, len_a, len_b) -> float | None:
    choice = np.where(np.isnan(human), np.nan, m.judge_choice(p_a))
    return m.prefers_longer(choice, len_a, len_b)


def _human_longer(human, p_a, len_a, len_b) -> float | None:
    choice = m.judge_choice(p_a)
    return m.prefers_longer(np.where((choice == 0) | (choice == 1), human, np.nan), len_a, len_b)


def _round(x):
    if isinstance(x, float):
        return round(x, 6)
    if isinstance(x, list):
        return [_round(v) for v in x]
    if isinstance(x, dict):
        return {k: _round(v) for k, v in x.items()}
    return x


def _mean_or_none(x: np.ndarray) -> float | None:
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else None


def _entry(name: str, c: _Columns, boot: dict) -> dict:
    n = len(c.records)
    boot = {**boot, "clusters": c.cluster}
    chance, chance_credit = sig.best_constant(c.human)
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
        "chance": {"answer": chance, "agreement": _mean_or_none(chance_credit)},
        "agreement_readable": m.agreement_readable(c.human, c.p_a),
        "kappa": m.judge_kappa(c.human, c.p_a),
        "kappa_ci": _ci(m.judge_kappa, c.human, c.p_a, boot=boot),
        "position_consistency": m.position_consistency(c.p_ab, c.p_ba),
        "position_consistency_ci": _ci(m.position_consistency, c.p_ab, c.p_ba, boot=boot),
        "first_position_rate": m.first_position_rate(c.p_ab, c.p_ba),
        "first_position_rate_ci": _ci(m.first_position_rate, c.p_ab, c.p_ba, boot=boot),
        "a_rate": _judge_a_rate(c.human, c.p_a),
        "a_rate_ci": _ci(_judge_a_rate, c.human, c.p_a, boot=boot),
        "human_a_rate": _human_a_rate(c.human, c.p_a),
        "brier": m.brier(c.human, c.p_a),
        "brier_ci": _ci(m.brier, c.human, c.p_a, boot=boot),
        "ece": m.ece(c.human, c.p_a),
        "ece_ci": _ci(m.ece, c.human, c.p_a, boot=boot),
        "reliability": m.reliability_curve(c.human, c.p_a),
        "mean_margin": m.mean_margin(c.p_a),
        "judge_prefers_longer": _judge_longer(c.human, c.p_a, c.len_a, c.len_b),
        "judge_prefers_longer_ci": _ci(_judge_longer, c.human, c.p_a, c.len_a, c.len_b, boot=boot),
        "human_prefers_longer": _human_longer(c.human, c.p_a, c.len_a, c.len_b),
        "human_prefers_longer_ci": _ci(_human_longer, c.human, c.p_a, c.len_a, c.len_b, boot=boot),
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
            "agreement_ci": m.bootstrap_mean_ci(
                credit, **{**boot, "clusters": [c.cluster[i] for i in idx]}
            ),
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


def _compare_all(cols: dict[str, _Columns], out: dict[str, dict], boot: dict) -> None:
    """Every strategy against the best constant answer and against every other strategy, on
    the pairs both labelled; Holm-adjusted over all these tests together."""
    names = list(cols)
    family: list[tuple[str, str | None]] = [(n, None) for n in names]
    family += [(x, y) for i, x in enumerate(names) for y in names[i + 1 :]]
    results: dict[tuple[str, str | None], dict | None] = {}
    for x, y in family:
        results[x, y] = _paired(cols[x], None if y is None else cols[y], boot)
        if y is not None:
            results[y, x] = _paired(cols[y], cols[x], boot)
    tested = [key for key in family if results[key] is not None]
    adjusted = dict(zip(tested, sig.holm([results[k]["p_value"] for k in tested]), strict=True))
    for (x, y), result in results.items():
        if result is not None:
            key = (x, y) if (x, y) in adjusted else (y, x)
            result["p_holm"] = adjusted[key]
        if y is None:
            out[x]["vs_chance"] = _round(result)
        else:
            out[x].setdefault("comparisons", {})[y] = _round(result)


def _paired(c: _Columns, other: _Columns | None, boot: dict) -> dict | None:
    """Agreement of ``c`` minus that of ``other`` (None: the best constant answer) on the pairs
    both labelled, with a paired cluster bootstrap interval and the sign test's p-value."""
    own = m.agreement_credit(c.human, c.p_a)
    if other is None:
        return sig.paired_difference(own, sig.best_constant(c.human)[1], c.cluster, **boot)
    theirs = dict(zip(other.pair_id, m.agreement_credit(other.human, other.p_a), strict=True))
    common = [i for i, p in enumerate(c.pair_id) if p in theirs]
    return sig.paired_difference(
        own[common],
        np.array([theirs[c.pair_id[i]] for i in common], dtype=float),
        [c.cluster[i] for i in common],
        **boot,
    )
