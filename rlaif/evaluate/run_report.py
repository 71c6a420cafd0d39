"""The report of a run directory from ``rlaif run``: confidence, consistency, cost, examples."""

from __future__ import annotations

import json
from pathlib import Path

from rlaif.errors import InputError
from rlaif.evaluate.htmlparts import esc, figure, meta, pct, table
from rlaif.evaluate.table import NOT_MEASURED, fmt
from rlaif.stats import no_signal_warning
from rlaif.synth import truncation_summary


def _measured(value: float | bool | None) -> str:
    """A rate as a percentage, a flag as text; ``n/a`` where it was not measured (None)."""
    if value is None:
        return NOT_MEASURED
    return str(value) if isinstance(value, bool) else pct(value)


def _source_split(sources: dict | None) -> str:
    """Labels decided by a rule (a check, a rule judge) / by the AI judge; "-" before checks."""
    if not sources:
        return "-"
    return f"{sources.get('rule', 0)} / {sources.get('ai', 0)}"


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
    from rlaif.evaluate import plots

    try:
        info = json.loads((d / "run.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"{d}/run.json: cannot read ({e})") from e
    prefs = _read_jsonl(d / "preferences.jsonl")
    low = _read_jsonl(d / "low_margin.jsonl")
    unreadable = _read_jsonl(d / "unreadable.jsonl")
    labelled = prefs + low
    config = info.get("config", {})
    stats = info.get("stats", {})
    cost = info.get("cost_per_label")
    warnings = info.get("warnings")
    if warnings is None:  # a run directory written before run.json listed warnings
        warning = no_signal_warning(labelled, config.get("min_margin") or 0.0)
        warnings = [warning] if warning else []
    parts = [
        *(f'<p class="note">warning: {esc(w)}</p>' for w in warnings),
        meta(
            [
                ("judge", config.get("judge", "?")),
                ("policy", config.get("policy", "?")),
                (
                    "mode",
                    f"{config.get('mode', '?')}"
                    + (" + chain of thought" if config.get("cot") else ""),
                ),
                ("constitution", (info.get("constitution") or {}).get("source", "?")),
                ("prompts", info.get("prompts_file", "?")),
                ("pairs labelled", info.get("labels", len(labelled) + len(unreadable))),
                (
                    "preferences / low margin / unreadable",
                    f"{len(prefs)} / {len(low)} / {len(unreadable)}",
                ),
                ("cut off at max tokens", truncation_summary(info.get("truncated"))),
                ("position consistency", _measured(stats.get("position_consistency_rate"))),
                ("mean |p - 0.5|", fmt(stats.get("mean_margin"), False)),
                ("decided by rule / AI", _source_split(stats.get("label_source"))),
                (
                    "model calls / from store",
                    f"{info.get('model_calls', '?')} / {info.get('cached_calls', '?')}",
                ),
                ("tokens", f"{(info.get('tokens') or {}).get('total', 0):,}"),
                ("cost per label", "-" if cost is None else f"${cost:.6f}"),
                ("time", f"{(info.get('timings_s') or {}).get('total', 0):.1f} s"),
            ]
        ),
        "<h2>Figures</h2>",
    ]
    by_type: dict[str, list[float]] = {}
    for r in labelled:
        by_type.setdefault(r.get("pair_type", "pairs"), []).append(r["p_chosen"])
    parts.append(
        figure(
            plots.histograms(
                by_type,
                title="Confidence: p(chosen better)",
                xlabel="p(chosen better)",
                low=0.5,
                high=1.0,
            ),
            "Distribution of the soft labels by pair type (0.5: a coin; 1: certain).",
        )
    )
    with_orders = [
        r
        for r in labelled
        if r.get("p_chosen_shown_first") is not None and r.get("p_chosen_shown_second") is not None
    ]
    if with_orders:
        parts.append(
            figure(
                plots.order_scatter(
                    [r["p_chosen_shown_first"] for r in with_orders],
                    [r["p_chosen_shown_second"] for r in with_orders],
                    title="Each pair in both orders",
                ),
                "Above the diagonal: the chosen response does better when shown first. Points "
                "left of 0.5 flipped with the order (position-inconsistent).",
            )
        )
    consistency = {
        "consistent": sum(1 for r in labelled if r.get("position_consistent") is True),
        "inconsistent": sum(1 for r in labelled if r.get("position_consistent") is False),
        "low margin": len(low),
        "unreadable": len(unreadable),
    }
    caption = (
        "Pairs where both orders agree, disagree, fall under the margin, or could not be read."
    )
    if stats.get("position_consistency_rate") is None:
        # Never asked in both orders (pointwise, one order): no bar may suggest a measured 0.
        del consistency["consistent"], consistency["inconsistent"]
        caption = f"Pairs under the margin or unreadable; position consistency {NOT_MEASURED}."
    parts.append(
        figure(
            plots.count_bars(consistency, title="Position consistency and unreadable replies"),
            caption,
        )
    )
    principles: dict[str, int] = {}
    for r in labelled + unreadable:
        principles[r.get("principle_id", "?")] = principles.get(r.get("principle_id", "?"), 0) + 1
    if principles:
        parts.append(
            figure(
                plots.count_bars(dict(sorted(principles.items())), title="Pairs per principle"),
                "Which principles of the constitution judged the pairs.",
            )
        )
    roles = (info.get("tokens") or {}).get("by_role") or {}
    if roles:
        names = list(roles)
        parts.append(
            figure(
                plots.stacked_bars(
                    names,
                    {
                        "prompt": [roles[n].get("prompt", 0) for n in names],
                        "completion": [roles[n].get("completion", 0) for n in names],
                    },
                    title="Tokens by role" + (f" (${cost:.6f} per label)" if cost else ""),
                    ylabel="tokens",
                ),
                "Tokens the policy and the judge read and wrote in this run.",
            )
        )
    parts.append(_examples(prefs, low, unreadable))
    return "\n".join(parts)


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
