"""``rlaif report DIR``: one self-contained HTML file (figures embedded as base64 PNGs).

An evaluation directory (``metrics.json``, from ``rlaif eval agreement``) gets the strategies
table, agreement with CI error bars, position bias, reliability, confidence, length bias and
cost. A run directory (``run.json``, from ``rlaif run``) gets its confidence distribution,
position consistency, principles, tokens and cost, and example pairs. A loop directory
(``loop.json``, from ``rlaif loop``) gets the win rate per round and each round's DPO curves; a
checkpoint directory (``train.json``, from ``rlaif train``) gets its training curves, summary
numbers, settings and, where present, ``drift.json`` (:mod:`rlaif.evaluate.train_report`).
"""

from __future__ import annotations

from pathlib import Path

from rlaif.errors import InputError
from rlaif.evaluate.agreement import METRICS_FILE, load_eval_dir
from rlaif.evaluate.htmlparts import CSS, esc, figure, meta, pct, table
from rlaif.evaluate.run_report import run_body
from rlaif.evaluate.significance import ALPHA
from rlaif.evaluate.table import COLUMNS, LEGEND, best_strategies, cell, fmt
from rlaif.evaluate.train_report import LOOP_FILE, TRAIN_FILE, loop_body, train_body
from rlaif.fileio import write_atomic

REPORT_FILE = "report.html"


def write_report(directory: str | Path) -> Path:
    """Write ``DIR/report.html`` for an evaluation, run, loop or checkpoint directory; returns
    its path."""
    d = Path(directory)
    if not d.is_dir():
        raise InputError(
            f"{d}: no such directory; pass an `rlaif eval agreement`, `rlaif run`, `rlaif loop` "
            "or `rlaif train` (checkpoint) directory"
        )
    if (d / METRICS_FILE).exists():
        body = _eval_body(d)
        title = "rlaif: judge agreement with human labels"
    elif (d / "run.json").exists():
        body = run_body(d)
        title = "rlaif run report"
    elif (d / LOOP_FILE).exists():
        body = loop_body(d, LOOP_FILE)
        title = "rlaif loop report"
    elif (d / TRAIN_FILE).exists():
        body = train_body(d)
        title = "rlaif training report"
    else:
        raise InputError(
            f"{d}: neither an evaluation directory (metrics.json, from `rlaif eval agreement`), "
            "a finished run (run.json, from `rlaif run`), a loop directory (loop.json, from "
            "`rlaif loop`) nor a trained checkpoint (train.json, from "
            "`rlaif train dpo|reward|grpo`)"
        )
    page = (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>\n"
        f"<h1>{esc(title)}</h1>\n<p>{esc(str(d))}</p>\n{body}\n</body></html>\n"
    )
    path = d / REPORT_FILE
    write_atomic(path, page)
    return path


# -- evaluation directory -------------------------------------------------------------------------
def _eval_body(d: Path) -> str:
    metrics, info, records = load_eval_dir(d)
    if not metrics:
        raise InputError(f"{d}: metrics.json holds no strategy")
    names = list(metrics)
    entries = [metrics[n] for n in names]
    return "\n".join(
        [
            meta(_eval_setup_rows(info, entries[0])),
            f'<p class="note">{esc(verdict(metrics))}</p>',
            "<h2>Strategies side by side</h2>",
            _strategy_table(metrics),
            f"<p>{esc(LEGEND)}</p>",
            "<h2>Figures</h2>",
            _agreement_figure(names, entries),
            _bias_and_reliability_figures(names, entries),
            _confidence_figure(names, records),
            _length_figure(names, entries),
            _tokens_figure(names, entries),
            _details(metrics),
        ]
    )


def _eval_setup_rows(info: dict, first: dict) -> list[tuple[str, object]]:
    """What the evaluation was: gold file, judge, pairs, constitution, seed, intervals."""
    return [
        ("gold file", info.get("gold", "?")),
        ("format", info.get("format", "?")),
        ("judge", info.get("judge", "?")),
        ("pairs", info.get("pairs", first.get("n"))),
        ("left out of the gold file", info.get("skipped") or "none"),
        ("human ties (not scored)", first.get("human_ties")),
        ("constitution", (info.get("constitution") or {}).get("source", "?")),
        ("seed", info.get("seed", "?")),
        ("confidence intervals", _bootstrap_text(info.get("bootstrap") or {})),
    ]


def _interval_figure(names: list[str], entries: list[dict], key: str, caption: str, **kw) -> str:
    """Each strategy's ``key`` with its 95% interval (``key_ci``) as horizontal bars."""
    from rlaif.evaluate import plots

    values = [e.get(key) for e in entries]
    intervals = [e.get(f"{key}_ci") for e in entries]
    return figure(plots.interval_bars(names, values, intervals, **kw), caption)


