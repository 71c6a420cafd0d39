"""``rlaif eval agreement`` and ``rlaif report``: parse, call ``rlaif.evaluate``, print."""

from __future__ import annotations

import click
from rich.console import Console

from rlaif.evaluate.gold import FORMATS
from rlaif.evaluate.strategies import DEFAULT_STRATEGIES, STRATEGIES

MODEL_HELP = (
    "Model string: smollm2 (embedded default), llamacpp:PATH.gguf, openai:MODEL@BASE_URL, "
    "hf:DIR (a local checkpoint, e.g. from rlaif train, through transformers), gguf:DIR (the "
    "same checkpoint exported once to GGUF and run by llama.cpp: about 4x faster generation)."
)
console = Console(stderr=True)


@click.group("eval")
def eval_group() -> None:
    """Measure a judge against human labels."""


@eval_group.command("agreement")
@click.option("--gold", required=True, help="Human-labelled pairs (.json, .jsonl, optionally .gz).")
@click.option("--judge", default="smollm2", show_default=True, help=MODEL_HELP)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", *FORMATS]),
    default="auto",
    show_default=True,
    help="Gold format: trl {prompt, chosen, rejected}, llmbar {input, output_1, output_2, "
    "label}, pandalm (annotator1..3, 0 = tie), hh-rlhf transcripts; auto detects it.",
)
@click.option("--limit", default=None, type=click.IntRange(min=1), help="Use the first N pairs.")
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
@click.option(
    "--out", required=True, help="Directory for metrics.json, pairs.jsonl (and report.html)."
)
@click.option(
    "--constitution",
    default="default",
    show_default=True,
    help="Constitution file (YAML/JSON, rlaif or llm-swarm format) or 'default'.",
)
@click.option(
    "--seed", default=0, show_default=True, help="Seed of principles, A/B coin, bootstrap."
)
@click.option(
    "--samples",
    default=3,
    show_default=True,
    type=click.IntRange(min=1),
    help="self-consistency: rationales sampled per order.",
)
@click.option(
    "--principles",
    default=3,
    show_default=True,
    type=click.IntRange(min=1),
    help="ensemble: principles per pair.",
)
@click.option(
    "--cot-max-tokens",
    default=160,
    show_default=True,
    type=click.IntRange(min=1),
    help="Longest chain-of-thought rationale, in tokens.",
)
@click.option(
    "--bootstrap",
    "resamples",
    default=1000,
    show_default=True,
    type=click.IntRange(min=100),
    help="Bootstrap resamples per confidence interval.",
)
@click.option("--report", "with_report", is_flag=True, help="Also write DIR/report.html.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def agreement(
    gold,
    judge,
    fmt,
    limit,
    strategies,
    out,
    constitution,
    seed,
    samples,
    principles,
    cot_max_tokens,
    resamples,
    with_report,
    quiet,
):
    """Agreement of a judge with human labels, its biases and calibration, per strategy."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from rlaif.evaluate.agreement import AgreementConfig, run_agreement
    from rlaif.evaluate.strategies import StrategyOptions
    from rlaif.evaluate.table import LEGEND, markdown_table
    from rlaif.progress import make_progress

    if "all" in strategies:
        strategies = tuple(STRATEGIES)
    try:
        config = AgreementConfig(
            gold=gold,
            out=out,
            judge=judge,
            format=None if fmt == "auto" else fmt,
            strategies=tuple(strategies) or DEFAULT_STRATEGIES,
            limit=limit,
            seed=seed,
            constitution=constitution,
            options=StrategyOptions(
                samples=samples, principles=principles, cot_max_tokens=cot_max_tokens
            ),
            resamples=resamples,
        )
    except ValueError as e:
        raise click.UsageError(str(e)) from e
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


@click.command("report")
@click.argument("directory", type=click.Path(file_okay=False))
def report(directory):
    """Write DIRECTORY/report.html for an `rlaif eval agreement`, `rlaif run` or `rlaif loop`
    directory, or a checkpoint from `rlaif train` (its training curves)."""
    from rlaif.evaluate.report import write_report

    click.echo(str(write_report(directory)))
