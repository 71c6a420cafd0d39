"""``rlaif train reward``, ``train dpo`` and ``train grpo``, and the drift check that ends the
policy trainings."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from rlaif.cli import options as opt

console = Console(stderr=True)


@click.group("train")
def train_group() -> None:
    """Train on AI-labelled preferences: a reward model, or a policy with DPO.

    Each command writes a checkpoint directory (model, tokenizer and train.json) that every
    other command takes as the model string hf:DIR (through transformers) or gguf:DIR
    (exported once to GGUF and run by llama.cpp: about 4x faster generation).
    """


def _preference_options(settings: opt.Settings) -> opt.Decorator:
    """The options of the trainings on a preferences file, with the defaults of ``settings``."""
    return opt.stack(
        click.option(
            "--data", required=True, help="Preferences JSONL (rlaif run writes preferences.jsonl)."
        ),
        settings.option("model", help=opt.TRAIN_MODEL_HELP),
        opt.out("New (or empty) directory for the checkpoint; use it as hf:DIR."),
        settings.option("epochs", type=opt.AT_LEAST_1),
        settings.option(
            "max_steps",
            type=opt.AT_LEAST_1,
            help="Stop after N optimizer steps (overrides --epochs).",
        ),
        settings.option(
            "batch_size",
            type=opt.AT_LEAST_1,
            help="Pairs per optimizer step; under accelerate launch, per process (the global "
            "batch is this x processes).",
        ),
        click.option("--lora", is_flag=True, help="Train a LoRA adapter (r=16), merged on save."),
        opt.seed(settings),
        opt.quiet("No progress bar."),
        click.option(
            "--show-example",
            is_flag=True,
            help="Print the first training example exactly as the model receives it (decoded "
            "from its token ids, chat template included, the response boundary marked) and "
            "exit without training.",
        ),
    )


def _max_length(settings: opt.Settings, longer: str) -> opt.Decorator:
    """``--max-length``: tokens of prompt + response; ``longer`` says what happens beyond."""
    return settings.option(
        "max_length", type=click.IntRange(min=8), help=f"Tokens of prompt + response; {longer}."
    )


def _train_or_show(settings, show_example: bool, example, train, quiet: bool) -> dict | None:
    """With ``--show-example``, print ``example(settings)`` and return None; else train and
    return what ``train`` returns, on the main process only (under a launcher the main process
    reports the run; the others get None)."""
    from rlaif.train import distributed

    if show_example:
        click.echo(example(settings), nl=False)
        return None
    info = train(settings, show_progress=not quiet)
    return info if distributed.is_main_process() else None


def _batch(info: dict) -> str:
    """The global batch and how it was made: under a launcher, per process x processes.

    Always printed, so that a launch that started fewer processes than asked (``accelerate
    launch --cpu`` starts one) shows it.
    """
    n = info["world_size"]
    made = f"{info['per_device_batch_size']} x {n} process{'es' if n != 1 else ''}"
    if info["gradient_accumulation_steps"] != 1:
        made += f" x {info['gradient_accumulation_steps']} accumulated"
    return f"{info['global_batch_size']} ({made})"


def _fmt(x, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


REWARD = opt.Settings("rlaif.train.reward", "RewardSettings")


@train_group.command("reward")
@_preference_options(REWARD)
@REWARD.option("learning_rate", type=float)
@_max_length(REWARD, "longer ones keep their end")
@REWARD.option(
    "held_out",
    type=click.FloatRange(0.0, 1.0, max_open=True),
    help="Share of prompts held out for the final accuracy and calibration.",
)
@click.option(
    "--hard-labels",
    is_flag=True,
    help="Train on hard winners (target 1) instead of the judge's p_chosen (for comparison).",
)
def train_reward_cmd(quiet, show_example, **options):
    """Train a Bradley-Terry reward model on the judge's soft labels.

    The loss is the cross-entropy of sigmoid(r_chosen - r_rejected) against p_chosen, so a pair
    the judge barely preferred counts for little. At the end it prints, on the pairs of
    held-out prompts, before and after training: pairwise accuracy (95% bootstrap interval),
    Brier score and ECE against p_chosen, and the Brier score of always saying 0.5.
    """
    from rlaif.train.reward import reward_example, train_reward

    settings = opt.settings_from(REWARD, **options)
    info = _train_or_show(settings, show_example, reward_example, train_reward, quiet)
    if info is None:
        return
    before, after = info["held_out_before"], info["held_out"]
    pairs = info["pairs"]
    console.print(
        f"pairs: {pairs['total']} read, {pairs['train']} to train, {pairs['held_out']} held out"
        f"   steps: {info['steps']}   final loss: {info['final_loss']:.4f}"
        f"   batch: {_batch(info)}   time: {info['train_seconds']:.0f} s"
    )
    if not after.get("n"):
        console.print(
            "no held-out pairs (one prompt, or --held-out 0): accuracy and calibration not measured"
        )
    else:
        table = Table(title=f"held-out pairs (n = {after['n']})")
        table.add_column("")
        table.add_column("before training", justify="right")
        table.add_column("after training", justify="right")

        def acc(m):
            ci = m.get("accuracy_ci")
            if m.get("accuracy") is None:
                return "-"
            return f"{m['accuracy']:.3f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")

        table.add_row("pairwise accuracy [95% CI]", acc(before), acc(after))
        for label, key in (
            ("Brier vs p_chosen", "brier"),
            ("Brier of always 0.5", "brier_constant_half"),
            ("ECE", "ece"),
            ("cross-entropy", "cross_entropy"),
        ):
            table.add_row(label, _fmt(before[key], 4), _fmt(after[key], 4))
        table.add_row(
            "mean p(chosen) model / label",
            f"{before['mean_p_model']:.3f} / {before['mean_p_label']:.3f}",
            f"{after['mean_p_model']:.3f} / {after['mean_p_label']:.3f}",
        )
        Console().print(table)
    click.echo(f"reward model: {settings.out}  (scores responses; train.json has the metrics)")


DPO = opt.Settings("rlaif.train.dpo", "DPOSettings")


@train_group.command("dpo")
@_preference_options(DPO)
@opt.drift
@DPO.option("learning_rate", type=float)
@DPO.option(
    "beta", type=float, help="DPO's KL strength (higher stays closer to the starting model)."
)
@_max_length(DPO, "longer sequences are cut")
@DPO.option(
    "min_margin",
    type=click.FloatRange(0.0, 0.5, max_open=True),
    help="Drop pairs with |p_chosen - 0.5| below this. 0 keeps all: the embedded judge's "
    "labels are all within about 0.01 of 0.5. With a capable judge try 0.1-0.2.",
)
@DPO.option(
    "loss",
    type=opt.LOSSES,
    help="soft: each pair's target is its p_chosen (-p log s(bh) - (1-p) log s(-bh)), so a "
    "pair stops pulling once the policy agrees with the judge; identical to hard for p = 1 "
    "(human labels). hard: every pair a sure win. auto: hard for pairs a rule decided "
    "(label_source: rule), soft for the others; a rule judge writes p = 0.731, and with its "
    "labels the loop benchmark won 83% against the base with hard targets, 60% with soft.",
)
@DPO.option(
    "nll_weight",
    type=opt.NOT_NEGATIVE,
    help="Add this times the chosen response's per-token NLL to the loss (RPO). It keeps the "
    "chosen answers likely where DPO alone pushes both sides down into repetition loops, and "
    "it also fine-tunes on the chosen answers whatever the labels say; 0 is plain DPO.",
)
@DPO.option(
    "degenerate_chosen",
    type=opt.DEGENERATE_CHOSEN,
    help="drop: leave out pairs whose chosen answer was cut at the token limit "
    "(chosen_truncated) or is stuck in a loop, so DPO never pulls towards a broken answer "
    "(it may still be rejected). keep: train every pair as labelled. In the rule-judged "
    "loop drop won within seed noise of keep (docs/results/loop-effect.md); it needs answers "
    "that mostly ended.",
)
def train_dpo_cmd(quiet, show_example, drift_prompts, **options):
    """Train a policy with DPO (TRL's DPOTrainer) on AI-labelled preferences.

    Every pair is trained in TRL's conversational form, so the chat template applies as it
    does in generation. The loss is soft by default: the cross-entropy of DPO's implied
    preference against the judge's p_chosen, per pair. --min-margin drops undecided pairs.
    The reference is the starting model.
    """
    from rlaif.train import distributed
    from rlaif.train.dpo import dpo_example, select_pairs, train_dpo

    settings = opt.settings_from(DPO, **options)
    _, counts = select_pairs(settings)  # fail on bad data before loading any model
    if not show_example and distributed.is_main_process():
        console.print(
            f"pairs: {counts['read']} read, {counts['kept']} kept, "
            f"{counts['dropped_low_margin']} below --min-margin {settings.min_margin}, "
            f"{counts['dropped_degenerate_chosen']} with a degenerate chosen answer left out; "
            f"--loss {settings.loss}, mean target {counts['mean_target']:.3f}"
        )
    info = _train_or_show(settings, show_example, dpo_example, train_dpo, quiet)
    if info is None:
        return
    last = info["last_step"]
    table = Table(title="dpo")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("steps", str(info["steps"]))
    table.add_row("pairs per step", _batch(info))
    table.add_row("first / final loss", f"{info['losses'][0]:.4f} / {info['final_loss']:.4f}")
    for key in ("rewards/margins", "rewards/accuracies"):
        if key in last:
            table.add_row(f"last step {key}", f"{last[key]:.4f}")
    table.add_row("time", f"{info['train_seconds']:.0f} s")
    Console().print(table)
    run_drift_check(settings.model, settings.out, drift_prompts)
    click.echo(f"policy: hf:{settings.out}")


GRPO = opt.Settings("rlaif.train.grpo", "GRPOSettings")


@train_group.command("grpo")
@click.option(
    "--data", required=True, help="Prompts file (.jsonl, .json, .csv, .txt) the policy answers."
)
@GRPO.option("model", help="Policy to train: " + opt.TRAINABLE_HELP)
@opt.out("New directory for the trained checkpoint (hf:DIR).")
@GRPO.option(
    "reward",
    help="'judge': the AI judge's expected 1-9 score under a sampled principle, in [-1, 1] "
    "(direct RLAIF); or the directory of a reward model from `rlaif train reward`.",
)
@opt.model(
    "--judge",
    GRPO,
    prefix="With --reward judge. Or http(s)://HOST:PORT of `rlaif serve` (its token from "
    "$RLAIF_SERVE_TOKEN). ",
)
@opt.constitution(GRPO, why="principles the judge rates by")
@GRPO.option(
    "judge_mode",
    type=click.Choice(["pointwise", "group"]),
    help="With the judge: 'pointwise' rates each response alone; 'group' rewards each by its "
    "mean probability of beating the other responses of its prompt, pairs judged in both "
    "orders (G(G-1) judge calls a group up to 8, 8G above).",
)
@GRPO.option("max_steps", type=opt.AT_LEAST_1)
@GRPO.option(
    "prompts_per_step",
    type=opt.AT_LEAST_1,
    help="Prompts per optimizer step; under accelerate launch, per process.",
)
@GRPO.option(
    "num_generations",
    type=click.IntRange(min=2),
    help="Responses sampled per prompt; GRPO compares them with each other.",
)
@GRPO.option(
    "max_completion_length", type=opt.AT_LEAST_1, help="Longest sampled response, in tokens."
)
@GRPO.option("learning_rate", type=opt.ABOVE_0)
@GRPO.option(
    "beta", type=opt.NOT_NEGATIVE, help="KL penalty to the starting policy (0: no reference model)."
)
@GRPO.option("temperature", type=opt.ABOVE_0)
@click.option("--lora", is_flag=True, help="Train a LoRA adapter (merged into the saved weights).")
@opt.limit(GRPO)
@opt.seed(GRPO)
@opt.quiet("No progress bar.")
@click.option(
    "--show-example",
    is_flag=True,
    help="Print the first prompt exactly as the policy receives it (decoded from its token "
    "ids, chat template included) and exit without training.",
)
@opt.drift
def grpo(quiet, show_example, drift_prompts, **options):
    """Online RL (GRPO) with the AI judge, or a trained reward model, as the reward."""
    from rlaif.train.grpo import grpo_example, train_grpo

    settings = opt.settings_from(GRPO, **options)
    info = _train_or_show(settings, show_example, grpo_example, train_grpo, quiet)
    if info is None:
        return

    def fmt(x):
        return "-" if x is None else f"{x:+.4f}"

    click.echo(
        f"grpo: {len(info['steps'])} step(s) on {info['prompts']} prompts in "
        f"{info['time_s']:.0f} s; "
        f"loss {fmt(info['final_loss'])}; mean reward {fmt(info['first_reward'])} (first step) "
        f"-> {fmt(info['last_reward'])} (last step); responses per step {_batch(info)}"
    )
    run_drift_check(settings.model, settings.out, drift_prompts)
    click.echo(
        f"wrote {settings.out} (use it as hf:{settings.out}); steps in {settings.out}/train.json"
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
