"""Metric functions against values computed by hand, and the bootstrap on a fixed seed."""

from __future__ import annotations

import numpy as np
import pytest

from rlaif import stats as m
from rlaif.evaluate.summary import summarize
from rlaif.evaluate.table import COLUMNS, best_strategies, markdown_table

NAN = float("nan")


def test_cohen_kappa_by_hand():
    x = [1, 1, 1, 0, 0, 0, 1, 0, 1, 1]
    y = [1, 1, 0, 0, 0, 1, 1, 0, 1, 0]
    # p_o = 7/10; x is 60% ones, y 50%: p_e = .6*.5 + .4*.5 = .5; kappa = (.7-.5)/.5
    assert m.cohen_kappa(x, y) == pytest.approx(0.4)
    assert m.cohen_kappa(x, x) == pytest.approx(1.0)
    assert m.cohen_kappa([1, 1], [1, 1]) is None  # p_e = 1: undefined, not 1 or 0
    assert m.cohen_kappa([], []) is None


def test_agreement_and_kappa_count_ties_and_unreadable_by_hand():
    human = [1.0, 0.0, NAN, 1.0, 0.0]  # A, B, tie (left out), A, B
    p_a = [0.9, 0.2, 0.7, NAN, 0.5]  # right, right, -, unreadable, judge tie
    # credits 1, 1, 0 (unreadable is a miss), 0.5 (tie is half): 2.5 / 4
    assert m.agreement(human, p_a) == pytest.approx(0.625)
    assert m.agreement_readable(human, p_a) == pytest.approx(2.5 / 3)
    # human [A,B,A,B] vs judge [A,B,unreadable,tie]: p_o = 2/4, p_e = (2*1 + 2*1)/16
    assert m.judge_kappa(human, p_a) == pytest.approx((0.5 - 0.25) / 0.75)
    assert m.agreement([NAN, NAN], [0.9, 0.1]) is None


def test_position_metrics_by_hand():
    p_ab = [0.8, 0.6, 0.3, NAN, 0.7]
    p_ba = [0.7, 0.4, 0.2, 0.5, NAN]
    # readable in both orders: pairs 0-2; same side in 0 and 2
    assert m.position_consistency(p_ab, p_ba) == pytest.approx(2 / 3)
    # A first prefers first when p_ab > .5: 1,1,0,1; B first when p_ba < .5: 0,1,1,tie(.5)
    assert m.first_position_rate(p_ab, p_ba) == pytest.approx(5.5 / 8)
    assert m.first_position_rate([0.9, 0.8], [NAN, NAN]) == 1.0  # one order only
    assert m.position_consistency([0.9], [NAN]) is None


def test_a_rate_by_hand():
    # picks A, B, a tie (half), unreadable (left out), A: 2.5 / 4
    assert m.a_rate(m.judge_choice([0.9, 0.1, 0.5, NAN, 0.7])) == pytest.approx(0.625)
    assert m.a_rate([1.0, 0.0, NAN, 1.0]) == pytest.approx(2 / 3)  # human labels, tie left out
    assert m.a_rate([NAN]) is None


def test_brier_ece_and_reliability_by_hand():
    human = [1, 1, 0, 1, 0, 0]
    p_a = [0.95, 0.85, 0.92, 0.3, 0.25, 0.05]
    squared = [0.05**2, 0.15**2, 0.92**2, 0.7**2, 0.25**2, 0.05**2]
    assert m.brier(human, p_a) == pytest.approx(sum(squared) / 6)
    # bins of width .1: {.95,.92} -> |.935 - .5|, {.85} -> .15, {.3} -> .7, {.25}, {.05}
    assert m.ece(human, p_a) == pytest.approx((2 * 0.435 + 0.15 + 0.7 + 0.25 + 0.05) / 6)
    curve = m.reliability_curve(human, p_a)
    assert [b["count"] for b in curve] == [1, 1, 1, 1, 2]
    assert curve[-1] == pytest.approx(
        {"low": 0.9, "high": 1.0, "count": 2, "mean_p": 0.935, "frequency": 0.5}
    )
    # a perfectly calibrated judge: p = .25 where humans prefer A a quarter of the time
    assert m.ece([1, 0, 0, 0], [0.25] * 4) == pytest.approx(0.0)
    assert m.ece([1.0, NAN], [0.7, NAN]) == pytest.approx(0.3)  # tie and unreadable left out


def test_prefers_longer_by_hand():
    choice = [1.0, 0.0, 1.0, 0.5, NAN, 1.0]
    len_a = [10, 5, 3, 8, 8, 4]
    len_b = [5, 9, 3, 2, 1, 9]
    # 0: A longer, chose A; 1: B longer, chose B; 2: equal; 3: tie; 4: unreadable; 5: shorter
    assert m.prefers_longer(choice, len_a, len_b) == pytest.approx(2 / 3)


def test_annotator_metrics_by_hand():
    labels = [
        ["a", "a", "a"],
        ["a", "b", "a"],
        ["tie", "a", "a"],
        ["b", "b", "tie"],
        ["b", "a", "tie"],
    ]
    codes = m.annotator_codes(labels)
    # pairs of annotators, ties left out: (1,2) 2/4, (1,3) 2/2, (2,3) 2/3
    assert m.annotator_agreement(codes) == pytest.approx((0.5 + 1.0 + 2 / 3) / 3)
    # judge picks a, b, a, b, a: vs annotator 1: 2/4, annotator 2: 5/5, annotator 3: 2/3
    p_a = [0.9, 0.1, 0.8, 0.3, 0.6]
    assert m.judge_annotator_agreement(codes, p_a) == pytest.approx((0.5 + 1.0 + 2 / 3) / 3)
    assert -1.0 <= m.annotator_kappa(codes) <= 1.0


