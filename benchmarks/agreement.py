"""Agreement of the embedded judge with human labels, every strategy, every shared gold set.

For each preference set in ``../shared/data/preferences/`` (skipped with a message when the
folder is absent) this runs ``rlaif eval agreement`` on the first ``--limit`` pairs with the
strategies that generate nothing (one order, both orders, pointwise, the generated verdict
and the ensemble over principles), and on the first ``--cot-limit`` pairs with the
chain-of-thought strategies, which generate a rationale per order and cost far more. The
chain-of-thought run measures ``both-orders`` again on its own pairs, so its paired
differences compare like with like. Each set gets a markdown table: strategies as rows,
metrics as columns with 95% bootstrap intervals, the best per column in bold.

Expect numbers near chance for a 135M judge. Nothing here is tuned to the human labels: the
strategies, templates and constitution are the library's defaults.

    .venv/bin/python benchmarks/agreement.py --limit 100 --cot-limit 20 --out /tmp/agreement.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rlaif.evaluate.agreement import AgreementConfig, run_agreement
from rlaif.evaluate.strategies import StrategyOptions
from rlaif.evaluate.table import LEGEND, markdown_table

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
PREFERENCES = SHARED / "data" / "preferences"
CHEAP = ("one-order", "both-orders", "pointwise", "verdict", "ensemble")
COT = ("both-orders", "cot", "cot-clamp", "self-consistency")


def gold_sets(folder: Path) -> list[Path]:
    """The gold files of the shared folder, in name order."""
    return sorted(p for p in folder.iterdir() if p.name.endswith((".json", ".jsonl", ".gz")))


def paired_lines(metrics: dict[str, dict]) -> list[str]:
    """One line per strategy: its agreement minus both-orders' on the same pairs."""
    lines = []
    for name, entry in metrics.items():
        diff = (entry.get("comparisons") or {}).get("both-orders")
        if diff and diff.get("difference_ci"):
            low, high = diff["difference_ci"]
            lines.append(
                f"- {name} - both-orders: {100 * diff['difference']:+.1f} points "
                f"[{100 * low:+.1f}, {100 * high:+.1f}] on {diff['n']} pairs "
                f"(Holm-adjusted p = {diff['p_holm']:.3g})"
            )
    return lines


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _printer(name: str):
    """A progress callback that prints every 10 pairs."""

    def on_progress(done: int, total: int) -> None:
        if done % 10 == 0 or done == total:
            print(f"  {name}: {done}/{total} pairs", flush=True)

    return on_progress


def measure(gold: Path, args: argparse.Namespace) -> str:
    """The markdown section of one gold set."""
    sections = [f"## {gold.name}\n"]
    runs = [("cheap", CHEAP, args.limit)] if args.limit > 0 else []
    if args.cot_limit > 0:
        runs.append(("cot", COT, args.cot_limit))
    combined: dict[str, dict] = {}
    notes = []
    for label, strategies, limit in runs:
        strategies = tuple(s for s in strategies if s in args.strategies)
        if not strategies:
            continue
        started = time.time()
        metrics = run_agreement(
            AgreementConfig(
                gold=str(gold),
                out=args.work / gold.name.split(".")[0] / label,
                judge=args.judge,
                strategies=strategies,
                limit=limit,
                options=StrategyOptions(samples=args.samples, principles=args.principles),
            ),
            on_progress=_printer(f"{gold.name} {label}"),
        )
        seconds = time.time() - started
        print(f"{gold.name} {label}: {len(strategies)} strategies, {seconds:.0f} s", flush=True)
        first = next(iter(metrics.values()))
        notes.append(
            f"{label} run: {first['n']} pairs ({first['human_ties']} human ties), "
            f"{seconds / 60:.1f} min in this invocation (calls in the store are not repeated); "
            f"the humans chose A in {_pct(first['human_a_rate'])} and the longer response in "
            f"{_pct(first['human_prefers_longer'])}"
        )
        for name, entry in metrics.items():
            key = name if name not in combined else f"{name} ({label} pairs)"
            combined[key] = entry
        diffs = paired_lines(metrics)
        if diffs:
            notes.append(f"paired differences, {label} run:\n" + "\n".join(diffs))
    sections.append(markdown_table(combined))
    sections.append("\n" + "\n\n".join(notes) + "\n")
    return "\n".join(sections)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print (and optionally write) the markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--limit", type=int, default=100, help="pairs per set (default 100; 0 skips them)"
    )
    parser.add_argument(
        "--cot-limit",
        type=int,
        default=20,
        help="pairs per set for the chain-of-thought strategies (default 20; 0 skips them)",
    )
    parser.add_argument("--judge", default="smollm2", help="judge model string")
    parser.add_argument(
        "--sets", nargs="*", default=None, help="file names in the shared folder (default: all)"
    )
    parser.add_argument(
        "--strategies",
        nargs="*",
        default=list(dict.fromkeys(CHEAP + COT)),
        help="strategies to measure (default: all)",
    )
    parser.add_argument("--samples", type=int, default=3, help="self-consistency samples")
    parser.add_argument("--principles", type=int, default=3, help="ensemble principles")
    parser.add_argument(
        "--work",
        type=Path,
        default=Path("runs/bench-agreement"),
        help="evaluation directories (their stores make a rerun free)",
    )
    parser.add_argument("--out", type=Path, help="also write the markdown to this file")
    args = parser.parse_args(argv)
    if not PREFERENCES.is_dir():
        print(f"skipped: no shared gold data at {PREFERENCES}", file=sys.stderr)
        return 0
    sets = gold_sets(PREFERENCES)
    if args.sets:
        sets = [p for p in sets if p.name in args.sets]
    header = (
        f"# Judge agreement with human labels: {args.judge}\n\n"
        + "; ".join(
            f"{what}: first {n} pairs of each set"
            for what, n in (
                ("strategies without a rationale", args.limit),
                ("chain of thought", args.cot_limit),
            )
            if n > 0
        )
        + f".\n\n{LEGEND}\n"
    )
    parts = [header]
    text = header
    for gold in sets:
        parts.append(measure(gold, args))
        text = "\n".join(parts)
        if args.out:
            args.out.write_text(text + "\n")  # after every set: a long run shows progress
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
