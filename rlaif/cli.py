"""The ``rlaif`` command line: parse, call the library, print. No logic lives here."""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console

from rlaif.cli_doctor import doctor
from rlaif.cli_eval import eval_group, report
from rlaif.cli_review import export, review
from rlaif.cli_rl import grpo, loop, winrate
from rlaif.cli_train import train_group
from rlaif.errors import RlaifError

console = Console(stderr=True)

MODEL_HELP = (
    "Model string: smollm2 (embedded default), llamacpp:PATH.gguf, openai:MODEL@BASE_URL, "
    "hf:DIR (a local checkpoint, e.g. from rlaif train, through transformers), gguf:DIR (the "
    "same checkpoint exported once to GGUF and run by llama.cpp: about 4x faster generation)."
)

RULE_HELP = (
    "Or a programmatic judge: rule:max_words=N, rule:contains=TEXT, rule:json, ... or "
    "python:MODULE:FUNCTION (a TRL reward function)."
)


def _emit(obj: dict) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False))


def _judge_options(f):
    f = click.option("--seed", default=0, show_default=True, help="Seed of the principle draw.")(f)
    f = click.option(
        "--constitution",
        default="default",
        show_default=True,
        help="Constitution file (YAML/JSON, rlaif or llm-swarm format) or 'default'.",
    )(f)
    return f


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rlaif")
def cli() -> None:
    """rlaif: AI preference labels guided by a constitution, from prompts to training data."""


@cli.command()
@click.option("--judge", default="smollm2", show_default=True, help=MODEL_HELP + " " + RULE_HELP)
@click.option("--prompt", required=True, help="The user request both responses answer.")
@click.option("--a", "a", required=True, help="Response A.")
@click.option("--b", "b", required=True, help="Response B.")
@click.option(
    "--mode",
    type=click.Choice(["pairwise", "pointwise"]),
    default="pairwise",
    show_default=True,
    help="pairwise: ask 'A or B?' in both orders; pointwise: score each response alone.",
)
@click.option("--one-order", is_flag=True, help="Ask in the A-B order only (biased; for study).")
@click.option("--cot", is_flag=True, help="Chain of thought: a rationale first, then the verdict.")
@click.option("--clamp", is_flag=True, help="Clamp each order's probability to 40-60% (CAI paper).")
@_judge_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def compare(judge, prompt, a, b, mode, one_order, cot, clamp, constitution, seed, as_json):
    """Which of two responses is better: p(A better) from the judge's token probabilities."""
    from rlaif.backends import load_backend
    from rlaif.compare import CAI_CLAMP, Judge
    from rlaif.constitution import load_constitution
    from rlaif.rule_judge import RuleJudge
    from rlaif.rules import is_programmatic

    if is_programmatic(judge):  # a scoring function: sigmoid of the score difference
        j = RuleJudge(judge, load_constitution(constitution), seed=seed)
    else:
        j = Judge(
            load_backend(judge),
            load_constitution(constitution),
            seed=seed,
            mode=mode,
            both_orders=not one_order,
            cot=cot,
            clamp=CAI_CLAMP if clamp else None,
        )
    pref = j.compare(prompt, a, b)
    if as_json:
        _emit(pref.to_dict())
        return
    if pref.p_a is None:
        click.echo(f"unreadable judge reply (principle {pref.principle_id}); no preference")
        return
    winner = "A" if pref.p_a > 0.5 else "B" if pref.p_a < 0.5 else "tie"
    click.echo(f"p(A better) = {pref.p_a:.3f}  ->  {winner}")
    if pref.label_source == "rule":  # a scoring function decided: its scores, no order
        click.echo(f"  score of A: {pref.score_a:g}   of B: {pref.score_b:g}   judge: {pref.judge}")
        return
    if pref.mode == "pointwise":  # each response asked alone: no order, no position figure
        click.echo(f"  p(Yes) for A: {pref.p_yes_a:.3f}   for B: {pref.p_yes_b:.3f}")
    else:
        shown = [("A shown first", pref.p_a_order_ab), ("B shown first", pref.p_a_order_ba)]
        click.echo("   ".join(f"  {k}: {v:.3f}" for k, v in shown if v is not None))
    consistent = "n/a" if pref.position_consistent is None else pref.position_consistent
    click.echo(
        f"  position consistent: {consistent}   principle: {pref.principle_id}"
        f"   judge: {pref.judge}   method: {pref.method}   tokens: {pref.prompt_tokens}"
    )


