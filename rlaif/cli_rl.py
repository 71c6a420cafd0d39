"""``rlaif train grpo``, ``rlaif eval winrate`` and ``rlaif loop``: parse, call, print."""

from __future__ import annotations

import click

from rlaif.cli_drift import drift_option, run_drift_check

MODEL_HELP = (
    "Model string: smollm2 (embedded default), llamacpp:PATH.gguf, openai:MODEL@BASE_URL, "
    "hf:DIR (a local checkpoint, e.g. from rlaif train, through transformers), gguf:DIR (the "
    "same checkpoint exported once to GGUF and run by llama.cpp: about 4x faster generation)."
)
TRAINABLE_HELP = "Policy to train: smollm2 (the embedded model) or hf:DIR (a local checkpoint)."


# -- rlaif train grpo -------------------------------------------------------------------------
@click.command("grpo")
@click.option(
    "--data", required=True, help="Prompts file (.jsonl, .json, .csv, .txt) the policy answers."
)
@click.option("--model", default="smollm2", show_default=True, help=TRAINABLE_HELP)
@click.option("--out", required=True, help="New directory for the trained checkpoint (hf:DIR).")
@click.option(
    "--reward",
    default="judge",
    show_default=True,
    help="'judge': the AI judge's expected 1-9 score under a sampled principle, in [-1, 1] "
    "(direct RLAIF); or the directory of a reward model from `rlaif train reward`.",
)
@click.option(
    "--judge", default="smollm2", show_default=True, help="With --reward judge. " + MODEL_HELP
)
@click.option(
    "--constitution",
    default="default",
    show_default=True,
    help="Constitution file or 'default' (principles the judge rates by).",
)
@click.option("--max-steps", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--prompts-per-step", default=2, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--num-generations",
    default=4,
    show_default=True,
    type=click.IntRange(min=2),
    help="Responses sampled per prompt; GRPO compares them with each other.",
)
@click.option(
    "--max-completion-length",
    default=64,
    show_default=True,
    type=click.IntRange(min=1),
    help="Longest sampled response, in tokens.",
)
@click.option(
    "--learning-rate", default=1e-6, show_default=True, type=click.FloatRange(min=0, min_open=True)
)
@click.option(
    "--beta",
    default=0.04,
    show_default=True,
    type=click.FloatRange(min=0),
    help="KL penalty to the starting policy (0: no reference model).",
)
@click.option(
    "--temperature", default=1.0, show_default=True, type=click.FloatRange(min=0, min_open=True)
)
@click.option("--lora", is_flag=True, help="Train a LoRA adapter (merged into the saved weights).")
@click.option("--limit", default=None, type=click.IntRange(min=1), help="Use the first N prompts.")
@click.option("--seed", default=0, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option(
    "--show-example",
    is_flag=True,
    help="Print the first prompt exactly as the policy receives it (decoded from its token "
    "ids, chat template included) and exit without training.",
)
@drift_option
def grpo(quiet, show_example, drift_prompts, **options):
    """Online RL (GRPO) with the AI judge, or a trained reward model, as the reward."""
    from rlaif.train.grpo import GRPOSettings, grpo_example, train_grpo

    try:
        settings = GRPOSettings(**options)
    except ValueError as e:
        raise click.UsageError(str(e)) from e
    if show_example:
        click.echo(grpo_example(settings), nl=False)
        return
    info = train_grpo(settings, show_progress=not quiet)

    def fmt(x):
        return "-" if x is None else f"{x:+.4f}"

    click.echo(
        f"grpo: {len(info['steps'])} step(s) on {info['prompts']} prompts in "
        f"{info['time_s']:.0f} s; "
        f"loss {fmt(info['final_loss'])}; mean reward {fmt(info['first_reward'])} (first step) "
        f"-> {fmt(info['last_reward'])} (last step)"
    )
    run_drift_check(settings.model, settings.out, drift_prompts)
    click.echo(
        f"wrote {settings.out} (use it as hf:{settings.out}); steps in {settings.out}/train.json"
    )


# -- rlaif eval winrate -----------------------------------------------------------------------
@click.command("winrate")
@click.option("--policy", required=True, help="The model under test. " + MODEL_HELP)
@click.option(
    "--baseline",
    default=None,
    help="The model it plays. Default: the model the policy was trained from (its train.json), "
    "through the same backend and decoding; smollm2 for a policy rlaif did not train. "
    + MODEL_HELP,
)
@click.option(
    "--prompts",
    default=None,
    help="Held-out prompts file (.jsonl, .json, .csv, .txt); default: the 24 held-out prompts "
    "shipped with rlaif, minus any the models were trained on. A file that overlaps the "
    "training prompts is refused.",
)
@click.option(
    "--allow-overlap",
    is_flag=True,
    help="Evaluate on --prompts even when some are in the policy's or baseline's training data.",
)
@click.option("--judge", default="smollm2", show_default=True, help=MODEL_HELP)
@click.option(
    "--constitution",
    default="default",
    show_default=True,
    help="Constitution file or 'default' (a principle is sampled per comparison).",
)
@click.option("--limit", default=None, type=click.IntRange(min=1), help="Use the first N prompts.")
@click.option(
    "--out",
    required=True,
    help="Directory for metrics.json, pairs.jsonl and the store; rerun to resume.",
)
@click.option(
    "--max-tokens",
    default=128,
    show_default=True,
    type=click.IntRange(min=1),
    help="Longest answer, in tokens.",
)
@click.option(
    "--temperature",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Answer sampling temperature (0: greedy).",
)
@click.option(
    "--tie-margin",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 0.5, max_open=True),
    help="Labels with |p - 0.5| <= this are ties (0: only exactly 0.5, e.g. identical answers).",
)
@click.option(
    "--seed", default=0, show_default=True, help="Seed of sampling, principles, bootstrap."
)
@click.option(
    "--bootstrap",
    "resamples",
    default=1000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Bootstrap resamples of the 95% interval.",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def winrate(quiet, **options):
    """Win rate of --policy against --baseline on held-out prompts, judged in both orders."""
    from rlaif.evaluate.winrate import WinrateConfig, run_winrate_with_progress

    try:
        config = WinrateConfig(**options)
    except ValueError as e:
        raise click.UsageError(str(e)) from e
    metrics = run_winrate_with_progress(config, show_progress=not quiet)
    click.echo(winrate_summary(metrics))
    click.echo(f"wrote {config.out}/metrics.json and {config.out}/pairs.jsonl")


def winrate_summary(m: dict) -> str:
    """Two lines: the win rate with its interval, and the counts behind it."""

    def pct(x):
        return "-" if x is None else f"{100 * x:.1f}%"

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
    )


