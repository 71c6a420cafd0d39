"""Statistics of labels: a judge against human labels, bootstrap and Wilson intervals, and
whether a run's labels carry any signal.

**Metrics of a judge against human labels**, and bootstrap confidence intervals for any of them.
Conventions (arrays hold one element per pair, so a bootstrap can resample pairs):

* a **human** label is ``1.0`` (A better), ``0.0`` (B better) or ``nan`` (a tie);
* a judge's **p_a** is the probability that A is better, ``nan`` when the reply was unreadable;
  its choice is A above 0.5, B below, a tie at exactly 0.5;
* ``p_ab`` is p(A better) with A shown first and ``p_ba`` with A shown second (``nan`` when that
  order was not asked or not readable).

Human ties are left out of agreement-type metrics (and counted by the caller). An unreadable
reply counts as a disagreement, never as a win for either side; a judge tie earns half credit
(what breaking it with a coin would earn on average).

**Whether a run's labels carry any signal**, said in one line with what to do about it.

A judge at chance still produces a label for every pair: a probability a hair from 0.5, or one
that follows whichever response is shown first. Such labels train nothing, and nothing else in
a run's output says so. Two signs, either enough:

- **position consistency under 50%**: over the pairs labelled in both orders (pairwise mode),
  fewer than half keep their winner when the order is swapped. Pointwise labels have no
  positions, so this sign is never read from them;
- **most pairs under the margin**: more than half the readable pairs have
  ``|p - 0.5| < max(--min-margin, 0.05)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from itertools import combinations

import numpy as np

#: integer codes of categorical labels (kappa): the judge may also tie or be unreadable
A, B, TIE, UNREADABLE = 1, 0, 2, 3


def _arr(x: Sequence[float] | np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=float)


def judge_choice(p_a: Sequence[float] | np.ndarray) -> np.ndarray:
    """1.0 where the judge prefers A, 0.0 for B, 0.5 for a tie, nan where unreadable."""
    p = _arr(p_a)
    return np.where(np.isnan(p), np.nan, np.where(p > 0.5, 1.0, np.where(p < 0.5, 0.0, 0.5)))


def agreement_credit(human: Sequence[float], p_a: Sequence[float]) -> np.ndarray:
    """Per pair: 1 if the judge picks the human's side, 0.5 for a judge tie, 0 otherwise or
    unreadable; nan where the humans tied (left out)."""
    h, c = _arr(human), judge_choice(p_a)
    credit = np.where(np.isnan(c), 0.0, np.where(c == 0.5, 0.5, (c == h).astype(float)))
    return np.where(np.isnan(h), np.nan, credit)


def _nanmean(x: np.ndarray) -> float | None:
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else None


def agreement(human: Sequence[float], p_a: Sequence[float]) -> float | None:
    """Share of pairs with a human preference where the judge agrees (see module conventions)."""
    return _nanmean(agreement_credit(human, p_a))


def agreement_readable(human: Sequence[float], p_a: Sequence[float]) -> float | None:
    """Agreement over the pairs whose judge reply could be read."""
    p = _arr(p_a)
    return _nanmean(np.where(np.isnan(p), np.nan, agreement_credit(human, p)))


def cohen_kappa(x: Sequence[int], y: Sequence[int]) -> float | None:
    """Cohen's kappa of two raters' categorical labels (non-negative integer codes).

    ``(p_o - p_e) / (1 - p_e)``; None when there is nothing to compare or ``p_e == 1``.
    """
    x, y = np.asarray(x, dtype=int), np.asarray(y, dtype=int)
    if x.size == 0:
        return None
    k = int(max(x.max(), y.max())) + 1
    p_o = float(np.mean(x == y))
    p_e = float(np.dot(np.bincount(x, minlength=k), np.bincount(y, minlength=k))) / x.size**2
    if p_e >= 1.0:
        return None
    return (p_o - p_e) / (1.0 - p_e)


def judge_codes(p_a: Sequence[float]) -> np.ndarray:
    """The judge's labels as codes: A, B, TIE or UNREADABLE."""
    c = judge_choice(p_a)
    return np.where(np.isnan(c), UNREADABLE, np.where(c == 0.5, TIE, c)).astype(int)