@cli.command()
@click.option("--judge", default="smollm2", show_default=True, help=MODEL_HELP)
@click.option("--prompt", required=True, help="The user request.")
@click.option("--response", required=True, help="The response to critique.")
@_judge_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def critique(judge, prompt, response, constitution, seed, as_json):
    """Critique a response against one (seeded, sampled) principle of the constitution."""
    from rlaif.backends import load_backend
    from rlaif.constitution import load_constitution
    from rlaif.critique import critique as do_critique

    crit = do_critique(
        load_backend(judge), load_constitution(constitution), prompt, response, seed=seed
    )
    if as_json:
        _emit(crit.to_dict())
        return
    click.echo(f"principle: {crit.principle_id}\n")
    click.echo(crit.text)


@cli.command()
@click.option("--model", default="smollm2", show_default=True, help=MODEL_HELP)
@click.option("--critic", default=None, help="Model that critiques (default: --model).")
@click.option("--prompt", required=True, help="The user request.")
@click.option("--response", required=True, help="The response to improve.")
@click.option("--rounds", default=1, show_default=True, type=click.IntRange(min=1))
@_judge_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def revise(model, critic, prompt, response, rounds, constitution, seed, as_json):
    """Critique a response and rewrite it from the critique, for k rounds."""
    from rlaif.backends import load_backend
    from rlaif.constitution import load_constitution
    from rlaif.critique import revise as do_revise

    result = do_revise(
        load_backend(model),
        load_constitution(constitution),
        prompt,
        response,
        rounds=rounds,
        seed=seed,
        critic=load_backend(critic) if critic else None,
    )
    if as_json:
        _emit(result.to_dict())
        return
    for k, r in enumerate(result.rounds, start=1):
        click.echo(f"--- round {k} (principle {r.critique.principle_id})")
        click.echo(f"critique: {r.critique.text}\n")
        click.echo(f"revision: {r.revision}\n")