def _overlap_note(m: dict) -> str:
    sel = m.get("prompt_selection") or {}
    if not sel.get("training_prompts_known", True):
        return " (the policy's training prompts are unknown: overlap not checked)"
    if sel.get("overlap_ids"):
        verb = "left out" if sel.get("default_heldout_set") else "allowed by --allow-overlap"
        return f"; {len(sel['overlap_ids'])} seen in training {verb}"
    return ""


# -- rlaif loop -------------------------------------------------------------------------------
@click.command("loop")
@click.option("--rounds", default=2, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--out",
    required=True,
    help="Loop directory (round-1/, round-2/, ... inside); rerun the same command to resume, "
    "or with a larger --rounds to extend.",
)
@click.option(
    "--policy",
    default="smollm2",
    show_default=True,
    help="The starting policy: smollm2 (the embedded model) or hf:DIR (a local checkpoint).",
)
@click.option("--judge", default="smollm2", show_default=True, help=MODEL_HELP)
@click.option(
    "--constitution",
    default="default",
    show_default=True,
    help="Constitution file or 'default'.",
)
@click.option(
    "--prompts", default=None, help="Training prompts file; default: the built-in 32 prompts."
)
@click.option(
    "--eval-prompts",
    default=None,
    help="Held-out prompts for the win rate; default: the last --eval-n training prompts "
    "are set aside.",
)
@click.option(
    "--prompts-per-round",
    default=8,
    show_default=True,
    type=click.IntRange(min=1),
    help="Prompts answered and labelled per round (a new slice each round).",
)
@click.option(
    "--eval-n",
    default=8,
    show_default=True,
    type=click.IntRange(min=1),
    help="Held-out prompts of the win rate.",
)
@click.option(
    "--n-responses",
    default=2,
    show_default=True,
    type=click.IntRange(min=1),
    help="Responses sampled per prompt (all pairs labelled).",
)
@click.option(
    "--revisions",
    "revision_rounds",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Critique-revise rounds per response (each adds a revision pair).",
)
@click.option(
    "--max-tokens",
    default=64,
    show_default=True,
    type=click.IntRange(min=1),
    help="Longest response when generating training data.",
)
@click.option(
    "--temperature",
    default=0.8,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Sampling temperature of the training responses.",
)
@click.option(
    "--dpo-steps",
    default=8,
    show_default=True,
    type=click.IntRange(min=1),
    help="DPO optimizer steps per round.",
)
@click.option(
    "--dpo-batch-size",
    default=2,
    show_default=True,
    type=click.IntRange(min=1),
    help="Pairs per DPO step.",
)
@click.option(
    "--dpo-learning-rate",
    default=2e-5,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
)
@click.option(
    "--dpo-beta",
    default=0.1,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="DPO's KL strength.",
)
@click.option(
    "--dpo-nll-weight",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Weight of the chosen responses' per-token NLL in the DPO loss (RPO); 0 is plain DPO.",
)
@click.option(
    "--min-margin",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 0.5, max_open=True),
    help="DPO drops pairs with |p_chosen - 0.5| below this.",
)
@click.option(
    "--loss",
    type=click.Choice(["soft", "hard"]),
    default="soft",
    show_default=True,
    help="DPO's loss: soft targets each pair's p_chosen; hard trains every pair as a sure win.",
)
@click.option("--lora", is_flag=True, help="Train LoRA adapters (merged into each checkpoint).")
@click.option(
    "--eval-max-tokens",
    default=64,
    show_default=True,
    type=click.IntRange(min=1),
    help="Longest answer in the win-rate evaluation.",
)
@click.option(
    "--tie-margin",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 0.5, max_open=True),
    help="Win-rate labels with |p - 0.5| <= this are ties.",
)
@click.option(
    "--generate-with",
    type=click.Choice(["gguf", "hf"]),
    default="gguf",
    show_default=True,
    help="How trained policies answer: gguf exports each checkpoint once to GGUF and runs it "
    "with llama.cpp (about 4x faster; checkpoints of another architecture stay on "
    "transformers); hf runs them with transformers.",
)
@click.option("--seed", default=0, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def loop(quiet, **options):
    """Iterative RLAIF: generate -> label -> DPO -> win rate, each round its own directory.

    The policy of round i is the baseline of round i+1; round 1's baseline is the starting
    policy through the same (transformers) backend. The defaults are CPU-sized for the
    embedded model: per round 8 prompts x 2 responses (64 tokens), 8 DPO steps of 2 pairs,
    and a win rate on 8 held-out prompts (64-token answers). Sizes are options below.
    """
    from rlaif.loop import LoopConfig, run_loop

    try:
        config = LoopConfig(**options)
    except ValueError as e:
        raise click.UsageError(str(e)) from e

    def log(line: str) -> None:
        if not quiet:
            click.echo(line, err=True)

    run_loop(config, show_progress=not quiet, log=log)
    click.echo((config.out / "rounds.md").read_text(encoding="utf-8"), nl=False)
    click.echo(
        f"\nwin rate: the round's policy against the previous one, judged by {config.judge} in "
        "both orders; ties count half.\n"
        f"wrote {config.out}/rounds.md, {config.out}/rounds.png and {config.out}/loop.json"
    )