def test_bootstrap_fixed_seed_is_the_documented_percentile_bootstrap():
    values = np.array([1.0] * 6 + [0.0] * 4)
    ci = m.bootstrap_ci(lambda x: float(x.mean()), values, resamples=1000, seed=0)
    # the same thing written out: numpy's default_rng(seed), rows resampled, 2.5/97.5 percentiles
    rng = np.random.default_rng(0)
    means = values[rng.integers(0, 10, size=(1000, 10))].mean(axis=1)
    assert ci == pytest.approx(list(np.quantile(means, [0.025, 0.975])))
    # by hand: a resample mean is Binomial(10, 0.6) / 10, whose 2.5% and 97.5% quantiles are
    # 3 (P(X <= 2) = .012, P(X <= 3) = .055) and 9 (P(X >= 9) = .046, P(X >= 10) = .006)
    assert ci == pytest.approx([0.3, 0.9])
    assert m.bootstrap_mean_ci(values, seed=0) == pytest.approx(ci)
    smooth = np.random.default_rng(7).uniform(size=30)
    mean_ci = m.bootstrap_mean_ci
    assert mean_ci(smooth, seed=0) == mean_ci(smooth, seed=0)  # fixed seed: reproducible
    assert mean_ci(smooth, seed=0) != mean_ci(smooth, seed=1)


def test_bootstrap_width_matches_the_normal_approximation():
    values = np.array([1.0, 0.0] * 50)  # n = 100 at 50%: +/- 1.96 * sqrt(.25/100) = 0.098
    low, high = m.bootstrap_mean_ci(values, seed=0)
    assert low == pytest.approx(0.5 - 0.098, abs=0.02)
    assert high == pytest.approx(0.5 + 0.098, abs=0.02)
    assert m.bootstrap_mean_ci([0.7] * 20) == pytest.approx([0.7, 0.7])
    assert m.bootstrap_mean_ci([]) is None


def test_vectorized_agreement_ci_equals_the_generic_one():
    rng = np.random.default_rng(3)
    human = rng.choice([0.0, 1.0, NAN], size=60)
    p_a = rng.uniform(size=60)
    p_a[::7] = NAN
    generic = m.bootstrap_ci(m.agreement, human, p_a, seed=5)
    fast = m.bootstrap_mean_ci(m.agreement_credit(human, p_a), seed=5)
    assert fast == pytest.approx(generic)


def _record(strategy, pair_id, human, p_a, p_ab, p_ba, **extra):
    return {
        "strategy": strategy,
        "pair_id": pair_id,
        "human": human,
        "p_a": p_a,
        "p_a_order_ab": p_ab,
        "p_a_order_ba": p_ba,
        **extra,
    }


def test_summarize_entry_and_paired_difference():
    records = []
    humans = ["a", "b", "a", "b", "tie", "a"]
    for i, h in enumerate(humans):
        # both-orders always right; one-order always prefers A (first slot)
        right = 0.8 if h == "a" else 0.2
        records.append(_record("both-orders", i, h, right, right, right, len_a=10, len_b=5))
        records.append(_record("one-order", i, h, 0.9, 0.9, None, len_a=10, len_b=5))
    records.append(_record("one-order", 6, "a", None, None, None, len_a=1, len_b=2, error="x"))
    out = summarize(records, resamples=200)
    both, one = out["both-orders"], out["one-order"]
    assert both["agreement"] == 1.0 and both["agreement_ci"] == [1.0, 1.0]
    assert both["position_consistency"] == 1.0 and both["first_position_rate"] == 0.5
    assert one["agreement"] == pytest.approx(3 / 6)  # 3 of 5 decided right, 1 unreadable miss
    assert (one["n"], one["human_ties"], one["unreadable"], one["errors"]) == (7, 1, 1, 1)
    assert one["first_position_rate"] == 1.0 and one["position_consistency"] is None
    # over the pairs the humans decided (the tie, pair 4, left out as for the humans)
    assert one["a_rate"] == 1.0 and both["a_rate"] == pytest.approx(3 / 5)
    assert both["human_a_rate"] == pytest.approx(3 / 5)  # a, b, a, b, (tie), a
    # humans chose the longer response (A, 10 > 5) in pairs 0, 2, 5; not in 1, 3 (nor 6,
    # which one-order could not read: left out of both rates)
    assert one["human_prefers_longer"] == pytest.approx(3 / 5)
    diff = one["comparisons"]["both-orders"]
    assert diff["n"] == 5  # pair 6 has no both-orders record
    assert diff["difference"] == pytest.approx(-0.4)
    assert diff["difference_ci"][1] <= 0.0
    assert (diff["x_better"], diff["y_better"], diff["p_value"]) == (0, 2, 0.5)  # 2 / 2**2
    assert both["comparisons"]["one-order"]["difference"] == pytest.approx(0.4)


def test_best_per_column_and_markdown_table():
    entries = {
        "x": {"n": 3, "agreement": 0.6, "first_position_rate": 0.9, "ece": 0.1},
        "y": {"n": 3, "agreement": 0.5, "first_position_rate": 0.55, "ece": 0.1},
    }
    cols = {c.key: c for c in COLUMNS}
    assert best_strategies(entries, cols["agreement"]) == {"x"}
    assert best_strategies(entries, cols["first_position_rate"]) == {"y"}  # closest to 50%
    assert best_strategies(entries, cols["ece"]) == {"x", "y"}  # a tie marks both
    table = markdown_table(entries)
    assert "| x | 3 | **60%** |" in table
    assert "**55%**" in table and "| 90% |" in table
    assert table.count("**0.100**") == 2