def judge_kappa(human: Sequence[float], p_a: Sequence[float]) -> float | None:
    """Cohen's kappa of judge and human over pairs with a human preference (ties left out);
    a judge tie or unreadable reply is its own category, so it never matches."""
    h = _arr(human)
    decided = ~np.isnan(h)
    return cohen_kappa(h[decided].astype(int), judge_codes(_arr(p_a)[decided]))


def position_consistency(p_ab: Sequence[float], p_ba: Sequence[float]) -> float | None:
    """Share of pairs, of those readable in both orders, where both orders give the same
    answer (the definition of ``Preference.position_consistent``).

    A 0.5 is neither side: one order at 0.5 and the other on a side is inconsistent, both
    at 0.5 is consistent (swapping the order changed nothing).
    """
    ab, ba = _arr(p_ab), _arr(p_ba)
    both = ~np.isnan(ab) & ~np.isnan(ba)
    if not both.any():
        return None
    return float(np.mean(np.sign(ab[both] - 0.5) == np.sign(ba[both] - 0.5)))


def first_position_rate(p_ab: Sequence[float], p_ba: Sequence[float]) -> float | None:
    """Share of readable orders in which the judge prefers the response shown first (0.5 is
    unbiased): A first prefers it when ``p_ab > 0.5``; B first when ``p_ba < 0.5``."""
    ab, ba = _arr(p_ab), _arr(p_ba)
    first = np.concatenate([judge_choice(ab), 1.0 - judge_choice(ba)])
    return _nanmean(first)


def a_rate(choice: Sequence[float]) -> float | None:
    """Share of labels that pick A (a tie counts half; unreadable and human ties left out).

    Of a judge's labels (``judge_choice(p_a)``), to set next to the humans' (``human``): a
    judge that always picks the first slot reaches 100% when asked in one order only, and
    asking in both orders should bring it back near the humans' share.
    """
    return _nanmean(_arr(choice))


def _calibration_data(human, p_a) -> tuple[np.ndarray, np.ndarray]:
    h, p = _arr(human), _arr(p_a)
    ok = ~np.isnan(h) & ~np.isnan(p)
    return h[ok], p[ok]


def brier(human: Sequence[float], p_a: Sequence[float]) -> float | None:
    """Mean squared error of p_a against the human label (readable, human-decided pairs)."""
    h, p = _calibration_data(human, p_a)
    return float(np.mean((p - h) ** 2)) if h.size else None


def _bin_index(p: np.ndarray, bins: int) -> np.ndarray:
    return np.minimum((p * bins).astype(int), bins - 1)


def reliability_curve(
    human: Sequence[float], p_a: Sequence[float], bins: int = 10
) -> list[dict[str, float]]:
    """Per non-empty bin of p_a (equal width on [0, 1]): its range, count, mean p_a and the
    share of those pairs where the humans preferred A."""
    h, p = _calibration_data(human, p_a)
    idx = _bin_index(p, bins)
    curve = []
    for b in range(bins):
        sel = idx == b
        if sel.any():
            curve.append(
                {
                    "low": b / bins,
                    "high": (b + 1) / bins,
                    "count": int(sel.sum()),
                    "mean_p": float(p[sel].mean()),
                    "frequency": float(h[sel].mean()),
                }
            )
    return curve


def ece(human: Sequence[float], p_a: Sequence[float], bins: int = 10) -> float | None:
    """Expected calibration error: sum over bins of (share of pairs) x |mean p_a - frequency|."""
    h, p = _calibration_data(human, p_a)
    if not h.size:
        return None
    idx = _bin_index(p, bins)
    counts = np.bincount(idx, minlength=bins)
    mean_p = np.bincount(idx, weights=p, minlength=bins)
    freq = np.bincount(idx, weights=h, minlength=bins)
    nonempty = counts > 0
    gap = np.abs(mean_p[nonempty] - freq[nonempty]) / counts[nonempty]
    return float(np.sum(counts[nonempty] / h.size * gap))


def mean_margin(p_a: Sequence[float]) -> float | None:
    """Mean |p_a - 0.5| over readable pairs: how confident the labels are."""
    return _nanmean(np.abs(_arr(p_a) - 0.5))


def prefers_longer(
    choice: Sequence[float], len_a: Sequence[float], len_b: Sequence[float]
) -> float | None:
    """Share of pairs where the chosen response (1.0 = A, 0.0 = B) is the longer one; ties,
    unreadable choices (0.5, nan) and responses of equal length are left out."""
    c, la, lb = _arr(choice), _arr(len_a), _arr(len_b)
    ok = ((c == 0.0) | (c == 1.0)) & (la != lb)
    if not ok.any():
        return None
    return float(np.mean((c[ok] == 1.0) == (la[ok] > lb[ok])))


