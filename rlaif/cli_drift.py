"""The drift check that ends ``rlaif train dpo`` and ``rlaif train grpo``: option and table."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

console = Console(stderr=True)

drift_option = click.option(
    "--drift-prompts",
    default=6,
    show_default=True,
    type=click.IntRange(min=0),
    help="After training, answer this many held-out prompts greedily with the starting and "
    "the trained model and compare (mean length, empty and looping answers, KL); warn when "
    "the policy did not move or degenerated. 0 skips the check.",
)


def run_drift_check(start: str, checkpoint: Path, prompts: int) -> dict | None:
    """Run the drift check (unless ``prompts`` is 0), print its table and any warning."""
    if not prompts:
        return None
    from rlaif.train.drift import drift_check

    console.print(f"drift check: {prompts} held-out prompts, greedy, starting vs trained model")
    report = drift_check(start, checkpoint, prompts=prompts)
    base, policy = report["base"], report["policy"]
    table = Table(title=f"drift on {report['prompts']} held-out prompts")
    table.add_column("")
    table.add_column("starting model", justify="right")
    table.add_column("trained", justify="right")
    table.add_row("mean words", f"{base['mean_words']:.1f}", f"{policy['mean_words']:.1f}")
    for key, label in (
        ("near_empty", "empty or near-empty"),
        ("looping", "stuck in a loop"),
        ("truncated", "cut at the token limit"),
    ):
        table.add_row(label, f"{base[key]:.0%}", f"{policy[key]:.0%}")
    table.add_row("answers changed", "", f"{report['changed']:.0%}")
    table.add_row("KL to start (nats/token)", "", f"{report['kl']['per_token']:.4f}")
    Console().print(table)
    if report["warning"]:
        console.print(f"[bold yellow]warning:[/] {report['warning']}")
    else:
        console.print("drift check: the policy moved and its answers are still answers")
    return report
