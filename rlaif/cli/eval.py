"""``rlaif eval agreement``, ``eval winrate`` and ``rlaif report``: measure judges and policies."""

from __future__ import annotations

import click
from rich.console import Console

from rlaif.cli import options as opt
from rlaif.evaluate.gold import FORMATS
from rlaif.evaluate.strategies import DEFAULT_STRATEGIES, STRATEGIES
from rlaif.stats import pct

console = Console(stderr=True)


@click.group("eval")
def eval_group() -> None:
    """Measure a judge against human labels."""


AGREEMENT = opt.Settings("rlaif.evaluate.agreement", "AgreementConfig")
STRATEGY = opt.Settings("rlaif.evaluate.strategies", "StrategyOptions")


@eval_group.command("agreement")
@click.option("--gold", required=True, help="Human-labelled pairs (.json, .jsonl, optionally .gz).")
@opt.model("--judge", AGREEMENT)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", *FORMATS]),
    default="auto",
    show_default=True,
    help="Gold format: trl {prompt, chosen, rejected}, llmbar {input, output_1, output_2, "
    "label}, pandalm (annotator1..3, 0 = tie), hh-rlhf transcripts; auto detects it.",
)
@opt.limit(AGREEMENT, what="pairs")
@click.option(
    "--strategy",
    "strategies",
    multiple=True,
    type=click.Choice([*STRATEGIES, "all"]),
    help="Strategy to measure (repeat for several; 'all' for every one). Default: "
    + ", ".join(DEFAULT_STRATEGIES)
    + ". "
    + "; ".join(f"{k}: {v}" for k, v in STRATEGIES.items()),
)
@opt.out("Directory for metrics.json, pairs.jsonl (and report.html).")
@opt.constitution(AGREEMENT)
@opt.seed(AGREEMENT, help="Seed of principles, A/B coin, bootstrap.")
@STRATEGY.option(
    "samples", type=opt.AT_LEAST_1, help="self-consistency: rationales sampled per order."
)
@STRATEGY.option("principles", type=opt.AT_LEAST_1, help="ensemble: principles per pair.")
@STRATEGY.option(
    "cot_max_tokens", type=opt.AT_LEAST_1, help="Longest chain-of-thought rationale, in tokens."
)
@AGREEMENT.option(
    "resamples",
    "--bootstrap",
    type=click.IntRange(min=100),
    help="Bootstrap resamples per confidence interval.",
)
@click.option("--report", "with_report", is_flag=True, help="Also write DIR/report.html.")
@opt.quiet("No progress bar.")
def agreement(fmt, strategies, samples, principles, cot_max_tokens, with_report, quiet, **options):
    """Agreement of a judge with human labels, its biases and calibration, per strategy."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from rlaif.evaluate.agreement import run_agreement
    from rlaif.evaluate.table import LEGEND, markdown_table
    from rlaif.progress import make_progress

    if "all" in strategies:
        strategies = tuple(STRATEGIES)
    config = opt.settings_from(
        AGREEMENT,
        format=None if fmt == "auto" else fmt,
        strategies=tuple(strategies) or DEFAULT_STRATEGIES,
        options=opt.settings_from(
            STRATEGY, samples=samples, principles=principles, cot_max_tokens=cot_max_tokens
        ),
        **options,
    )
    progress = make_progress(
        TextColumn("{task.description:<17}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
    )
    tasks: dict[str, int] = {}

    def on_progress(done: int, total: int) -> None:
        if not tasks:
            progress.start()  # only once labelling starts: an input error prints one line
            label = (
                f"{len(config.strategies)} strateg{'ies' if len(config.strategies) > 1 else 'y'}"
            )
            tasks["pairs"] = progress.add_task(label, total=total)
        progress.update(tasks["pairs"], completed=done)

    try:
        metrics = run_agreement(config, on_progress=on_progress)
    finally:
        if tasks:
            progress.stop()
    click.echo(markdown_table(metrics))
    click.echo(f"\n{LEGEND}\n")
    if with_report:
        from rlaif.evaluate.report import write_report

        click.echo(f"report: {write_report(config.out)}")
    click.echo(f"wrote {config.out}/metrics.json and {config.out}/pairs.jsonl")


WINRATE = opt.Settings("rlaif.evaluate.winrate", "WinrateConfig")


@eval_group.command("winrate")
@opt.model("--policy", prefix="The model under test. ", required=True)
@opt.model(
    "--baseline",
    WINRATE,
    prefix="The model it plays. Default: the model the policy was trained from (its "
    "train.json), through the same backend and decoding; smollm2 for a policy rlaif did not "
    "train. ",
)
@WINRATE.option(
    "prompts",
    help="Held-out prompts file (.jsonl, .json, .csv, .txt); default: the 24 held-out prompts "
    "shipped with rlaif, minus any the models were trained on. A file that overlaps the "
    "training prompts is refused.",
)
@click.option(
    "--allow-overlap",
    is_flag=True,
    help="Evaluate on --prompts even when some are in the policy's or baseline's training data.",
)
@opt.model("--judge", WINRATE)
@opt.constitution(WINRATE, why="a principle is sampled per comparison")
@opt.limit(WINRATE)
@opt.out("Directory for metrics.json, pairs.jsonl and the store; rerun to resume.")
@WINRATE.option("max_tokens", type=opt.AT_LEAST_1, help="Longest answer, in tokens.")
@WINRATE.option(
    "temperature", type=opt.NOT_NEGATIVE, help="Answer sampling temperature (0: greedy)."
)
@WINRATE.option(
    "tie_margin",
    type=opt.MARGIN,
    help="Labels with |p - 0.5| <= this are ties (0: only exactly 0.5, e.g. identical answers).",
)
@opt.seed(WINRATE, help="Seed of sampling, principles, bootstrap.")
@WINRATE.option(
    "resamples",
    "--bootstrap",
    type=opt.AT_LEAST_1,
    help="Bootstrap resamples of the 95% interval.",
)
@opt.quiet()
def winrate(quiet, **options):
    """Win rate of --policy against --baseline on held-out prompts, judged in both orders."""
    from rlaif.evaluate.winrate import run_winrate_with_progress

    config = opt.settings_from(WINRATE, **options)
    metrics = run_winrate_with_progress(config, show_progress=not quiet)
    click.echo(winrate_summary(metrics))
    click.echo(f"wrote {config.out}/metrics.json and {config.out}/pairs.jsonl")


def winrate_summary(m: dict) -> str:
    """Two lines: the win rate with its interval, and the counts behind it."""

    ci = m["win_rate_ci"]
    ci_text = "-" if ci is None else f"[{pct(ci[0])}, {pct(ci[1])}]"
    return (
        f"{m['policy']} vs {m['baseline']} (judge {m['judge']}): win rate {pct(m['win_rate'])} "
        f"95% CI {ci_text} over n={m['n']}; soft win rate {pct(m['soft_win_rate'])}\n"
        f"wins {m['wins']}, losses {m['losses']}, ties {m['ties']} (identical answers "
        f"{m['identical']}), unreadable {m['unreadable']}; model calls {m['model_calls']}, "
        f"from store {m['cached_calls']}\n"
        f"prompts: {m['prompts']} from {m['prompts_file']}{_overlap_note(m)}"
        f"{_guards_note(m)}"
    )


def _guards_note(m: dict) -> str:
    """A line of the guards against a win bought by degenerate answers (mean words, empty,
    looping), policy then baseline; empty for metrics written before guards existed."""
    g = m.get("guards")
    if not g or not g["policy"].get("n"):
        return ""
    p, b = g["policy"], g["baseline"]
    return (
        f"\nguards (policy / baseline): mean words {p['mean_words']:.1f} / "
        f"{b['mean_words']:.1f}, empty or near-empty {p['near_empty']:.0%} / "
        f"{b['near_empty']:.0%}, looping {p['looping']:.0%} / {b['looping']:.0%}"
        + _truncated_note(p, b)
    )


def _truncated_note(p: dict, b: dict) -> str:
    """ ", cut at --max-tokens x% / y%" when the metrics carry it (older ones do not)."""
    if "truncated" not in p or "truncated" not in b:
        return ""
    return f", cut at --max-tokens {p['truncated']:.0%} / {b['truncated']:.0%}"


def _overlap_note(m: dict) -> str:
    sel = m.get("prompt_selection") or {}
    if not sel.get("training_prompts_known", True):
        return " (the policy's training prompts are unknown: overlap not checked)"
    if sel.get("overlap_ids"):
        verb = "left out" if sel.get("default_heldout_set") else "allowed by --allow-overlap"
        return f"; {len(sel['overlap_ids'])} seen in training {verb}"
    return ""


@click.command("report")
@click.argument("directory", type=click.Path(file_okay=False))
def report(directory):
    """Write DIRECTORY/report.html for an `rlaif eval agreement`, `rlaif run` or `rlaif loop`
    directory, or a checkpoint from `rlaif train` (its training curves)."""
    from rlaif.evaluate.report import write_report

    click.echo(str(write_report(directory)))
