"""Paired comparisons of strategies, Holm's correction, the cluster bootstrap and the verdict,
against values worked out by hand."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rlaif import stats as m
from rlaif.evaluate import significance as sig
from rlaif.evaluate.report import verdict
from rlaif.evaluate.summary import summarize

RLAIF = Path(sys.executable).with_name("rlaif")


# -- sign test / McNemar ------------------------------------------------------------------------
def test_sign_test_is_mcnemars_exact_test_on_a_worked_table():
    # 20 pairs: both right 8, both wrong 2, only x right 9, only y right 1.
    x = [1] * 8 + [0] * 2 + [1] * 9 + [0] * 1
    y = [1] * 8 + [0] * 2 + [0] * 9 + [1] * 1
    diff = np.subtract(x, y)
    # discordant pairs 9 vs 1: p = 2 * P(Bin(10, 1/2) <= 1) = 2 * 11 / 1024
    assert sig.sign_test(diff) == pytest.approx(22 / 1024, abs=1e-15)
    result = sig.paired_difference(x, y)
    assert result["difference"] == pytest.approx(8 / 20)
    assert (result["n"], result["prompts"], result["x_better"], result["y_better"]) == (
        20,
        20,
        9,
        1,
    )
    assert result["p_value"] == pytest.approx(22 / 1024, abs=1e-15)


def test_sign_test_edges():
    assert sig.sign_test([]) == 1.0
    assert sig.sign_test([0.0, float("nan")]) == 1.0  # only ties and missing: nothing to test
    assert sig.sign_test([1, -1] * 5) == 1.0  # capped at 1
    assert sig.sign_test([0.5] * 6) == pytest.approx(2 / 64)  # half credits count by sign
    assert sig.sign_test([-1] * 6 + [0] * 10) == pytest.approx(2 / 64)


def test_holm_against_a_worked_example():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4 = 0.02, x3 = 0.03, x2 = 0.06, x1 = 0.04 -> 0.06
    assert sig.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert sig.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert sig.holm([]) == []


def test_best_constant_answer_is_the_chance_level():
    human = np.array([1.0, 1.0, 1.0, 0.0, float("nan")])
    answer, credit = sig.best_constant(human)
    assert answer == "a" and np.nanmean(credit) == 0.75
    answer, credit = sig.best_constant(1.0 - human)
    assert answer == "b" and np.nanmean(credit) == 0.75 and np.isnan(credit[-1])


# -- cluster bootstrap -------------------------------------------------------------------------
def _correlated(prompts: int = 10, per_prompt: int = 5) -> tuple[np.ndarray, list[str]]:
    """Per prompt all pairs right or all wrong (perfectly correlated), half the prompts right."""
    values = np.repeat([1.0, 0.0] * (prompts // 2), per_prompt)
    clusters = [f"p{i}" for i in range(prompts) for _ in range(per_prompt)]
    return values, clusters


def test_cluster_bootstrap_is_the_bootstrap_of_prompts_when_pairs_are_correlated():
    values, clusters = _correlated()
    per_prompt = values[::5]
    # equal clusters of identical values: resampling prompts is resampling their means
    assert m.bootstrap_mean_ci(values, clusters=clusters) == m.bootstrap_mean_ci(per_prompt)
    assert m.bootstrap_ci(np.mean, values, clusters=clusters) == m.bootstrap_ci(np.mean, per_prompt)


def test_cluster_interval_is_wider_than_the_pair_interval():
    values, clusters = _correlated()
    low_p, high_p = m.bootstrap_mean_ci(values)
    low_c, high_c = m.bootstrap_mean_ci(values, clusters=clusters)
    # 50 pairs but only 10 independent prompts: about sqrt(5) times wider
    assert high_c - low_c > 1.8 * (high_p - low_p)


def test_one_pair_per_cluster_is_the_plain_pair_bootstrap():
    rng = np.random.default_rng(3)
    values = rng.integers(0, 2, 40).astype(float)
    singletons = [str(i) for i in range(40)]
    assert m.bootstrap_mean_ci(values, clusters=singletons) == m.bootstrap_mean_ci(values)
    assert m.bootstrap_ci(np.mean, values, clusters=singletons) == m.bootstrap_ci(np.mean, values)


def test_clusters_must_label_every_row():
    with pytest.raises(ValueError, match="3 labels for 2 rows"):
        m.bootstrap_mean_ci([1.0, 0.0], clusters=["a", "b", "c"])


# -- summarize: the family, Holm, the verdict ----------------------------------------------------
def _record(strategy, pair_id, human, p_a, prompt_id=None):
    p_ba = None if p_a is None else p_a
    record = {
        "strategy": strategy,
        "pair_id": pair_id,
        "human": human,
        "p_a": p_a,
        "p_a_order_ab": p_a,
        "p_a_order_ba": p_ba,
        "len_a": 10,
        "len_b": 5,
    }
    if prompt_id is not None:
        record["prompt_id"] = prompt_id
    return record


def _right(human: str) -> float:
    return 0.8 if human == "a" else 0.2


def _wrong(human: str) -> float:
    return 0.2 if human == "a" else 0.8


def test_the_family_is_holm_adjusted_and_chance_is_the_best_constant():
    humans = ["a", "b"] * 5
    records = [_record("good", i, h, _right(h)) for i, h in enumerate(humans)]
    records += [
        _record("bad", i, h, _right(h) if i == 0 else _wrong(h)) for i, h in enumerate(humans)
    ]
    out = summarize(records, resamples=200)
    good, bad = out["good"], out["bad"]
    assert good["chance"] == {"answer": "a", "agreement": 0.5}
    # good vs always-A: right where A is wrong on 5 pairs, equal elsewhere -> 2/32
    # bad vs always-A: wrong on 4 A pairs always-A gets right -> 2/16
    # good vs bad: 9 pairs one way -> 2/512
    raw = [good["vs_chance"]["p_value"], bad["vs_chance"]["p_value"]]
    assert raw == pytest.approx([2 / 32, 2 / 16])
    assert good["comparisons"]["bad"]["p_value"] == pytest.approx(2 / 512, abs=1e-6)
    assert good["comparisons"]["bad"]["p_holm"] == pytest.approx(3 * 2 / 512, abs=1e-6)
    assert good["vs_chance"]["p_holm"] == pytest.approx(2 * 2 / 32)
    assert bad["vs_chance"]["p_holm"] == pytest.approx(0.125)
    assert bad["comparisons"]["good"]["difference"] == pytest.approx(-0.9)  # 10% - 100%
    text = verdict(out)
    assert text.startswith("Highest agreement: good 100%")
    assert "Chance here is 50%, what always answering A agrees" in text
    assert "good is not distinguishable from it" in text  # 10 pairs are too few to tell
    assert "better than every other strategy" in text


def _overlapping_but_paired() -> list[dict]:
    """60 pairs, 1 per prompt: x and y agree on 48 (half right), x alone right on the other 12.

    Marginally x 60% and y 40% have overlapping 95% intervals; pair by pair y is never
    better, so McNemar's test gives p = 2 / 2**12.
    """
    humans = ["a", "b"] * 30
    records = []
    for i, h in enumerate(humans):
        shared = _right(h) if i % 4 < 2 else _wrong(h)
        x = _right(h) if i < 12 else shared
        y = _wrong(h) if i < 12 else shared
        records.append(_record("x", i, h, x))
        records.append(_record("y", i, h, y))
    return records


def test_the_verdict_follows_the_paired_test_not_overlapping_intervals():
    out = summarize(_overlapping_but_paired(), resamples=1000)
    x, y = out["x"], out["y"]
    assert (x["agreement"], y["agreement"]) == (pytest.approx(0.6), pytest.approx(0.4))
    assert x["agreement_ci"][0] <= y["agreement_ci"][1]  # the marginal intervals overlap
    assert x["comparisons"]["y"]["p_value"] == pytest.approx(2 / 4096, abs=1e-6)
    assert x["comparisons"]["y"]["p_holm"] < sig.ALPHA
    text = verdict(out)
    assert "It is better than every other strategy on the same pairs" in text
    assert "overlap" not in text and "not single out" not in text


def test_pairs_of_one_prompt_are_resampled_together():
    values, clusters = _correlated()
    humans = ["a"] * len(values)
    alone = [_record("s", i, "a", 0.8 if v else 0.2) for i, v in enumerate(values)]
    grouped = [
        _record("s", i, h, 0.8 if v else 0.2, prompt_id=c)
        for i, (v, h, c) in enumerate(zip(values, humans, clusters, strict=True))
    ]
    ci_alone = summarize(alone, resamples=500)["s"]["agreement_ci"]
    ci_grouped = summarize(grouped, resamples=500)["s"]["agreement_ci"]
    assert ci_grouped == pytest.approx(m.bootstrap_mean_ci(values[::5], resamples=500), abs=1e-6)
    assert ci_grouped[1] - ci_grouped[0] > 1.8 * (ci_alone[1] - ci_alone[0])


def test_judge_and_human_rates_are_over_the_same_pairs():
    # humans: a, a, b, a, tie; every response A is the longer one
    # judge: A, unreadable, B, unreadable, A (on the human tie)
    humans = ["a", "a", "b", "a", "tie"]
    p_a = [0.8, None, 0.2, None, 0.9]
    entry = summarize(
        [_record("s", i, h, p) for i, (h, p) in enumerate(zip(humans, p_a, strict=True))]
    )["s"]
    # same pairs = humans decided and judge answered: pairs 0 and 2 (A, B by both)
    assert entry["a_rate"] == 0.5 and entry["human_a_rate"] == 0.5
    assert entry["judge_prefers_longer"] == 0.5 and entry["human_prefers_longer"] == 0.5


def test_pointwise_position_figures_are_not_measured():
    records = [
        {**_record("pointwise", i, h, 0.7), "p_a_order_ab": None, "p_a_order_ba": None}
        for i, h in enumerate(["a", "b", "a"])
    ]
    records += [_record("both-orders", i, h, 0.7) for i, h in enumerate(["a", "b", "a"])]
    out = summarize(records, resamples=200)
    pw = out["pointwise"]
    assert pw["position_consistency"] is None and pw["position_consistency_ci"] is None
    assert pw["first_position_rate"] is None
    from rlaif.evaluate.table import markdown_table

    row = next(line for line in markdown_table(out).splitlines() if "| pointwise |" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[4:6] == ["n/a", "n/a"]  # position consistency, first-slot rate: not bold


def test_position_consistency_counts_a_half_as_neither_side():
    # 0.5 then B (p_ba 0.3): old code read 0.5 as B and called the pair consistent
    assert m.position_consistency([0.5], [0.3]) == 0.0
    assert m.position_consistency([0.5], [0.5]) == 1.0
    assert m.position_consistency([0.7, 0.2], [0.6, 0.4]) == 1.0


# -- the real CLI: `rlaif report` on an evaluation directory -----------------------------------
def test_report_cli_states_the_paired_verdict_and_n_a(tmp_path):
    records = _overlapping_but_paired()
    records += [
        {**r, "strategy": "pointwise", "p_a_order_ab": None, "p_a_order_ba": None}
        for r in records
        if r["strategy"] == "y"
    ]
    d = tmp_path / "eval"
    d.mkdir()
    (d / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    metrics = summarize(records, resamples=200)
    (d / "metrics.json").write_text(json.dumps(metrics))
    proc = subprocess.run(
        [str(RLAIF), "report", str(d)], capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr
    html = (d / "report.html").read_text()
    assert "It is better than every other strategy on the same pairs" in html
    assert "Holm" in html and "Paired differences in agreement" in html
    row = html[html.index("<td>pointwise</td>") :]
    row = row[: row.index("</tr>")]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row)  # strategy, n, agreement, kappa, ...
    assert cells[4:6] == ["n/a", "n/a"]  # position consistency, first-slot rate: no number
    assert metrics["x"]["comparisons"]["pointwise"]["p_value"] == pytest.approx(2 / 4096, abs=1e-6)
