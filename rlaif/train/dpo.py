"""DPO on AI-labelled preferences: TRL's DPOTrainer, with the judge's confidence used.

How the label confidence ``p_chosen`` is used (two mechanisms, both documented in the CLI):

1. ``min_margin`` drops pairs with |p_chosen - 0.5| below it. The default is 0: the embedded
   135M judge's labels sit within about 0.01 of a coin flip, and any useful threshold would
   drop them all. With a capable judge, 0.1-0.2 removes the pairs it could not decide.
2. ``weighting="confidence"`` (the default) draws the pairs of each step with probability
   proportional to 2 * p_chosen - 1, the judge's confidence beyond chance. Why this and not
   TRL's label smoothing: TRL's ``label_smoothing`` is one number for the whole data set
   (and the ``robust`` loss that uses it divides by 1 - 2e, which explodes as labels approach
   0.5), whereas each pair here has its own label. For a pair with soft label p, the gradient
   of the soft-label DPO loss -p log s(bh) - (1 - p) log s(-bh) at the start of training
   (h = 0) is (2p - 1) times the hard-label gradient; sampling pairs in proportion to 2p - 1
   gives the same expected update direction with TRL's own loss and trainer, changing only
   which pairs are drawn. Only the relative confidence is used: a judge unsure of every pair
   still trains at the full learning rate on its surest pairs, so the effective number of
   pairs (sum w)^2 / sum w^2 is printed; when it is small, the labels say little.
   ``weighting="uniform"`` trains on the hard winners, every pair alike.

Pairs whose ``p_chosen`` is below 0.5 (possible in files not written by ``rlaif run``) are
turned around first, so ``chosen`` is always the side the label prefers.
"""

from __future__ import annotations

import copy
import json
import math
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from rlaif.errors import InputError
from rlaif.train.data import PreferencePair, filter_by_margin, read_preferences

WEIGHTINGS = ("confidence", "uniform")


@dataclass
class DPOSettings:
    """What ``rlaif train dpo`` does; defaults sized for the embedded model on a 2-core CPU."""

    #: preferences JSONL (``rlaif run`` writes ``preferences.jsonl``)
    data: str
    #: checkpoint directory to write (usable as ``hf:DIR``)
    out: Path
    #: policy to train (and the frozen reference): smollm2 or hf:DIR
    model: str = "smollm2"
    epochs: int = 1
    #: stop after this many optimizer steps (overrides ``epochs``)
    max_steps: int | None = None
    #: pairs per optimizer step
    batch_size: int = 4
    learning_rate: float = 5e-6
    #: DPO's KL strength: higher keeps the policy closer to the reference
    beta: float = 0.1
    #: tokens of prompt + response; longer sequences are cut at the end
    max_length: int = 384
    #: drop pairs with |p_chosen - 0.5| below this
    min_margin: float = 0.0
    #: "confidence": draw pairs in proportion to 2 p_chosen - 1; "uniform": hard labels
    weighting: str = "confidence"
    lora: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        for name in ("epochs", "batch_size", "max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, not {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, not {self.max_steps}")
        if not self.learning_rate > 0 or not self.beta > 0:
            raise ValueError(
                f"learning_rate and beta must be > 0, not {self.learning_rate} and {self.beta}"
            )
        if not 0.0 <= self.min_margin < 0.5:
            raise ValueError(f"min_margin must be in [0, 0.5), not {self.min_margin}")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, not {self.weighting!r}")


def oriented(pair: PreferencePair) -> PreferencePair:
    """The pair with ``chosen`` on the side its label prefers (p_chosen >= 0.5)."""
    if pair.p_chosen >= 0.5:
        return pair
    return PreferencePair(
        prompt=pair.prompt,
        chosen=pair.rejected,
        rejected=pair.chosen,
        p_chosen=1.0 - pair.p_chosen,
        group=pair.group,
        line=pair.line,
    )


def confidence_weights(p_chosen: list[float]) -> list[float]:
    """2 p - 1 per pair (p >= 0.5): 0 for a coin flip, 1 for a sure label."""
    return [max(0.0, 2.0 * p - 1.0) for p in p_chosen]


def effective_pairs(weights: list[float]) -> float:
    """(sum w)^2 / sum w^2: how many equally weighted pairs the weighted draw is worth."""
    s2 = sum(w * w for w in weights)
    return sum(weights) ** 2 / s2 if s2 else 0.0


def select_pairs(settings: DPOSettings) -> tuple[list[PreferencePair], dict]:
    """The pairs to train on and a count of what was kept; InputError if none is usable."""
    pairs = [oriented(p) for p in read_preferences(settings.data)]
    kept = filter_by_margin(pairs, settings.min_margin)
    if not kept:
        margins = sorted(p.margin for p in pairs)
        raise InputError(
            f"{settings.data}: no pair has |p_chosen - 0.5| >= --min-margin {settings.min_margin} "
            f"(the largest is {margins[-1]:.4f}); lower --min-margin"
        )
    counts = {"read": len(pairs), "kept": len(kept), "dropped_low_margin": len(pairs) - len(kept)}
    if settings.weighting == "confidence":
        weights = confidence_weights([p.p_chosen for p in kept])
        if not any(weights):
            raise InputError(
                f"{settings.data}: every kept pair has p_chosen = 0.5 (a coin flip), so confidence "
                "weighting has nothing to draw; use --weighting uniform to train on them anyway"
            )
        counts["effective_pairs"] = effective_pairs(weights)
        counts["zero_weight"] = sum(1 for w in weights if w == 0)
    else:
        counts["effective_pairs"] = float(len(kept))
    return kept, counts


