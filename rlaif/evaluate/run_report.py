"""The report of a run directory from ``rlaif run``: confidence, consistency, cost, examples."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from rlaif.errors import InputError
from rlaif.evaluate.htmlparts import esc, figure, meta, pct, table
from rlaif.evaluate.table import NOT_MEASURED, fmt
from rlaif.pipeline.record import RunRecord
from rlaif.stats import no_signal_warning


def _measured(value: float | bool | None) -> str:
    """A rate as a percentage, a flag as text; ``n/a`` where it was not measured (None)."""
    if value is None:
        return NOT_MEASURED
    return str(value) if isinstance(value, bool) else pct(value)


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSONL ({e.msg})") from e


def _as_text(value) -> str:
    if isinstance(value, list):
        return "\n".join(
            str(m.get("content", "")) if isinstance(m, dict) else str(m) for m in value
        )
    return "" if value is None else str(value)


def _clip(text: str, n: int = 400) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def run_body(d: Path) -> str:
    """The body of the report of a run directory."""
    record = RunRecord.load(d)
    prefs = _read_jsonl(d / "preferences.jsonl")
    low = _read_jsonl(d / "low_margin.jsonl")
    unreadable = _read_jsonl(d / "unreadable.jsonl")
    labelled = prefs + low
    warnings = record.warnings
    if warnings is None:  # a run directory written before run.json listed warnings
        warning = no_signal_warning(labelled, record.setting("min_margin", None) or 0.0)
        warnings = [warning] if warning else []
    return "\n".join(
        [
            *(f'<p class="note">warning: {esc(w)}</p>' for w in warnings),
            meta(record.setup_rows() + record.summary_rows()),
            "<h2>Figures</h2>",
            _confidence_figure(labelled),
            *_order_figure(labelled),
            _consistency_figure(record, labelled, low, unreadable),
            *_principles_figure(labelled + unreadable),
            *_tokens_figure(record),
            _examples(prefs, low, unreadable),
        ]
    )


def _confidence_figure(labelled: list[dict]) -> str:
    """The soft labels' distribution, by pair type."""
    from rlaif.evaluate import plots

    by_type: dict[str, list[float]] = {}
    for r in labelled:
        by_type.setdefault(r.get("pair_type", "pairs"), []).append(r["p_chosen"])
    return figure(
        plots.histograms(
            by_type,
            title="Confidence: p(chosen better)",
            xlabel="p(chosen better)",
            low=0.5,
            high=1.0,
        ),
        "Distribution of the soft labels by pair type (0.5: a coin; 1: certain).",
    )


def _order_figure(labelled: list[dict]) -> list[str]:
    """Each pair's label in both orders; none where no pair was asked in both."""
    from rlaif.evaluate import plots

    first, second = "p_chosen_shown_first", "p_chosen_shown_second"
    both = [r for r in labelled if r.get(first) is not None and r.get(second) is not None]
    if not both:
        return []
    png = plots.order_scatter(
        [r[first] for r in both], [r[second] for r in both], title="Each pair in both orders"
    )
    return [
        figure(
            png,
            "Above the diagonal: the chosen response does better when shown first. Points "
            "left of 0.5 flipped with the order (position-inconsistent).",
        )
    ]


def _consistency_figure(
    record: RunRecord, labelled: list[dict], low: list[dict], unreadable: list[dict]
) -> str:
    """Pairs whose orders agree or disagree, under the margin, or unreadable."""
    from rlaif.evaluate import plots

    consistency = {
        "consistent": sum(1 for r in labelled if r.get("position_consistent") is True),
        "inconsistent": sum(1 for r in labelled if r.get("position_consistent") is False),
        "low margin": len(low),
        "unreadable": len(unreadable),
    }
    caption = (
        "Pairs where both orders agree, disagree, fall under the margin, or could not be read."
    )
    if record.stats is None or record.stats.position_consistency_rate is None:
        # Never asked in both orders (pointwise, one order): no bar may suggest a measured 0.
        del consistency["consistent"], consistency["inconsistent"]
        caption = f"Pairs under the margin or unreadable; position consistency {NOT_MEASURED}."
    png = plots.count_bars(consistency, title="Position consistency and unreadable replies")
    return figure(png, caption)


def _principles_figure(records: list[dict]) -> list[str]:
    """Pairs per principle; none without pairs."""
    from rlaif.evaluate import plots

    principles = Counter(r.get("principle_id", "?") for r in records)
    if not principles:
        return []
    png = plots.count_bars(dict(sorted(principles.items())), title="Pairs per principle")
    return [figure(png, "Which principles of the constitution judged the pairs.")]


def _tokens_figure(record: RunRecord) -> list[str]:
    """Tokens read and written by role; none where run.json does not say."""
    from rlaif.evaluate import plots

    roles = (record.tokens.by_role if record.tokens else None) or {}
    if not roles:
        return []
    names, cost = list(roles), record.cost_per_label
    png = plots.stacked_bars(
        names,
        {
            "prompt": [roles[n].get("prompt", 0) for n in names],
            "completion": [roles[n].get("completion", 0) for n in names],
        },
        title="Tokens by role" + (f" (${cost:.6f} per label)" if cost else ""),
        ylabel="tokens",
    )
    return [figure(png, "Tokens the policy and the judge read and wrote in this run.")]


def _examples(prefs: list[dict], low: list[dict], unreadable: list[dict]) -> str:
    parts = ["<h2>Example pairs</h2>"]
    header = ["prompt", "chosen", "rejected", "p(chosen)", "consistent", "principle"]

    def rows(records: list[dict]) -> list[list[str]]:
        return [
            [
                _clip(_as_text(r.get("prompt"))),
                _clip(_as_text(r.get("chosen", r.get("response_a")))),
                _clip(_as_text(r.get("rejected", r.get("response_b")))),
                fmt(r.get("p_chosen"), False),
                _measured(r.get("position_consistent")),
                str(r.get("principle_id")),
            ]
            for r in records
        ]

    ranked = sorted(prefs + low, key=lambda r: r["p_chosen"])
    most = ranked[::-1][:3]
    groups = [
        ("Most confident", most),
        ("Least confident", [r for r in ranked if r not in most][:3]),
        ("Position-inconsistent", [r for r in ranked if r.get("position_consistent") is False][:3]),
        ("Unreadable (never counted as a win)", unreadable[:3]),
    ]
    for title, records in groups:
        if records:
            parts.append(f"<h3>{esc(title)}</h3>")
            parts.append(table(header, rows(records), text_cols=(0, 1, 2)))
    return "\n".join(parts)
