"""Is one strategy better than another on the same pairs? Paired tests with Holm's correction.

Two strategies labelled the same pairs, so they are compared pair by pair, not by whether
their separate intervals overlap (two overlapping 95% intervals can still hide a clear paired
difference, and a pair both get right says nothing about which is better). Per pair, the
difference of agreement credit (1 right, 0.5 a judge tie, 0 wrong or unreadable) is taken;
pairs are grouped by prompt, and:

* the **test** is an exact two-sided sign test over prompts whose mean difference is not zero.
  With one pair per prompt and no judge ties this is McNemar's exact test: only the pairs one
  strategy gets right and the other wrong count, and under "no difference" each is a fair coin;
* the **interval** of the mean difference is a paired bootstrap that resamples whole prompts;
* every comparison of a family (all pairs of strategies, and each strategy against the best
  constant answer) gets a Holm-adjusted p-value, so testing many pairs does not manufacture a
  "significant" one.

The **chance level** is not a fixed 50%: it is the agreement of the best constant answer
("always A" or "always B") on the evaluated pairs, which a judge that ignores the responses
and always names one slot can reach.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from rlaif.stats import bootstrap_mean_ci, cluster_members

#: family-wise error rate of the verdicts
ALPHA = 0.05


def sign_test(differences: Sequence[float]) -> float:
    """Exact two-sided sign test that positive and negative differences are equally likely.

    Zeros and nan are left out; 1.0 when nothing is left. On 0/1 correctness of two raters
    this is McNemar's exact test (the discordant pairs are the nonzero differences).
    """
    d = np.asarray(differences, dtype=float)
    d = d[~np.isnan(d) & (d != 0)]
    n = int(d.size)
    if n == 0:
        return 1.0
    k = min(int((d > 0).sum()), int((d < 0).sum()))
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2.0 * tail)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given (reject where <= alpha)."""
    p = [float(v) for v in p_values]
    m = len(p)
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda j: p[j])):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def cluster_means(values: Sequence[float], clusters: Sequence | None) -> np.ndarray:
    """Mean of the non-nan values of each cluster (nan for a cluster with none)."""
    x = np.asarray(values, dtype=float)
    out = []
    for rows in cluster_members(clusters, x.size):
        v = x[rows][~np.isnan(x[rows])]
        out.append(float(v.mean()) if v.size else float("nan"))
    return np.array(out)


def paired_difference(
    credit_x: Sequence[float],
    credit_y: Sequence[float],
    clusters: Sequence | None = None,
    *,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict | None:
    """Mean of ``credit_x - credit_y`` over the same pairs (nan: left out), its cluster
    bootstrap interval and the sign test's p-value over clusters; None when no pair is left."""
    diff = np.asarray(credit_x, dtype=float) - np.asarray(credit_y, dtype=float)
    if diff.size == 0 or np.isnan(diff).all():
        return None
    per_cluster = cluster_means(diff, clusters)
    per_cluster = per_cluster[~np.isnan(per_cluster)]
    return {
        "n": int((~np.isnan(diff)).sum()),
        "prompts": int(per_cluster.size),
        "x_better": int((per_cluster > 0).sum()),
        "y_better": int((per_cluster < 0).sum()),
        "difference": float(np.nanmean(diff)),
        "difference_ci": bootstrap_mean_ci(
            diff, clusters=clusters, resamples=resamples, seed=seed, level=level
        ),
        "p_value": sign_test(per_cluster),
    }


def best_constant(human: Sequence[float]) -> tuple[str, np.ndarray]:
    """The constant answer (``a`` or ``b``) that agrees most with the human labels, and its
    per-pair credit (nan where the humans tied); ``a`` on a tie."""
    h = np.asarray(human, dtype=float)
    decided = h[~np.isnan(h)]
    share_a = float(decided.mean()) if decided.size else 0.5
    if share_a >= 0.5:
        return "a", h.copy()
    return "b", np.where(np.isnan(h), np.nan, 1.0 - h)