def _trainer_class():
    """DPOTrainer with a weighted draw of pairs when the data set carries ``weight``."""
    import torch
    from torch.utils.data import WeightedRandomSampler
    from trl import DPOTrainer

    class WeightedDPOTrainer(DPOTrainer):
        """TRL's DPOTrainer; each pair drawn with probability proportional to its ``weight``."""

        def _get_train_sampler(self, train_dataset=None):
            # ``train_dataset`` arrives with the unused columns removed; the rows are the same
            # as ``self.train_dataset``'s, which still has the weights.
            full = self.train_dataset
            if "weight" not in full.column_names:
                return super()._get_train_sampler(train_dataset)
            generator = torch.Generator().manual_seed(self.args.seed)
            return WeightedRandomSampler(
                full["weight"], num_samples=len(full), replacement=True, generator=generator
            )

    return WeightedDPOTrainer


def preference_dataset(settings: DPOSettings, pairs: list[PreferencePair]):
    """A ``datasets.Dataset`` of the pairs in TRL's format, with ``weight`` when weighting."""
    import datasets

    records = [p.to_trl() for p in pairs]
    if settings.weighting == "confidence":
        for rec, w in zip(records, confidence_weights([p.p_chosen for p in pairs]), strict=True):
            rec["weight"] = w
    datasets.disable_progress_bars()
    try:
        return datasets.Dataset.from_list(records)
    except (TypeError, ValueError) as e:  # pyarrow: text and chat prompts mixed
        raise InputError(
            f"{settings.data}: records mix text and chat-message fields; use one form ({e})"
        ) from e


def _config(settings: DPOSettings, steps: int, work_dir: str) -> dict:
    """DPOConfig arguments: CPU-friendly, quiet, nothing saved by the trainer itself."""
    return dict(
        output_dir=work_dir,
        max_steps=steps,
        per_device_train_batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        lr_scheduler_type="constant",
        beta=settings.beta,
        max_length=settings.max_length,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        seed=settings.seed,
        dataloader_num_workers=0,
        # float32 throughout, and no recomputation: a 135M model fits in memory as it is
        bf16=False,
        gradient_checkpointing=False,
        dataloader_pin_memory=False,
        include_num_input_tokens_seen="non_padding",
    )


def build_trainer(settings: DPOSettings, pairs, model, tokenizer, work_dir: str, callbacks=()):
    """The DPO trainer for these pairs; the reference is a frozen copy of ``model``.

    With LoRA there is no copy: TRL computes the reference with the adapter turned off.
    """
    from transformers.trainer_callback import PrinterCallback
    from trl import DPOConfig

    steps = settings.max_steps or settings.epochs * math.ceil(len(pairs) / settings.batch_size)
    with warnings.catch_warnings():
        # transformers 5 renames gradient_checkpointing; TRL's config still sets the old name
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*checkpointing")
        args = DPOConfig(**_config(settings, steps, work_dir))
    trainer = _trainer_class()(
        model=model,
        ref_model=None if settings.lora else copy.deepcopy(model),
        args=args,
        train_dataset=preference_dataset(settings, pairs),
        processing_class=tokenizer,
        callbacks=list(callbacks),
    )
    trainer.remove_callback(PrinterCallback)  # the progress bar shows the loss instead
    return trainer


def train_dpo(settings: DPOSettings, *, show_progress: bool = True) -> dict:
    """Train a policy with DPO on ``settings.data``; save it to ``settings.out``; return info.

    The info (also written to ``DIR/train.json``) holds the settings, what was kept, the loss
    per step and TRL's reward margins/accuracies of the last step.
    """
    import torch

    from rlaif.backends.llamacpp import _default_threads
    from rlaif.train.models import check_out_dir, load_model_and_tokenizer, save_policy
    from rlaif.train.progress import trainer_progress_callback

    check_out_dir(settings.out)
    pairs, counts = select_pairs(settings)
    torch.set_num_threads(_default_threads())
    model, tokenizer = load_model_and_tokenizer(settings.model, lora=settings.lora)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rlaif-dpo-") as work, warnings.catch_warnings():
        # transformers 5 renames gradient_checkpointing; TRL still uses the old name
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*checkpointing")
        trainer = build_trainer(settings, pairs, model, tokenizer, work)
        progress = trainer_progress_callback("dpo", trainer.args.max_steps, show_progress)
        trainer.add_callback(progress)
        cpu_started = time.process_time()
        trainer.train()
        cpu_seconds = time.process_time() - cpu_started
    logs = [e for e in trainer.state.log_history if "loss" in e]
    runtime = [e["train_runtime"] for e in trainer.state.log_history if "train_runtime" in e]
    last = logs[-1] if logs else {}
    info = {
        "method": "dpo",
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items()},
        "pairs": counts,
        "steps": len(logs),
        "losses": [e["loss"] for e in logs],
        "final_loss": last.get("loss"),
        "last_step": {k: v for k, v in last.items() if k.startswith(("rewards/", "logps/"))},
        "train_seconds": time.perf_counter() - started,
        # the training loop alone and the tokens (prompt + response, both sides) it read
        "train_loop_seconds": runtime[-1] if runtime else None,
        "train_loop_cpu_seconds": cpu_seconds,
        "train_tokens": trainer.state.num_input_tokens_seen,
    }
    train_json = json.dumps(info, indent=2) + "\n"
    save_policy(trainer.model, tokenizer, settings.out, extra={"train.json": train_json})
    return info