def _agreement_figure(names: list[str], entries: list[dict]) -> str:
    """Agreement with the humans by strategy, against chance and the annotators' own."""
    annot = entries[0].get("annotators") or {}
    chance = entries[0].get("chance") or {}
    human_line = None
    if annot.get("human_agreement") is not None:
        human_line = (annot["human_agreement"], "annotators with each other")
    return _interval_figure(
        names,
        entries,
        "agreement",
        "Agreement by strategy; the dashed line is chance, the agreement of the best "
        "constant answer on these pairs. Which strategy is better is decided by the paired "
        "tests below, not by whether these intervals overlap.",
        title="Agreement with the human label (95% CI)",
        xlabel="agreement",
        reference=chance.get("agreement"),
        reference_label=f"chance: always {str(chance.get('answer', '?')).upper()}",
        extra_line=human_line,
    )


def _bias_and_reliability_figures(names: list[str], entries: list[dict]) -> str:
    """Position bias by strategy, and the reliability diagram of the soft labels."""
    from rlaif.evaluate import plots

    bias = figure(
        plots.position_bias(names, entries),
        "Position bias: how often the judge answers with whatever is shown first, how often "
        "it keeps its preference when the order is swapped, and how often the final label is "
        "A (dotted: how often the humans said A).",
    )
    reliability = figure(
        plots.reliability(names, [e.get("reliability") or [] for e in entries]),
        "Reliability diagram of the soft labels (ECE in the table).",
    )
    return bias + "\n" + reliability


def _confidence_figure(names: list[str], records: list[dict]) -> str:
    """How far from a coin each strategy's labels are."""
    from rlaif.evaluate import plots

    by_strategy: dict[str, list[float]] = {n: [] for n in names}
    for r in records:
        if r.get("p_a") is not None and r["strategy"] in by_strategy:
            by_strategy[r["strategy"]].append(abs(r["p_a"] - 0.5))
    return figure(
        plots.histograms(
            by_strategy,
            title="Confidence |p - 0.5| of the labels",
            xlabel="|p(A better) - 0.5|",
            low=0.0,
            high=0.5,
        ),
        "How far from a coin the labels are (0: undecided, 0.5: certain).",
    )


def _length_figure(names: list[str], entries: list[dict]) -> str:
    """How often each strategy prefers the longer response, against the humans."""
    return _interval_figure(
        names,
        entries,
        "judge_prefers_longer",
        "Length bias; the red mark on each bar is how often the humans preferred the longer "
        "response on the same pairs (those the humans and the judge both decided).",
        title="Length bias: how often the longer response is preferred",
        xlabel="share preferring the longer response",
        reference=None,
        marks=[e.get("human_prefers_longer") for e in entries],
        marks_label="humans, same pairs",
    )


def _tokens_figure(names: list[str], entries: list[dict]) -> str:
    """Tokens per label by strategy, and what a label costs where it costs anything."""
    from rlaif.evaluate import plots

    cost = [e.get("cost_per_label") or 0.0 for e in entries]
    cost_note = (
        ""
        if not any(cost)
        else " (cost per label: "
        + ", ".join(f"{n} ${c:.6f}" for n, c in zip(names, cost, strict=True))
        + ")"
    )
    return figure(
        plots.stacked_bars(
            names,
            {
                "prompt tokens": [e.get("prompt_tokens_per_label") for e in entries],
                "generated tokens": [e.get("completion_tokens_per_label") for e in entries],
            },
            title="Tokens per label",
            ylabel="tokens",
        ),
        "What a label costs: tokens the judge reads and writes per pair" + cost_note + ".",
    )


def _bootstrap_text(boot: dict) -> str:
    if not boot:
        return "?"
    return (
        f"{100 * boot.get('level', 0.95):.0f}% percentile bootstrap over prompts (pairs of one "
        f"prompt resampled together), {boot.get('resamples')} resamples, seed {boot.get('seed')}"
    )


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def verdict(metrics: dict[str, dict]) -> str:
    """One honest sentence about the best agreement, decided by the paired tests: against the
    best constant answer (chance) and against every other strategy, Holm-adjusted."""
    scored = {n: e for n, e in metrics.items() if e.get("agreement") is not None}
    if not scored:
        return "No pair with a human preference was scored."
    name, best = max(scored.items(), key=lambda kv: kv[1]["agreement"])
    ci = best.get("agreement_ci") or [None, None]
    text = f"Highest agreement: {name} {pct(best['agreement'])} [{pct(ci[0])}, {pct(ci[1])}]."
    chance, vs = best.get("chance") or {}, best.get("vs_chance")
    if chance.get("agreement") is not None:
        text += (
            f" Chance here is {pct(chance['agreement'])}, what always answering "
            f"{str(chance['answer']).upper()} agrees on these pairs;"
        )
        if vs is None or vs["p_holm"] >= ALPHA or vs["difference"] <= 0:
            held = "" if vs is None else f" (paired sign test, Holm-adjusted {_p(vs['p_holm'])})"
            text += (
                f" {name} is not distinguishable from it{held}: on these pairs the judge does "
                "no better than ignoring the responses. Use a more capable judge before "
                "labelling real data."
            )
        else:
            text += (
                f" {name} beats it by {_signed(vs)} (paired sign test, Holm-adjusted "
                f"{_p(vs['p_holm'])})."
            )
    others = best.get("comparisons") or {}
    undecided = [
        n
        for n, c in others.items()
        if n in scored and (c is None or c["p_holm"] >= ALPHA or c["difference"] <= 0)
    ]
    if undecided:
        text += (
            f" Paired with it on the same pairs, {', '.join(undecided)} "
            f"{'is' if len(undecided) == 1 else 'are'} not distinguishable (Holm-adjusted "
            f"p >= {ALPHA}): the data do not single out a best strategy."
        )
    elif others:
        text += (
            " It is better than every other strategy on the same pairs (paired sign test, "
            f"Holm-adjusted p < {ALPHA})."
        )
    return text