@cli.command()
@click.option("--model", default="smollm2", show_default=True, help=MODEL_HELP)
@click.option("--prompt", required=True, help="The user request.")
@click.option("-n", "n", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True)
@click.option("--temperature", default=0.8, show_default=True, type=float)
@click.option("--max-tokens", default=256, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def generate(model, prompt, n, seed, temperature, max_tokens, as_json):
    """Sample n responses from a policy model."""
    from rlaif.backends import load_backend
    from rlaif.generate import generate as do_generate

    texts = do_generate(
        load_backend(model), prompt, n, seed=seed, temperature=temperature, max_tokens=max_tokens
    )
    if as_json:
        _emit({"prompt": prompt, "model": model, "responses": texts})
        return
    for i, t in enumerate(texts, start=1):
        click.echo(f"--- response {i}\n{t}\n")


@cli.command()
@click.option(
    "--prompts",
    default=None,
    help="Prompts file (.jsonl, .json, .csv, .txt); default: the built-in set of 32 prompts.",
)
@click.option(
    "--policy", default="smollm2", show_default=True, help="Model that answers. " + MODEL_HELP
)
@click.option(
    "--judge",
    default="smollm2",
    show_default=True,
    help="Model that judges. " + MODEL_HELP + " " + RULE_HELP,
)
@click.option(
    "--constitution",
    default="default",
    show_default=True,
    help="Constitution file (YAML/JSON, rlaif or llm-swarm format) or 'default'.",
)
@click.option(
    "--out",
    default=None,
    help="Run directory (default: a new folder under runs/). Rerun with the same --out to resume.",
)
@click.option(
    "--n-responses",
    default=2,
    show_default=True,
    type=click.IntRange(min=1),
    help="Responses sampled per prompt.",
)
@click.option(
    "--revisions",
    "revision_rounds",
    default=1,
    show_default=True,
    type=click.IntRange(min=0),
    help="Critique-revise rounds per response (0: none).",
)
@click.option(
    "--pairs",
    type=click.Choice(["all", "best-worst"]),
    default="all",
    show_default=True,
    help="all: every pair of responses; best-worst: score each "
    "response pointwise and compare only the best with the worst.",
)
@click.option(
    "--mode",
    type=click.Choice(["pairwise", "pointwise"]),
    default="pairwise",
    show_default=True,
    help="How the judge labels a pair.",
)
@click.option("--cot", is_flag=True, help="Judge with chain of thought before the verdict.")
@click.option(
    "--min-margin",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 0.5, max_open=True),
    help="Pairs with |p - 0.5| below this go to low_margin.jsonl.",
)
@click.option(
    "--text-format",
    is_flag=True,
    help="Write text prompts and their responses as bare strings (for base models without a "
    "chat template). Default: TRL's conversational form, so training applies the chat template.",
)
@click.option("--limit", default=None, type=click.IntRange(min=1), help="Use the first N prompts.")
@click.option("--seed", default=0, show_default=True, help="Seed of sampling and principle draws.")
@click.option(
    "--temperature", default=0.8, show_default=True, type=float, help="Policy sampling temperature."
)
@click.option(
    "--max-tokens",
    default=128,
    show_default=True,
    type=click.IntRange(min=1),
    help="Longest policy response or revision, in tokens.",
)
@click.option(
    "--price-in",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Dollars per million input tokens (0 for local models).",
)
@click.option(
    "--price-out",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Dollars per million output tokens.",
)
@click.option(
    "--price-file",
    default=None,
    help="YAML/JSON: model string (or bare openai model name) -> {input: N, output: N}, "
    "dollars per million tokens; overrides --price-in/--price-out for the models it names.",
)
@click.option(
    "--max-cost",
    default=None,
    type=click.FloatRange(min=0),
    help="Dollars the run may spend in all; it stops cleanly before a call could pass this, "
    "and the same command with a higher --max-cost continues.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Estimate calls, tokens and dollars (upper bounds) without calling any model.",
)
@click.option(
    "--concurrency",
    default=None,
    type=click.IntRange(min=1),
    help="Calls in flight at once to models behind a server [default: 8 when every model of a "
    "stage is an openai: server]. In-process llama.cpp models take one call at a time. With "
    "--executor ray: the number of label workers [default: one per CPU of the cluster].",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="Where pairs are labelled: threads in this process, or Ray workers, each with its own "
    "judge (RAY_ADDRESS names a cluster; otherwise a local one starts; needs rlaif[ray]).",
)
@click.option(
    "--rpm",
    default=None,
    type=click.FloatRange(min=0, min_open=True),
    help="Requests per minute to each server (default: no limit).",
)
@click.option(
    "--tpm",
    default=None,
    type=click.FloatRange(min=0, min_open=True),
    help="Tokens (prompt + completion) per minute to each server (default: no limit).",
)
@click.option(
    "--timeout",
    default=120.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds to wait for a server's reply before retrying the request.",
)
@click.option(
    "--max-retries",
    default=8,
    show_default=True,
    type=click.IntRange(min=0),
    help="Retries of a request after 429, 5xx, a timeout, a dropped connection or a damaged "
    "reply (exponential backoff with jitter; Retry-After honoured). 400/401 stop at once.",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def run(quiet, out, **options):
    """The main job: prompts in, AI-labelled preference and revision data out (resumable)."""
    import time as _time

    from rlaif.pipeline import RunConfig
    from rlaif.pipeline import run as do_run

    if out is None:
        out = f"runs/{_time.strftime('%Y%m%d-%H%M%S')}"
    try:
        config = RunConfig(out=out, **options)
    except ValueError as e:
        raise click.UsageError(str(e)) from e
    result = do_run(config, show_progress=not quiet)
    if config.dry_run:
        _print_estimate(result.out, result.info["estimate"])
        return
    _print_run_summary(result.out, result.info)


@cli.command("synth-prompts")
@click.option("--model", default="smollm2", show_default=True, help=MODEL_HELP)
@click.option(
    "--n",
    "n",
    default=20,
    show_default=True,
    type=click.IntRange(min=1),
    help="How many new prompts to keep.",
)
@click.option("--seeds", default=None, help="Prompts file of examples (default: built-in set).")
@click.option(
    "--kind",
    type=click.Choice(["helpful", "harmless", "both"]),
    default="both",
    show_default=True,
    help="helpful: like the seeds; harmless: red-team prompts from the constitution's principles.",
)
@click.option(
    "--constitution",
    default="default",
    show_default=True,
    help="Constitution file or 'default' (for harmless prompts).",
)
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--max-attempts",
    default=None,
    type=click.IntRange(min=1),
    help="Give up after this many generations (default: 4 x N).",
)
@click.option("--out", required=True, help="JSONL file to write; `rlaif run --prompts` reads it.")
def synth_prompts(model, n, seeds, kind, constitution, seed, max_attempts, out):
    """Write new prompts with a model, deduplicated, as a prompts file for `rlaif run`."""
    from pathlib import Path

    from rlaif.backends import load_backend
    from rlaif.constitution import load_constitution
    from rlaif.progress import make_progress
    from rlaif.prompts import load_prompts
    from rlaif.synth import synth_prompts as do_synth

    seed_texts = [p.text for p in load_prompts(seeds)]
    kinds = ("helpful", "harmless") if kind == "both" else (kind,)
    backend = load_backend(model)
    with make_progress(console=console) as progress:
        task = progress.add_task("synthesize", total=n)
        result = do_synth(
            backend,
            seed_texts,
            load_constitution(constitution),
            n,
            kinds=kinds,
            seed=seed,
            max_attempts=max_attempts,
            on_attempt=lambda r: progress.update(task, completed=len(r.prompts)),
        )
    path = Path(out)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in result.prompts))
    tmp.replace(path)
    click.echo(
        f"kept {len(result.prompts)} of {result.attempts} generated prompts "
        f"({result.exact_duplicates} exact duplicates, {result.near_duplicates} near duplicates, "
        f"{result.rejected} unusable) -> {path}"
    )
    if len(result.prompts) < n:
        click.echo(f"warning: asked for {n}; raise --max-attempts for more", err=True)


