"""Training curves of a checkpoint's ``train.json`` and the win rates of ``rlaif loop``, as PNGs.

Each trainer keeps its per-step figures in ``train.json``: DPO its ``losses`` and, per step,
TRL's reward accuracy and margin (``step_metrics``); the reward model its ``losses`` (and the
batch's pairwise ``accuracies``); GRPO a ``steps`` list of loss, mean reward (with its spread
over the group), and KL to the starting policy. :func:`training_curves_png` draws one panel per
quantity that was logged; :func:`rounds_png` draws the loop's win rate per round with its 95%
interval. Figures are drawn without pyplot state (the Agg canvas), as in
:mod:`rlaif.evaluate.plots`.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from matplotlib.figure import Figure

#: the colours of every figure rlaif draws, and the grey of a chance or reference line
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
CHANCE = "#888888"


def png_bytes(fig: Figure) -> bytes:
    """A matplotlib figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


#: runs at least this long get a moving average drawn over the per-step values
SMOOTH_FROM = 20
LOSS_TITLES = {
    "dpo": "DPO loss",
    "reward": "reward model loss (cross-entropy against p_chosen)",
    "grpo": "GRPO loss",
}


@dataclass
class Panel:
    """One quantity per step: what the curves figure draws in one panel."""

    key: str
    title: str
    ylabel: str
    steps: list[float]
    values: list[float]
    #: a dashed horizontal line (chance accuracy, zero margin) and its legend label
    reference: tuple[float, str] | None = None
    #: fixed y range (accuracies: 0 to 1); None lets matplotlib choose
    ylim: tuple[float, float] | None = None
    #: a band of +- this around each value (GRPO's reward spread within a group)
    spread: list[float] | None = None
    #: steps logged with no finite value (not drawn)
    missing: int = 0
    notes: list[str] = field(default_factory=list)