def _strategy_table(metrics: dict[str, dict]) -> str:
    best = {col.key: best_strategies(metrics, col) for col in COLUMNS}
    head = "<th>strategy</th><th>n</th>" + "".join(f"<th>{esc(c.title)}</th>" for c in COLUMNS)
    rows = []
    for name, entry in metrics.items():
        cells = [f"<td>{esc(name)}</td><td>{esc(entry.get('n'))}</td>"]
        for col in COLUMNS:
            cls = ' class="best"' if name in best[col.key] else ""
            cells.append(f"<td{cls}>{esc(cell(entry, col))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _ci_text(value, ci) -> str:
    if value is None:
        return "-"
    return pct(value) + (f" [{pct(ci[0])}, {pct(ci[1])}]" if ci else "")


def _details(metrics: dict[str, dict]) -> str:
    parts = []
    first = next(iter(metrics.values()))
    annot = first.get("annotators")
    if annot:
        parts.append("<h2>Per-annotator data</h2>")
        rows = [
            [
                "annotators with each other",
                _ci_text(annot["human_agreement"], annot.get("human_agreement_ci")),
            ],
            ["annotators' Cohen's kappa (ties a category)", fmt(annot.get("human_kappa"), False)],
        ]
        for name, e in metrics.items():
            a = e.get("annotators") or {}
            rows.append(
                [
                    f"judge ({name}) with each annotator",
                    _ci_text(a.get("judge_agreement"), a.get("judge_agreement_ci")),
                ]
            )
        parts.append(table(["", "agreement (ties left out)"], rows))
    diffs = _paired_rows(metrics)
    if diffs:
        parts.append("<h2>Paired differences in agreement</h2>")
        parts.append(
            "<p>Agreement of one strategy minus the other's on the pairs both labelled, with "
            "a paired bootstrap interval over prompts; the p-value is an exact sign test over "
            "prompts (McNemar's exact test when each prompt has one pair), Holm-adjusted over "
            "all the rows. Chance is the best constant answer.</p>"
        )
        parts.append(
            table(
                [
                    "strategy",
                    "compared with",
                    "difference [95% CI]",
                    "prompts better / worse",
                    "p",
                    "Holm p",
                    f"different at {ALPHA}",
                ],
                diffs,
            )
        )
    for key, title in (("by_principle", "principle"), ("by_category", "category")):
        parts.append(_breakdown(metrics, key, title))
    return "\n".join(parts)


def _paired_rows(metrics: dict[str, dict]) -> list[list[str]]:
    """One row per test of the family: each strategy against chance, then each pair once."""
    rows, seen = [], set()
    for name, e in metrics.items():
        tests = [("chance", e.get("vs_chance"))] + list((e.get("comparisons") or {}).items())
        for other, c in tests:
            if c is None or frozenset((name, other)) in seen:
                continue
            seen.add(frozenset((name, other)))
            if other == "chance":
                other = f"chance (always {str((e.get('chance') or {}).get('answer')).upper()})"
            rows.append(
                [
                    name,
                    other,
                    _signed(c),
                    f"{c['x_better']} / {c['y_better']}",
                    f"{c['p_value']:.3g}",
                    f"{c['p_holm']:.3g}",
                    "yes" if c["p_holm"] < ALPHA else "no",
                ]
            )
    return rows


def _breakdown(metrics: dict[str, dict], key: str, title: str) -> str:
    """Agreement per principle or category: one row per value, one column per strategy."""
    names = [n for n, e in metrics.items() if e.get(key)]
    values = sorted({v for n in names for v in metrics[n][key]})
    if not values:
        return ""
    rows = []
    for value in values:
        row = [value]
        for n in names:
            g = metrics[n][key].get(value)
            row.append(
                ""
                if g is None
                else f"{_ci_text(g['agreement'], g.get('agreement_ci'))} (n={g['n']})"
            )
        rows.append(row)
    body = table([title, *names], rows)
    if len(rows) > 12:
        body = f"<details><summary>{len(rows)} values (show)</summary>{body}</details>"
    return f"<h2>Agreement by {esc(title)}</h2>\n{body}"


def _signed(d: dict) -> str:
    ci = d.get("difference_ci")
    text = f"{100 * d['difference']:+.1f} points"
    if ci:
        text += f" [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]"
    return text
