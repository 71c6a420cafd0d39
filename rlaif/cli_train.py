"""``rlaif train reward`` and ``rlaif train dpo``: parse, call ``rlaif.train``, print."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from rlaif.cli_drift import drift_option, run_drift_check

console = Console(stderr=True)

TRAIN_MODEL_HELP = (
    "Model to start from: smollm2 (the embedded model, converted once from its GGUF and "
    "cached) or hf:DIR (a local Hugging Face checkpoint, e.g. one rlaif train wrote)."
)


@click.group("train")
def train_group() -> None:
    """Train on AI-labelled preferences: a reward model, or a policy with DPO.

    Each command writes a checkpoint directory (model, tokenizer and train.json) that every
    other command takes as the model string hf:DIR (through transformers) or gguf:DIR
    (exported once to GGUF and run by llama.cpp: about 4x faster generation).
    """


def _common_options(f=None, *, epochs: int = 1):
    """Options shared by the training commands (applied bottom-up); ``epochs`` is the
    default of ``--epochs``."""
    if f is None:
        return lambda g: _common_options(g, epochs=epochs)
    options = [
        click.option(
            "--data", required=True, help="Preferences JSONL (rlaif run writes preferences.jsonl)."
        ),
        click.option("--model", default="smollm2", show_default=True, help=TRAIN_MODEL_HELP),
        click.option(
            "--out",
            required=True,
            help="New (or empty) directory for the checkpoint; use it as hf:DIR.",
        ),
        click.option("--epochs", default=epochs, show_default=True, type=click.IntRange(min=1)),
        click.option(
            "--max-steps",
            default=None,
            type=click.IntRange(min=1),
            help="Stop after N optimizer steps (overrides --epochs).",
        ),
        click.option(
            "--batch-size",
            default=4,
            show_default=True,
            type=click.IntRange(min=1),
            help="Pairs per optimizer step.",
        ),
        click.option("--lora", is_flag=True, help="Train a LoRA adapter (r=16), merged on save."),
        click.option("--seed", default=0, show_default=True),
        click.option("--quiet", is_flag=True, help="No progress bar."),
        click.option(
            "--show-example",
            is_flag=True,
            help="Print the first training example exactly as the model receives it (decoded "
            "from its token ids, chat template included, the response boundary marked) and "
            "exit without training.",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _settings(cls, **kwargs):
    try:
        return cls(**kwargs)
    except ValueError as e:
        raise click.UsageError(str(e)) from e


def _fmt(x, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


@train_group.command("reward")
@_common_options
@click.option("--learning-rate", default=2e-5, show_default=True, type=float)
@click.option(
    "--max-length",
    default=512,
    show_default=True,
    type=click.IntRange(min=8),
    help="Tokens of prompt + response; longer ones keep their end.",
)
@click.option(
    "--held-out",
    default=0.2,
    show_default=True,
    type=click.FloatRange(0.0, 1.0, max_open=True),
    help="Share of prompts held out for the final accuracy and calibration.",
)
@click.option(
    "--hard-labels",
    is_flag=True,
    help="Train on hard winners (target 1) instead of the judge's p_chosen (for comparison).",
)
def train_reward_cmd(**kw):
    """Train a Bradley-Terry reward model on the judge's soft labels.

    The loss is the cross-entropy of sigmoid(r_chosen - r_rejected) against p_chosen, so a pair
    the judge barely preferred counts for little. At the end it prints, on the pairs of
    held-out prompts, before and after training: pairwise accuracy (95% bootstrap interval),
    Brier score and ECE against p_chosen, and the Brier score of always saying 0.5.
    """
    from rlaif.train.reward import RewardSettings, reward_example, train_reward

    quiet, show_example = kw.pop("quiet"), kw.pop("show_example")
    settings = _settings(RewardSettings, **kw)
    if show_example:
        click.echo(reward_example(settings), nl=False)
        return
    info = train_reward(settings, show_progress=not quiet)
    before, after = info["held_out_before"], info["held_out"]
    pairs = info["pairs"]
    console.print(
        f"pairs: {pairs['total']} read, {pairs['train']} to train, {pairs['held_out']} held out"
        f"   steps: {info['steps']}   final loss: {info['final_loss']:.4f}"
        f"   time: {info['train_seconds']:.0f} s"
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
        table.add_row("Brier vs p_chosen", _fmt(before["brier"], 4), _fmt(after["brier"], 4))
        table.add_row(
            "Brier of always 0.5",
            _fmt(before["brier_constant_half"], 4),
            _fmt(after["brier_constant_half"], 4),
        )
        table.add_row("ECE", _fmt(before["ece"], 4), _fmt(after["ece"], 4))
        table.add_row(
            "cross-entropy", _fmt(before["cross_entropy"], 4), _fmt(after["cross_entropy"], 4)
        )
        table.add_row(
            "mean p(chosen) model / label",
            f"{before['mean_p_model']:.3f} / {before['mean_p_label']:.3f}",
            f"{after['mean_p_model']:.3f} / {after['mean_p_label']:.3f}",
        )
        Console().print(table)
    click.echo(f"reward model: {settings.out}  (scores responses; train.json has the metrics)")


@train_group.command("dpo")
@_common_options(epochs=2)
@drift_option
@click.option("--learning-rate", default=2e-5, show_default=True, type=float)
@click.option(
    "--beta",
    default=0.1,
    show_default=True,
    type=float,
    help="DPO's KL strength (higher stays closer to the starting model).",
)
@click.option(
    "--max-length",
    default=384,
    show_default=True,
    type=click.IntRange(min=8),
    help="Tokens of prompt + response; longer sequences are cut.",
)
@click.option(
    "--min-margin",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0.0, 0.5, max_open=True),
    help="Drop pairs with |p_chosen - 0.5| below this. 0 keeps all: the embedded judge's "
    "labels are all within about 0.01 of 0.5. With a capable judge try 0.1-0.2.",
)
@click.option(
    "--loss",
    type=click.Choice(["soft", "hard"]),
    default="soft",
    show_default=True,
    help="soft: each pair's target is its p_chosen (-p log s(bh) - (1-p) log s(-bh)), so a "
    "pair stops pulling once the policy agrees with the judge; identical to hard for p = 1 "
    "(human labels). hard: every pair a sure win.",
)
@click.option(
    "--nll-weight",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Add this times the chosen response's per-token NLL to the loss (RPO). It keeps the "
    "chosen answers likely where DPO alone pushes both sides down into repetition loops, and "
    "it also fine-tunes on the chosen answers whatever the labels say; 0 is plain DPO.",
)
def train_dpo_cmd(**kw):
    """Train a policy with DPO (TRL's DPOTrainer) on AI-labelled preferences.

    Every pair is trained in TRL's conversational form, so the chat template applies as it
    does in generation. The loss is soft by default: the cross-entropy of DPO's implied
    preference against the judge's p_chosen, per pair. --min-margin drops undecided pairs.
    The reference is the starting model.
    """
    from rlaif.train.dpo import DPOSettings, dpo_example, select_pairs, train_dpo

    quiet, show_example = kw.pop("quiet"), kw.pop("show_example")
    drift_prompts = kw.pop("drift_prompts")
    settings = _settings(DPOSettings, **kw)
    _, counts = select_pairs(settings)  # fail on bad data before loading any model
    if show_example:
        click.echo(dpo_example(settings), nl=False)
        return
    console.print(
        f"pairs: {counts['read']} read, {counts['kept']} kept, {counts['dropped_low_margin']} "
        f"below --min-margin {settings.min_margin}; --loss {settings.loss}, mean target "
        f"{counts['mean_target']:.3f}"
    )
    info = train_dpo(settings, show_progress=not quiet)
    last = info["last_step"]
    table = Table(title="dpo")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("steps", str(info["steps"]))
    table.add_row("first / final loss", f"{info['losses'][0]:.4f} / {info['final_loss']:.4f}")
    for key in ("rewards/margins", "rewards/accuracies"):
        if key in last:
            table.add_row(f"last step {key}", f"{last[key]:.4f}")
    table.add_row("time", f"{info['train_seconds']:.0f} s")
    Console().print(table)
    run_drift_check(settings.model, settings.out, drift_prompts)
    click.echo(f"policy: hf:{settings.out}")
