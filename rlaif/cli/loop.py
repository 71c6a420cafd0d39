"""``rlaif loop``: iterative RLAIF, generate -> label -> DPO -> win rate, round after round."""

from __future__ import annotations

import click

from rlaif.cli import options as opt

LOOP = opt.Settings("rlaif.loop", "LoopConfig")


@click.command("loop")
@LOOP.option("rounds", type=opt.AT_LEAST_1)
@opt.out(
    "Loop directory (round-1/, round-2/, ... inside); rerun the same command to resume, "
    "or with a larger --rounds to extend."
)
@LOOP.option("policy", help="The starting policy: " + opt.TRAINABLE_HELP)
@opt.model("--judge", LOOP, rules=True)
@LOOP.option(
    "eval_judge",
    help="Judge of each round's win rate and of the final one (a model string, rule:... or "
    "python:...); default: --judge. With the embedded judge the check shares the training "
    "labels' biases; a rule such as rule:words=8-40 checks the rounds by a yardstick instead.",
)
@opt.constitution(LOOP, why="")
@LOOP.option("prompts", help="Training prompts file; default: the built-in 32 prompts.")
@LOOP.option(
    "eval_prompts",
    help="Held-out prompts for the win rate; default: the last --eval-n training prompts "
    "are set aside.",
)
@LOOP.option(
    "prompts_per_round",
    type=opt.AT_LEAST_1,
    help="Prompts answered and labelled per round (a new slice each round).",
)
@LOOP.option("eval_n", type=opt.AT_LEAST_1, help="Held-out prompts of the win rate.")
@opt.n_responses(LOOP, "Responses sampled per prompt (all pairs labelled).")
@opt.revisions(LOOP, "each adds a revision pair")
@LOOP.option(
    "max_tokens", type=opt.AT_LEAST_1, help="Longest response when generating training data."
)
@LOOP.option(
    "temperature", type=opt.NOT_NEGATIVE, help="Sampling temperature of the training responses."
)
@LOOP.option("dpo_steps", type=opt.AT_LEAST_1, help="DPO optimizer steps per round.")
@LOOP.option("dpo_batch_size", type=opt.AT_LEAST_1, help="Pairs per DPO step.")
@LOOP.option("dpo_learning_rate", type=opt.ABOVE_0)
@LOOP.option("dpo_beta", type=opt.ABOVE_0, help="DPO's KL strength.")
@LOOP.option(
    "dpo_nll_weight",
    type=opt.NOT_NEGATIVE,
    help="Weight of the chosen responses' per-token NLL in the DPO loss (RPO); 0 is plain DPO.",
)
@LOOP.option(
    "dpo_degenerate_chosen",
    type=opt.DEGENERATE_CHOSEN,
    help="drop: DPO leaves out pairs whose chosen answer was cut at --max-tokens or is stuck "
    "in a loop (they may still be rejected); keep: every pair as labelled. In the rule-judged "
    "loop, drop left out 2% of the pairs and won within seed noise of keep "
    "(docs/results/loop-effect.md); with the embedded AI judge most 64-token answers are cut "
    "off, so drop would leave about one pair in ten.",
)
@LOOP.option(
    "min_margin", type=opt.MARGIN, help="DPO drops pairs with |p_chosen - 0.5| below this."
)
@LOOP.option(
    "loss",
    type=opt.LOSSES,
    help="DPO's loss: soft targets each pair's p_chosen; hard trains every pair as a sure win; "
    "auto: hard for pairs a rule decided, soft for the judge model's (as train dpo --loss).",
)
@click.option("--lora", is_flag=True, help="Train LoRA adapters (merged into each checkpoint).")
@LOOP.option(
    "eval_max_tokens", type=opt.AT_LEAST_1, help="Longest answer in the win-rate evaluation."
)
@LOOP.option("tie_margin", type=opt.MARGIN, help="Win-rate labels with |p - 0.5| <= this are ties.")
@LOOP.option(
    "generate_with",
    type=click.Choice(["gguf", "hf"]),
    help="How trained policies answer: gguf exports each checkpoint once to GGUF and runs it "
    "with llama.cpp (about 4x faster; checkpoints of another architecture stay on "
    "transformers); hf runs them with transformers.",
)
@LOOP.option(
    "train_launcher",
    help="Run each round's DPO as 'LAUNCHER -m rlaif train dpo ...', e.g. "
    '"accelerate launch --multi_gpu --num_processes 2" or "torchrun --nproc_per_node 2" '
    "(--dpo-batch-size is then per process); its output goes to round-N/dpo-launch.log. "
    "Default: in this process.",
)
@opt.seed(LOOP)
@opt.quiet()
def loop(quiet, **options):
    """Iterative RLAIF: generate -> label -> DPO -> win rate, each round its own directory.

    The policy of round i is the baseline of round i+1; round 1's baseline is the starting
    policy through the same (transformers) backend. The defaults are CPU-sized for the
    embedded model: per round 8 prompts x 2 responses (64 tokens), 8 DPO steps of 2 pairs,
    and a win rate on 8 held-out prompts (64-token answers). Sizes are options below.
    """
    from rlaif.loop import run_loop

    config = opt.settings_from(LOOP, **options)

    def log(line: str) -> None:
        if not quiet:
            click.echo(line, err=True)

    run_loop(config, show_progress=not quiet, log=log)
    click.echo((config.out / "rounds.md").read_text(encoding="utf-8"), nl=False)
    click.echo(
        "\nwin rate: the round's policy against the previous one, judged by "
        f"{config.win_rate_judge} in both orders; ties count half.\n"
        f"wrote {config.out}/rounds.md, {config.out}/rounds.png and {config.out}/loop.json"
    )