# -- several annotators -----------------------------------------------------------------------
def annotator_codes(labels: Sequence[Sequence[str]]) -> np.ndarray:
    """An (n pairs x m annotators) array of codes from labels ``a``, ``b``, ``tie``."""
    table = {"a": A, "b": B, "tie": TIE}
    return np.array([[table[x] for x in row] for row in labels], dtype=int).reshape(len(labels), -1)


def annotator_agreement(codes: np.ndarray) -> float | None:
    """Mean over pairs of annotators of their agreement, on items where both expressed a
    preference (ties left out, as in the MT-Bench paper's human-human figure)."""
    rates = []
    for i, j in combinations(range(codes.shape[1]), 2):
        ok = (codes[:, i] != TIE) & (codes[:, j] != TIE)
        if ok.any():
            rates.append(float(np.mean(codes[ok, i] == codes[ok, j])))
    return float(np.mean(rates)) if rates else None


def annotator_kappa(codes: np.ndarray) -> float | None:
    """Mean Cohen's kappa over pairs of annotators, ties a category of their own."""
    values = [
        cohen_kappa(codes[:, i], codes[:, j]) for i, j in combinations(range(codes.shape[1]), 2)
    ]
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def judge_annotator_agreement(codes: np.ndarray, p_a: Sequence[float]) -> float | None:
    """Mean over annotators of the judge's agreement with that annotator (their ties left out):
    the figure to set next to ``annotator_agreement``."""
    values = []
    for j in range(codes.shape[1]):
        human = np.where(codes[:, j] == TIE, np.nan, codes[:, j].astype(float))
        v = agreement(human, p_a)
        if v is not None:
            values.append(v)
    return float(np.mean(values)) if values else None


# -- bootstrap --------------------------------------------------------------------------------
def cluster_members(clusters: Sequence | np.ndarray | None, n: int) -> list[np.ndarray]:
    """Row indices of each cluster, clusters in order of first appearance; every row its own
    cluster when ``clusters`` is None."""
    if clusters is None:
        return [np.array([i]) for i in range(n)]
    labels = list(clusters)
    if len(labels) != n:
        raise ValueError(f"clusters has {len(labels)} labels for {n} rows")
    members: dict[object, list[int]] = {}
    for i, label in enumerate(labels):
        members.setdefault(label, []).append(i)
    return [np.array(rows) for rows in members.values()]


def bootstrap_ci(
    statistic: Callable[..., float | None],
    *arrays: Sequence | np.ndarray,
    clusters: Sequence | np.ndarray | None = None,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> list[float] | None:
    """Percentile bootstrap interval of ``statistic(*arrays)``, resampling pairs (rows), or
    whole clusters of rows when ``clusters`` gives each row's cluster (its prompt).

    Pairs that share a prompt are not independent: resampling them one by one gives
    intervals that are too narrow, so they are resampled together (a cluster bootstrap).
    The same seed and number of clusters give the same resamples, so intervals of strategies
    measured on the same pairs are paired; with one row per cluster the resamples are those
    of the plain pair bootstrap. Resamples where the statistic is undefined are dropped; None
    when none is defined.
    """
    data = [np.asarray(a) for a in arrays]
    n = len(data[0])
    if n == 0:
        return None
    members = cluster_members(clusters, n)
    # the rows of cluster c are order[starts[c] : starts[c] + sizes[c]]
    order = np.concatenate(members)
    sizes = np.array([rows.size for rows in members])
    starts = np.cumsum(sizes) - sizes
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(members), size=(resamples, len(members)))
    values = []
    for picked in idx:
        s = sizes[picked]
        offsets = np.arange(s.sum()) - np.repeat(np.cumsum(s) - s, s)
        rows = order[np.repeat(starts[picked], s) + offsets]
        v = statistic(*(a[rows] for a in data))
        if v is not None and not np.isnan(v):
            values.append(v)
    if not values:
        return None
    tail = (1.0 - level) / 2
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return [float(low), float(high)]


