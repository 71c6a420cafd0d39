"""The strategies-by-metrics table: which columns, how each cell reads, which value is best."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Column:
    """One metric column: the key in a metrics entry and what "best" means for it."""

    key: str
    title: str
    #: max / min: the highest / lowest is best; half: closest to 0.5; human: closest to the
    #: humans' own rate (``human_key``)
    best: Literal["max", "min", "half", "human"]
    percent: bool = True
    human_key: str | None = None
    with_ci: bool = True


COLUMNS = (
    Column("agreement", "agreement", "max"),
    Column("kappa", "kappa", "max", percent=False),
    Column("position_consistency", "position consistency", "max"),
    Column("first_position_rate", "first-slot rate", "half"),
    Column("a_rate", "label is A", "human", human_key="human_a_rate"),
    Column("brier", "Brier", "min", percent=False),
    Column("ece", "ECE", "min", percent=False),
    Column(
        "judge_prefers_longer",
        "prefers longer",
        "human",
        human_key="human_prefers_longer",
    ),
    Column("unreadable_rate", "unreadable", "min", with_ci=False),
    Column("tokens_per_label", "tokens/label", "min", percent=False, with_ci=False),
)


#: what a cell shows for a figure the strategy never measured
NOT_MEASURED = "n/a"


def fmt(value: float | None, percent: bool) -> str:
    """A value as a table shows it: percent with no decimals, or 2-3 decimals; '-' if None."""
    if value is None:
        return "-"
    if percent:
        return f"{100 * value:.0f}%"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"


def cell(entry: dict, col: Column) -> str:
    """``value [low, high]`` (the 95% bootstrap interval) for one metric of one strategy;
    ``n/a`` where it was not measured (position figures of one order or of pointwise)."""
    if entry.get(col.key) is None:
        return NOT_MEASURED
    text = fmt(entry.get(col.key), col.percent)
    ci = entry.get(f"{col.key}_ci") if col.with_ci else None
    if ci:
        text += f" [{fmt(ci[0], col.percent)}, {fmt(ci[1], col.percent)}]"
    return text


def _distance(entry: dict, col: Column) -> float | None:
    value = entry.get(col.key)
    if value is None:
        return None
    if col.best == "max":
        return -value
    if col.best == "min":
        return value
    if col.best == "half":
        return abs(value - 0.5)
    human = entry.get(col.human_key or "")
    return None if human is None else abs(value - human)


def best_strategies(entries: dict[str, dict], col: Column) -> set[str]:
    """The strategies with the best value of a column (all of them on a tie at display
    precision); none when fewer than two strategies have a value."""
    shown = {}
    for name, entry in entries.items():
        d = _distance(entry, col)
        if d is not None:
            shown[name] = round(d, 6)
    if len(shown) < 2:
        return set()
    top = min(shown.values())
    return {name for name, d in shown.items() if d == top}


def markdown_table(entries: dict[str, dict], columns: tuple[Column, ...] = COLUMNS) -> str:
    """Strategies as rows, metrics as columns with 95% CIs, the best per column in bold."""
    best = {col.key: best_strategies(entries, col) for col in columns}
    lines = [
        "| strategy | n | " + " | ".join(col.title for col in columns) + " |",
        "|---|---:|" + "---:|" * len(columns),
    ]
    for name, entry in entries.items():
        cells = []
        for col in columns:
            text = cell(entry, col)
            cells.append(f"**{text}**" if name in best[col.key] else text)
        lines.append(f"| {name} | {entry.get('n', '-')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


LEGEND = (
    "Values with 95% bootstrap intervals (pairs of one prompt resampled together); bold marks "
    "the best in its column (first-slot rate: closest to 50%; label is A, prefers longer: "
    "closest to the humans' rate on the same pairs). First-slot rate is per question asked, "
    "label is A per final label. Agreement counts an unreadable reply as a miss and a judge tie "
    "as half. n/a: not measured (one-order never swaps; pointwise scores each response alone "
    "and shows no order, so it has no position figures)."
)