def _finite(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _panel(
    key: str, title: str, ylabel: str, steps: Sequence, values: Sequence, **kw
) -> Panel | None:
    """A panel of the finite values only; None if the quantity was never logged."""
    pairs = [(s, v) for s, v in zip(steps, values, strict=True) if v is not None]
    if not pairs:
        return None
    kept = [(s, float(v)) for s, v in pairs if _finite(v)]
    spread = kw.pop("spread", None)
    if spread is not None:
        by_step = dict(zip(steps, spread, strict=True))
        spread = [float(by_step[s]) if _finite(by_step[s]) else 0.0 for s, _ in kept]
    return Panel(
        key,
        title,
        ylabel,
        [s for s, _ in kept],
        [v for _, v in kept],
        spread=spread,
        missing=len(pairs) - len(kept),
        **kw,
    )


#: the panels drawn from DPO's logged step metrics: key, title, y label, drawing options
DPO_METRIC_PANELS = (
    (
        "rewards/accuracies",
        "reward accuracy (implicit reward ranks chosen first)",
        "accuracy",
        {"reference": (0.5, "chance"), "ylim": (-0.02, 1.02)},
    ),
    (
        "rewards/margins",
        "reward margin (chosen - rejected)",
        "margin",
        {"reference": (0.0, "no margin")},
    ),
)


def curve_panels(info: dict) -> list[Panel]:
    """The panels a ``train.json`` supports, in order: loss first, then what else was logged.

    DPO: loss, reward accuracy, reward margin (TRL's implicit rewards, from ``step_metrics``);
    reward model: loss, batch accuracy (``accuracies``); GRPO: loss, mean reward, KL. A
    quantity that was never logged (an older ``train.json``, GRPO with ``beta = 0`` has no KL)
    gets no panel.
    """
    method = info.get("method")
    panels: list[Panel | None] = []
    steps_list = info.get("steps")
    if isinstance(steps_list, list):  # GRPO: one dict per logged step
        steps = [e.get("step", i + 1) for i, e in enumerate(steps_list)]
        col = {k: [e.get(k) for e in steps_list] for k in ("loss", "reward", "reward_std", "kl")}
        panels += [
            _panel("loss", "loss", "loss", steps, col["loss"]),
            _panel(
                "reward",
                "mean reward (band: +- std within a group)",
                "reward",
                steps,
                col["reward"],
                spread=col["reward_std"],
            ),
            _panel("kl", "KL to the starting policy", "KL", steps, col["kl"]),
        ]
    else:
        losses = info.get("losses") or []
        steps = list(range(1, len(losses) + 1))
        panels.append(_panel("loss", "loss", "loss", steps, losses))
        accuracies = info.get("accuracies")
        if isinstance(accuracies, list) and len(accuracies) == len(losses):
            panels.append(
                _panel(
                    "accuracy",
                    "pairwise accuracy of the batch",
                    "accuracy",
                    steps,
                    accuracies,
                    reference=(0.5, "chance"),
                    ylim=(-0.02, 1.02),
                )
            )
        metrics = info.get("step_metrics")
        if isinstance(metrics, list) and metrics:
            msteps = [e.get("step", i + 1) for i, e in enumerate(metrics)]
            panels += [
                _panel(key, title, ylabel, msteps, [e.get(key) for e in metrics], **kw)
                for key, title, ylabel, kw in DPO_METRIC_PANELS
            ]
    if panels[0] is not None and method in LOSS_TITLES:
        panels[0].title = LOSS_TITLES[method]
    return [p for p in panels if p is not None]


def _moving_average(values: list[float], window: int) -> np.ndarray:
    """The mean of the last ``window`` values at each step (fewer at the start)."""
    v = np.asarray(values, dtype=float)
    c = np.cumsum(np.insert(v, 0, 0.0))
    idx = np.arange(1, len(v) + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def training_curves_figure(info: dict) -> Figure:
    """The curves figure of a ``train.json`` (one panel per quantity, sharing the step axis)."""
    panels = curve_panels(info)
    n = max(1, len(panels))
    fig = Figure(figsize=(7.5, 2.4 * n + 0.6))
    axes = np.atleast_1d(fig.subplots(n, 1, sharex=True)).ravel()
    if not panels:
        ax = axes[0]
        ax.text(0.5, 0.5, "no step was logged", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    for i, (ax, p) in enumerate(zip(axes, panels, strict=False)):
        color = COLORS[i % len(COLORS)]
        few = len(p.values) <= 50
        ax.plot(
            p.steps,
            p.values,
            color=color,
            linewidth=1.2 if len(p.values) >= SMOOTH_FROM else 1.6,
            alpha=0.45 if len(p.values) >= SMOOTH_FROM else 1.0,
            marker="o" if few else None,
            markersize=3,
            label="per step",
        )
        if len(p.values) >= SMOOTH_FROM:
            window = max(5, len(p.values) // 10)
            ax.plot(
                p.steps,
                _moving_average(p.values, window),
                color=color,
                linewidth=2,
                label=f"mean of last {window}",
            )
        if p.spread is not None:
            v, s = np.array(p.values), np.array(p.spread)
            ax.fill_between(p.steps, v - s, v + s, color=color, alpha=0.15, linewidth=0)
        if p.reference is not None:
            ax.axhline(p.reference[0], color=CHANCE, linestyle="--", label=p.reference[1])
        if p.ylim is not None:
            ax.set_ylim(*p.ylim)
        title = p.title
        if p.missing:
            title += f" ({p.missing} non-finite step{'s' if p.missing > 1 else ''} not drawn)"
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(p.ylabel)
        if p.reference is not None or len(p.values) >= SMOOTH_FROM:
            ax.legend(fontsize=7, loc="best")
    axes[-1].set_xlabel("optimizer step")
    axes[-1].xaxis.get_major_locator().set_params(integer=True)
    method = info.get("method") or "training"
    fig.suptitle(f"{method}: per-step training curves", fontsize=11)
    return fig


def training_curves_png(info: dict) -> bytes:
    """PNG of a ``train.json``'s per-step curves: loss, and reward accuracy/margin, reward, KL
    where the trainer logged them (one panel per quantity; see :func:`curve_panels`)."""
    return png_bytes(training_curves_figure(info))


def rounds_figure(rounds: list[dict]) -> Figure:
    """Win rate of each round's policy against the one before, with its 95% interval."""
    fig = Figure(figsize=(7.0, 3.8))
    ax = fig.subplots()
    ax.axhline(0.5, color=CHANCE, linestyle="--", label="no change (50%)")
    x = [r.get("round", i + 1) for i, r in enumerate(rounds)]
    shown = [(xi, r) for xi, r in zip(x, rounds, strict=True) if _finite(r.get("win_rate"))]
    if shown:
        xs = [xi for xi, _ in shown]
        values = [r["win_rate"] for _, r in shown]
        cis = [r.get("win_rate_ci") for _, r in shown]
        lo = [max(v - ci[0], 0.0) if ci else 0.0 for v, ci in zip(values, cis, strict=True)]
        hi = [max(ci[1] - v, 0.0) if ci else 0.0 for v, ci in zip(values, cis, strict=True)]
        ax.errorbar(
            xs,
            values,
            yerr=[lo, hi],
            color=COLORS[0],
            marker="o",
            capsize=5,
            linewidth=1.5,
            label="win rate, 95% CI",
        )
        for xi, v, (_, r) in zip(xs, values, shown, strict=True):
            ax.annotate(
                f"{100 * v:.0f}%  (n={r.get('n', '?')})",
                (xi, v),
                textcoords="offset points",
                xytext=(8, 4),
                fontsize=8,
            )
    soft = [(xi, r["soft_win_rate"]) for xi, r in zip(x, rounds, strict=True)]
    soft = [(xi, v) for xi, v in soft if _finite(v)]
    if soft:
        ax.scatter(
            [xi for xi, _ in soft],
            [v for _, v in soft],
            marker="D",
            facecolors="none",
            edgecolors=COLORS[1],
            zorder=3,
            label="soft win rate (mean p)",
        )
    missing = [xi for xi, r in zip(x, rounds, strict=True) if not _finite(r.get("win_rate"))]
    for xi in missing:
        ax.text(xi, 0.5, "n/a", ha="center", va="bottom", fontsize=8)
    if x:
        ax.set_xticks(x)
        ax.set_xlim(min(x) - 0.5, max(x) + 0.5)
    else:
        ax.text(0.5, 0.7, "no round finished", ha="center", transform=ax.transAxes)
    ax.set_ylim(0, 1)
    ax.set_xlabel("round")
    ax.set_ylabel("win rate against the previous policy")
    ax.set_title("rlaif loop: each round's policy against the one before")
    ax.legend(fontsize=8, loc="lower right")
    return fig


def rounds_png(rounds: list[dict]) -> bytes:
    """PNG of ``loop.json``'s rounds: win rate per round with its 95% interval (and the soft
    win rate), a dashed line at 50% (no change)."""
    return png_bytes(rounds_figure(rounds))
