"""The report's figures, drawn with matplotlib (no pyplot state) and returned as PNG bytes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from rlaif.train.curves import CHANCE, COLORS, png_bytes


def _err(values: Sequence[float | None], cis: Sequence[list[float] | None]) -> np.ndarray:
    """Asymmetric error bars (2 x n) from values and [low, high] intervals (0 where missing)."""
    lo, hi = [], []
    for v, ci in zip(values, cis, strict=True):
        if v is None or not ci:
            lo.append(0.0)
            hi.append(0.0)
        else:
            lo.append(max(v - ci[0], 0.0))
            hi.append(max(ci[1] - v, 0.0))
    return np.array([lo, hi])


def _nz(values: Sequence[float | None]) -> list[float]:
    return [0.0 if v is None else v for v in values]


def _marks(ax, points: Sequence[tuple[float, float]], **style) -> None:
    """Thick line markers at ``(x, y)`` points above the bars (nothing if there are none)."""
    if points:
        ax.scatter(
            [x for x, _ in points],
            [y for _, y in points],
            marker=style["marker"],
            s=style["size"],
            linewidths=3,
            color=style["color"],
            zorder=3,
            label=style["label"],
        )


def interval_bars(
    names: Sequence[str],
    values: Sequence[float | None],
    cis: Sequence[list[float] | None],
    *,
    title: str,
    xlabel: str,
    reference: float | None = 0.5,
    reference_label: str = "chance",
    extra_line: tuple[float, str] | None = None,
    marks: Sequence[float | None] | None = None,
    marks_label: str = "",
) -> bytes:
    """Horizontal bars with 95% CI error bars, one per strategy, and reference lines;
    ``marks`` puts one marker on each bar (e.g. the humans' rate over the same pairs)."""
    fig = Figure(figsize=(7.5, 0.55 * len(names) + 1.6))
    ax = fig.subplots()
    y = np.arange(len(names))
    ax.barh(y, _nz(values), xerr=_err(values, cis), color=COLORS[0], capsize=4, height=0.6)
    for yi, v in zip(y, values, strict=True):
        if v is None:
            ax.text(0.01, yi, "n/a", va="center", color="black")
        elif v >= 0.1:  # inside the bar, or just after a short one
            ax.text(0.01, yi, f"{100 * v:.0f}%", va="center", color="white")
        else:
            ax.text(v + 0.01, yi, f"{100 * v:.0f}%", va="center", color="black")
    if reference is not None:
        ax.axvline(reference, color=CHANCE, linestyle="--", label=reference_label)
    if extra_line is not None:
        ax.axvline(extra_line[0], color=COLORS[3], linestyle=":", label=extra_line[1])
    shown = [(v, yi) for v, yi in zip(marks or [], y, strict=False) if v is not None]
    _marks(ax, shown, marker="|", size=400, color=COLORS[3], label=marks_label)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    if reference is not None or extra_line is not None or shown:
        ax.legend(loc="lower right", fontsize=8)
    return png_bytes(fig)


def position_bias(names: Sequence[str], entries: Sequence[dict]) -> bytes:
    """Grouped bars with CIs: how often a question's answer is the first slot, how often both
    orders agree, and how often the final label is A (a marker: the humans' share of A over
    the same pairs). A figure a strategy never measured is written "n/a", not drawn as 0."""
    fig = Figure(figsize=(8.5, 4.0))
    ax = fig.subplots()
    x = np.arange(len(names))
    w = 0.27
    bars = (
        ("first_position_rate", "answer is the first slot"),
        ("position_consistency", "both orders agree"),
        ("a_rate", "final label is A"),
    )
    for k, (key, label) in enumerate(bars):
        values = [e.get(key) for e in entries]
        cis = [e.get(f"{key}_ci") for e in entries]
        ax.bar(
            x + (k - 1) * w,
            _nz(values),
            w,
            yerr=_err(values, cis),
            capsize=3,
            color=COLORS[1 + k],
            label=label,
        )
        for xi, v in zip(x + (k - 1) * w, values, strict=True):
            if v is None:
                ax.text(xi, 0.02, "n/a", ha="center", va="bottom", rotation=90, fontsize=8)
    ax.axhline(0.5, color=CHANCE, linestyle="--", label="no first-slot preference")
    human_a = [(xi + w, e.get("human_a_rate")) for xi, e in zip(x, entries, strict=True)]
    human_a = [(xi, v) for xi, v in human_a if v is not None]
    _marks(ax, human_a, marker="_", size=250, color=COLORS[4], label="humans' labels: A")
    ax.set_xticks(x, names, rotation=25, ha="right")
    ax.set_ylim(0, 1.3)  # room for the legend above the bars
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set_ylabel("share of pairs / orders")
    ax.set_title("Position bias (a judge without it: first slot 50%, consistency high)")
    ax.legend(fontsize=7, loc="upper center", ncol=3)
    return png_bytes(fig)


def reliability(names: Sequence[str], curves: Sequence[list[dict]]) -> bytes:
    """Reliability diagrams, one small panel per strategy: mean p(A better) per bin vs how
    often the humans preferred A (marker area: pairs in the bin)."""
    cols = min(4, max(1, len(names)))
    rows = (len(names) + cols - 1) // cols
    fig = Figure(figsize=(2.6 * cols, 2.6 * rows + 0.4))
    axes = np.atleast_1d(fig.subplots(rows, cols, sharex=True, sharey=True)).ravel()
    for i, ax in enumerate(axes):
        if i >= len(names):
            ax.set_axis_off()
            continue
        ax.plot([0, 1], [0, 1], color=CHANCE, linestyle="--", linewidth=1)
        curve = curves[i]
        if curve:
            xs = [b["mean_p"] for b in curve]
            ys = [b["frequency"] for b in curve]
            ax.plot(xs, ys, color=COLORS[i % len(COLORS)], linewidth=1.5)
            ax.scatter(xs, ys, s=[10 + 3 * b["count"] for b in curve], color=COLORS[i % 8])
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(names[i], fontsize=9)
    fig.supxlabel("judge's p(A better), bin mean", fontsize=9)
    fig.supylabel("share where humans preferred A", fontsize=9)
    fig.suptitle("Reliability (dashed: perfect calibration)", fontsize=10)
    return png_bytes(fig)


def histograms(
    series: dict[str, Sequence[float]], *, title: str, xlabel: str, low: float, high: float
) -> bytes:
    """Overlaid step histograms of one quantity per series (10 bins on [low, high])."""
    fig = Figure(figsize=(7.0, 3.6))
    ax = fig.subplots()
    bins = np.linspace(low, high, 11)
    for i, (name, values) in enumerate(series.items()):
        values = [v for v in values if v is not None]
        if values:
            ax.hist(
                values, bins=bins, histtype="step", linewidth=2, color=COLORS[i % 8], label=name
            )
    ax.set_xlim(low, high)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("pairs")
    ax.set_title(title)
    if series:
        ax.legend(fontsize=7)
    return png_bytes(fig)


def stacked_bars(
    names: Sequence[str], parts: dict[str, Sequence[float]], *, title: str, ylabel: str
) -> bytes:
    """Vertical stacked bars (e.g. prompt and completion tokens per label)."""
    fig = Figure(figsize=(7.5, 3.6))
    ax = fig.subplots()
    x = np.arange(len(names))
    bottom = np.zeros(len(names))
    for i, (label, values) in enumerate(parts.items()):
        v = np.array(_nz(values), dtype=float)
        ax.bar(x, v, bottom=bottom, color=COLORS[i % 8], label=label, width=0.6)
        bottom += v
    for xi, total in zip(x, bottom, strict=True):
        ax.text(xi, total, f"{total:,.0f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, names, rotation=25, ha="right")
    ax.set_ylim(0, 1.3 * max(float(bottom.max()), 1.0))  # room for the legend above the bars
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", ncol=len(parts))
    return png_bytes(fig)


def order_scatter(first: Sequence[float], second: Sequence[float], *, title: str) -> bytes:
    """p(chosen better) when shown first vs when shown second: above the diagonal is a
    first-slot preference, and points left of 0.5 changed their mind with the order."""
    fig = Figure(figsize=(5.0, 5.0))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color=CHANCE, linestyle="--", label="no position effect")
    ax.axvline(0.5, color=CHANCE, linewidth=0.8)
    ax.axhline(0.5, color=CHANCE, linewidth=0.8)
    ax.scatter(second, first, color=COLORS[0], alpha=0.7, label="pair")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("p(chosen better), chosen shown second")
    ax.set_ylabel("p(chosen better), chosen shown first")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    return png_bytes(fig)


def count_bars(counts: dict[str, int], *, title: str, ylabel: str = "pairs") -> bytes:
    """Vertical bars of counts per label."""
    fig = Figure(figsize=(6.5, 3.4))
    ax = fig.subplots()
    labels = list(counts)
    x = np.arange(len(labels))
    ax.bar(x, [counts[k] for k in labels], color=[COLORS[i % 8] for i in range(len(labels))])
    for xi, k in zip(x, labels, strict=True):
        ax.text(xi, counts[k], str(counts[k]), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, labels, rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return png_bytes(fig)
