"""The single operations: ``rlaif compare``, ``critique``, ``revise``, ``generate`` and
``synth-prompts``."""

from __future__ import annotations

import json

import click
from rich.console import Console

from rlaif.cli import options as opt
from rlaif.fileio import write_jsonl_atomic

console = Console(stderr=True)

#: the judge's constitution and the seed of its principle draw
judge_options = opt.stack(opt.constitution(), opt.seed(help="Seed of the principle draw."))


def _emit(obj: dict) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False))


@click.command()
@opt.model("--judge", rules=True)
@click.option("--prompt", required=True, help="The user request both responses answer.")
@click.option("--a", "a", required=True, help="Response A.")
@click.option("--b", "b", required=True, help="Response B.")
@click.option(
    "--mode",
    type=opt.MODES,
    default="pairwise",
    show_default=True,
    help="pairwise: ask 'A or B?' in both orders; pointwise: score each response alone.",
)
@click.option("--one-order", is_flag=True, help="Ask in the A-B order only (biased; for study).")
@click.option("--cot", is_flag=True, help="Chain of thought: a rationale first, then the verdict.")
@click.option("--clamp", is_flag=True, help="Clamp each order's probability to 40-60% (CAI paper).")
@judge_options
@opt.json_flag
def compare(judge, prompt, a, b, mode, one_order, cot, clamp, constitution, seed, as_json):
    """Which of two responses is better: p(A better) from the judge's token probabilities."""
    from rlaif.backends import load_backend
    from rlaif.compare import CAI_CLAMP, Judge, RuleJudge
    from rlaif.constitution import load_constitution
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


@click.command()
@opt.model("--judge")
@click.option("--prompt", required=True, help="The user request.")
@click.option("--response", required=True, help="The response to critique.")
@judge_options
@opt.json_flag
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


@click.command()
@opt.model()
@click.option("--critic", default=None, help="Model that critiques (default: --model).")
@click.option("--prompt", required=True, help="The user request.")
@click.option("--response", required=True, help="The response to improve.")
@click.option("--rounds", default=1, show_default=True, type=opt.AT_LEAST_1)
@judge_options
@opt.json_flag
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


@click.command()
@opt.model()
@click.option("--prompt", required=True, help="The user request.")
@click.option("-n", "n", default=1, show_default=True, type=opt.AT_LEAST_1)
@opt.seed()
@click.option("--temperature", default=0.8, show_default=True, type=float)
@click.option("--max-tokens", default=256, show_default=True, type=int)
@opt.json_flag
def generate(model, prompt, n, seed, temperature, max_tokens, as_json):
    """Sample n responses from a policy model."""
    from rlaif.backends import load_backend
    from rlaif.synth import generate as do_generate

    texts = do_generate(
        load_backend(model), prompt, n, seed=seed, temperature=temperature, max_tokens=max_tokens
    )
    if as_json:
        _emit({"prompt": prompt, "model": model, "responses": texts})
        return
    for i, t in enumerate(texts, start=1):
        click.echo(f"--- response {i}\n{t}\n")


@click.command("synth-prompts")
@opt.model()
@click.option(
    "--n",
    "n",
    default=20,
    show_default=True,
    type=opt.AT_LEAST_1,
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
@opt.constitution(why="for harmless prompts")
@opt.seed()
@click.option(
    "--max-attempts",
    default=None,
    type=opt.AT_LEAST_1,
    help="Give up after this many generations (default: 4 x N).",
)
@opt.out("JSONL file to write; `rlaif run --prompts` reads it.")
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
    write_jsonl_atomic(path, result.prompts)
    click.echo(
        f"kept {len(result.prompts)} of {result.attempts} generated prompts "
        f"({result.exact_duplicates} exact duplicates, {result.near_duplicates} near duplicates, "
        f"{result.rejected} unusable) -> {path}"
    )
    if len(result.prompts) < n:
        click.echo(f"warning: asked for {n}; raise --max-attempts for more", err=True)