eval_group.add_command(winrate)
cli.add_command(eval_group)
cli.add_command(report)
train_group.add_command(grpo)
cli.add_command(train_group)
cli.add_command(loop)
cli.add_command(review)
cli.add_command(export)
cli.add_command(doctor)


def _print_run_summary(out, info: dict) -> None:
    from rich.table import Table

    from rlaif.generate import truncation_summary

    stats = info["stats"]
    counts = info["counts"]
    table = Table(title=f"rlaif run: {out}", show_header=False)
    table.add_column(style="bold")
    table.add_column()

    def pct(x):
        return "-" if x is None else f"{100 * x:.1f}%"

    cost = info.get("cost_per_label")
    rows = [
        ("prompts", counts["prompts"]),
        ("pairs labelled", info["labels"]),
        (
            "preferences / low margin / unreadable",
            f"{counts['preferences']} / {counts['low_margin']} / {counts['unreadable']}",
        ),
        ("sft records (revisions)", counts["sft"]),
        ("cut off at --max-tokens", truncation_summary(info.get("truncated"))),
        ("mean |p - 0.5|", "-" if stats["mean_margin"] is None else f"{stats['mean_margin']:.3f}"),
        ("decided by rule / AI", _source_summary(stats.get("label_source"))),
        (
            "position consistency",  # None: never asked in both orders (pointwise, one order)
            "n/a"
            if stats["position_consistency_rate"] is None
            else pct(stats["position_consistency_rate"]),
        ),
        ("model calls / from store", f"{info['model_calls']} / {info['cached_calls']}"),
        ("retried requests", _retry_summary(info.get("requests", {}).get("retries"))),
        ("tokens", f"{info['tokens']['total']:,}"),
        ("cost per label", "-" if cost is None else f"${cost:.6f}"),
        ("cost", _cost_summary(info)),
        ("time", f"{info['timings_s']['total']:.1f} s"),
        ("files", f"{out}/preferences.jsonl, sft.jsonl, run.json"),
    ]
    for k, v in rows:
        table.add_row(k, str(v))
    Console().print(table)
    for warning in info.get("warnings") or []:
        click.echo(f"warning: {warning}")


def _source_summary(sources: dict | None) -> str:
    """Labels decided by a rule (a principle's check, a rule judge) and by the AI judge."""
    if not sources:
        return "-"
    return f"{sources.get('rule', 0)} / {sources.get('ai', 0)}"


def _retry_summary(retries: dict | None) -> str:
    if not retries:
        return "0"
    detail = ", ".join(f"{reason}: {n}" for reason, n in sorted(retries.items()))
    return f"{sum(retries.values())} ({detail})"


def _cost_summary(info: dict) -> str:
    budget = info.get("budget")
    text = f"${info.get('cost', 0.0):.6f}"
    if budget:
        spent, cap = budget["spent_in_all"], budget["max_cost"]
        text += f" (spent in all ${spent:.6f} of --max-cost ${cap:g})"
    return text


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


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI; library errors become one line on stderr and exit code 1."""
    try:
        cli.main(args=argv, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        click.echo(f"error: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except RlaifError as e:
        click.echo("error: " + " ".join(str(e).split()), err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
