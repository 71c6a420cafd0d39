"""``rlaif run``, the main job, with its summary table and its dry-run estimate."""

from __future__ import annotations

import click
from rich.console import Console

from rlaif.cli import options as opt

RUN = opt.Settings("rlaif.pipeline.config", "RunConfig")


@click.command()
@RUN.option(
    "prompts",
    help="Prompts file (.jsonl, .json, .csv, .txt); default: the built-in set of 32 prompts.",
)
@opt.model("--policy", RUN, prefix="Model that answers. ")
@opt.model("--judge", RUN, prefix="Model that judges. ", rules=True)
@opt.constitution(RUN)
@opt.out(
    "Run directory (default: a new folder under runs/). Rerun with the same --out to resume.",
    required=False,
)
@opt.n_responses(RUN, "Responses sampled per prompt.")
@opt.revisions(RUN, "0: none")
@RUN.option(
    "pairs",
    type=click.Choice(["all", "best-worst"]),
    help="all: every pair of responses; best-worst: score each "
    "response pointwise and compare only the best with the worst.",
)
@RUN.option("mode", type=opt.MODES, help="How the judge labels a pair.")
@click.option("--cot", is_flag=True, help="Judge with chain of thought before the verdict.")
@RUN.option(
    "min_margin", type=opt.MARGIN, help="Pairs with |p - 0.5| below this go to low_margin.jsonl."
)
@click.option(
    "--text-format",
    is_flag=True,
    help="Write text prompts and their responses as bare strings (for base models without a "
    "chat template). Default: TRL's conversational form, so training applies the chat template.",
)
@opt.limit(RUN)
@opt.seed(RUN, help="Seed of sampling and principle draws.")
@RUN.option("temperature", type=float, help="Policy sampling temperature.")
@RUN.option(
    "max_tokens", type=opt.AT_LEAST_1, help="Longest policy response or revision, in tokens."
)
@RUN.option(
    "price_in", type=opt.NOT_NEGATIVE, help="Dollars per million input tokens (0 for local models)."
)
@RUN.option("price_out", type=opt.NOT_NEGATIVE, help="Dollars per million output tokens.")
@RUN.option(
    "price_file",
    help="YAML/JSON: model string (or bare openai model name) -> {input: N, output: N}, "
    "dollars per million tokens; overrides --price-in/--price-out for the models it names.",
)
@RUN.option(
    "max_cost",
    type=opt.NOT_NEGATIVE,
    help="Dollars the run may spend in all; it stops cleanly before a call could pass this, "
    "and the same command with a higher --max-cost continues.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Estimate calls, tokens and dollars (upper bounds) without calling any model.",
)
@RUN.option(
    "concurrency",
    type=opt.AT_LEAST_1,
    help="Calls in flight at once to models behind a server [default: 8 when every model of a "
    "stage is an openai: server]. In-process llama.cpp models take one call at a time. With "
    "--executor ray: the number of label workers [default: one per CPU of the cluster].",
)
@RUN.option(
    "batch_size",
    type=opt.AT_LEAST_1,
    help="Sequences an in-process llama.cpp model decodes at once while generating and "
    "revising (responses, critiques and rewrites of consecutive prompts). 1: one at a time. "
    "The outputs are byte-identical either way; only the speed differs. With --max-cost: 1.",
)
@RUN.option(
    "executor",
    type=click.Choice(["local", "ray"]),
    help="Where pairs are labelled: threads in this process, or Ray workers, each with its own "
    "judge (RAY_ADDRESS names a cluster; otherwise a local one starts; needs rlaif[ray]).",
)
@RUN.option("rpm", type=opt.ABOVE_0, help="Requests per minute to each server (default: no limit).")
@RUN.option(
    "tpm",
    type=opt.ABOVE_0,
    help="Tokens (prompt + completion) per minute to each server (default: no limit).",
)
@RUN.option(
    "timeout",
    type=opt.ABOVE_0,
    help="Seconds to wait for a server's reply before retrying the request.",
)
@RUN.option(
    "max_retries",
    type=opt.AT_LEAST_0,
    help="Retries of a request after 429, 5xx, a timeout, a dropped connection or a damaged "
    "reply (exponential backoff with jitter; Retry-After honoured). 400/401 stop at once.",
)
@opt.quiet()
def run(quiet, out, **options):
    """The main job: prompts in, AI-labelled preference and revision data out (resumable)."""
    import time as _time

    from rlaif.pipeline.job import run as do_run

    if out is None:
        out = f"runs/{_time.strftime('%Y%m%d-%H%M%S')}"
    config = opt.settings_from(RUN, out=out, **options)
    result = do_run(config, show_progress=not quiet)
    if config.dry_run:
        _print_estimate(result.out, result.info["estimate"])
        return
    _print_run_summary(result.out, result.info)


def _print_run_summary(out, info: dict) -> None:
    from rich.table import Table

    from rlaif.pipeline.record import RunRecord

    record = RunRecord.from_json(info, f"{out}/run.json")
    table = Table(title=f"rlaif run: {out}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for k, v in record.summary_rows():
        table.add_row(k, v)
    table.add_row("files", f"{out}/preferences.jsonl, sft.jsonl, run.json")
    Console().print(table)
    for warning in record.warnings or []:
        click.echo(f"warning: {warning}")


def _print_estimate(out, est: dict) -> None:
    from rich.table import Table

    click.echo(f"dry run for {out}: upper bounds; no model called, nothing written")
    table = Table()
    for name in ("stage", "model", "calls", "input tokens", "output tokens", "dollars"):
        table.add_column(name, justify="left" if name in ("stage", "model") else "right")
    for s in est["stages"]:
        table.add_row(
            s["stage"],
            s["model"],
            f"{s['calls']:,}",
            f"{s['input_tokens']:,}",
            f"{s['output_tokens']:,}",
            f"${s['cost']:.4f}",
        )
    table.add_row(
        "total",
        "",
        f"{est['calls']:,}",
        f"{est['input_tokens']:,}",
        f"{est['output_tokens']:,}",
        f"${est['cost']:.4f}",
    )
    Console().print(table)
    for model, how in est["tokenizers"].items():
        click.echo(f"tokens of {model} counted with {how}")
    if est["stored_calls"]:
        click.echo(
            f"{out}/store.sqlite already holds {est['stored_calls']} calls "
            f"(${est['stored_cost']:.4f}); they are answered free on resume"
        )
    click.echo(
        f"estimate: at most {est['calls']} calls, {est['input_tokens']} input tokens, "
        f"{est['output_tokens']} output tokens, ${est['cost']:.6f}"
    )