def bootstrap_mean_ci(
    values: Sequence[float],
    *,
    clusters: Sequence | np.ndarray | None = None,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> list[float] | None:
    """``bootstrap_ci`` of the mean of the non-nan values, vectorized (same resamples).

    With ``clusters`` (one label per value, e.g. its prompt) whole clusters are resampled and
    the resample's mean is over all the values of the clusters drawn.
    """
    x = _arr(values)
    n = x.size
    if n == 0 or np.isnan(x).all():
        return None
    members = cluster_members(clusters, n)
    sums = np.array([np.nansum(x[rows]) for rows in members])
    counts = np.array([np.sum(~np.isnan(x[rows])) for rows in members])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(members), size=(resamples, len(members)))
    total, count = sums[idx].sum(axis=1), counts[idx].sum(axis=1)
    means = total[count > 0] / count[count > 0]
    tail = (1.0 - level) / 2
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return [float(low), float(high)]


def paired_gain(
    before: Sequence[float],
    after: Sequence[float],
    clusters: Sequence,
    *,
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """The mean of ``after - before``, measured on the same items, with a cluster bootstrap
    interval that resamples whole clusters (prompts).

    ``before[i]`` and ``after[i]`` are one item's figure (e.g. pass or fail of sample i of a
    prompt) before and after training, and ``clusters[i]`` its prompt: answers sampled for one
    prompt are not independent, and the "before" rate is a measurement too, so the interval
    comes from the paired differences resampled by prompt, not from one side's count.
    """
    b, a = _arr(before), _arr(after)
    if b.shape != a.shape or b.size != len(clusters):
        raise ValueError(f"before ({b.size}), after ({a.size}), clusters ({len(clusters)}) differ")
    diff = a - b
    return {
        "before": float(np.mean(b)),
        "after": float(np.mean(a)),
        "gain": float(np.mean(diff)),
        "ci": bootstrap_mean_ci(
            diff, clusters=clusters, resamples=resamples, seed=seed, level=level
        ),
        "clusters": len(set(clusters)),
        "n": int(b.size),
    }


# -- a proportion's interval -----------------------------------------------------------------
Z95 = 1.959964


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion (None when n = 0)."""
    if n == 0:
        return None
    p = successes / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, center - half), min(1.0, center + half)


# -- whether a run's labels carry any signal -------------------------------------------------

#: a pair whose label is closer than this to 0.5 counts as "under the margin" (at least)
NO_SIGNAL_MARGIN = 0.05
#: position consistency below this is a judge that follows positions, not content
MIN_POSITION_CONSISTENCY = 0.5
REMEDIES = (
    "a stronger judge (--judge openai:MODEL@URL or a larger GGUF), pointwise mode "
    "(--mode pointwise), or principles with concrete checks (--constitution FILE)"
)


def no_signal_warning(records: Iterable[dict], min_margin: float = 0.0) -> str | None:
    """One line saying the labels carry no signal and naming the remedies, or None if they do.

    ``records`` are a run's labelled pairs (``preferences.jsonl`` and ``low_margin.jsonl``
    records: ``p_chosen``, ``mode``, ``position_consistent``); ``min_margin`` is the run's
    ``--min-margin``. No records: None (there is nothing to judge).
    """
    margin = max(min_margin, NO_SIGNAL_MARGIN)
    labelled = [r for r in records if r.get("p_chosen") is not None]
    if not labelled:
        return None
    under = sum(1 for r in labelled if abs(r["p_chosen"] - 0.5) < margin)
    ordered = [
        r["position_consistent"]
        for r in labelled
        if r.get("mode", "pairwise") == "pairwise" and r.get("position_consistent") is not None
    ]
    consistency = sum(ordered) / len(ordered) if ordered else None
    signs = []
    if consistency is not None and consistency < MIN_POSITION_CONSISTENCY:
        signs.append(
            f"position consistency {100 * consistency:.0f}% over {len(ordered)} pairs "
            "labelled in both orders (under 50%: the judge follows positions)"
        )
    if under > len(labelled) / 2:
        signs.append(f"{under} of {len(labelled)} pairs within {margin:g} of a coin flip")
    if not signs:
        return None
    return f"labels carry no signal: {'; '.join(signs)}. Remedies: {REMEDIES}."


def pct(x: float | None) -> str:
    """A share as a percentage with one decimal ("-" for None), as the tables print it."""
    return "-" if x is None else f"{100 * x:.1f}%"
