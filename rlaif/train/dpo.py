"""DPO on AI-labelled preferences: TRL's DPOTrainer with a per-pair soft-label loss.

The soft loss (``loss="soft"``; the default ``"auto"`` uses it for every pair a judge model
labelled) is the conservative-DPO loss with each pair's own
label smoothing, e_i = 1 - p_i, where p_i is the judge's ``p_chosen``:

    loss_i = -p_i log s(b h_i) - (1 - p_i) log s(-b h_i)

with h_i = (log pi(chosen) - log ref(chosen)) - (log pi(rejected) - log ref(rejected)). It is
the cross-entropy of DPO's implied preference s(b h) against the soft label; its gradient is
b (s(b h) - p) dh, so it stops pushing a pair once the policy's implied preference reaches the
judge's p: a pair labelled 0.55 is pulled to 0.55, not to certainty. TRL's ``label_smoothing``
is the same loss with one e for the whole data set (and its ``robust`` loss divides by
1 - 2e, which explodes for labels near 0.5), so neither fits per-pair labels. For a pair with
p = 1 (a human label, or a TRL file without ``p_chosen``) the soft loss *is* TRL's sigmoid
loss, so human-labelled records get the hard loss they should without a switch.
``loss="hard"`` trains every pair as a sure win (target 1; an exact tie, p = 0.5, gets 0.5).
``loss="auto"`` (the default) is hard for the pairs a rule decided (``label_source: rule``) and
soft for the others: a rule judge states its verdict as p = 0.731, which the soft loss would
read as a target to stop at (see :class:`DPOSettings`).

``nll_weight`` w adds w times the chosen response's negative log-likelihood per token (the
RPO loss of Pang et al. 2024, TRL's ``rpo_alpha``; default 0, plain DPO): DPO alone can widen
the margin by pushing both responses down, which on a 135M model leaves more answers stuck in
repetition loops, and the NLL term keeps the chosen answers likely. It is also supervised
fine-tuning on the chosen answers, which teaches whatever they share whatever the labels say.

The soft loss is not combined with sampling pairs in proportion to 2p - 1 (hard wins drawn by
confidence): that matches the soft objective's gradient only at the start of training (h = 0),
never stops pushing a drawn pair, and together with the soft target would count the label twice.

``min_margin`` drops pairs with |p_chosen - 0.5| below it (default 0: the embedded 135M
judge's labels sit within about 0.01 of a coin flip). Pairs whose ``p_chosen`` is below 0.5
(possible in files not written by ``rlaif run``) are turned around first.

Every record is trained in TRL's conversational form (prompt = message list, chosen/rejected =
one assistant message each), so TRL applies the tokenizer's chat template, as generation, the
judge, GRPO and the reward model do. Only a tokenizer without a chat template (a base model)
gets text records, which TRL tokenizes as ``prompt + chosen``.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass

from rlaif.errors import InputError
from rlaif.rules import completion_text, is_looping
from rlaif.train.data import PreferencePair, filter_by_margin, hard_target, read_preferences
from rlaif.train.settings import PairTrainingSettings
from rlaif.train.trl_common import common_args, quiet_checkpointing_warning, quiet_tqdm

LOSSES = ("auto", "soft", "hard")
#: what to do with a pair whose chosen answer is degenerate (cut off, or stuck in a loop)
DEGENERATE_CHOSEN = ("keep", "drop")
#: the dataset column (and batch key) holding each pair's training target
TARGET = "dpo_target"


@dataclass
class DPOSettings(PairTrainingSettings):
    """What ``rlaif train dpo`` does; defaults sized for the embedded model on a 2-core CPU."""

    #: 2 epochs (at the learning rate 2e-5 of PairTrainingSettings); the effect tests measure
    #: what DPO alone does to the embedded model at 2 epochs of 3e-5 on held-out prompts
    #: (tests/test_effect_training.py, docs/results/effect-tests.md)
    epochs: int = 2
    #: DPO's KL strength: higher keeps the policy closer to the reference
    beta: float = 0.1
    #: drop pairs with |p_chosen - 0.5| below this
    min_margin: float = 0.0
    #: "soft": each pair's target is its p_chosen; "hard": every pair is a sure win; "auto":
    #: hard for a pair a rule decided (``label_source: rule``), soft for the others. A rule's
    #: verdict is a fact about the answers, but a rule judge states it as p = 0.731 (a one-point
    #: score difference through the sigmoid), a target the soft loss stops at: in the loop
    #: benchmark's rule rows the hard loss won 83% against the base where the soft loss won 60%,
    #: three seeds each (docs/results/loop-effect.md). A judge model's p is its confidence, and
    #: the soft loss keeps it
    loss: str = "auto"
    #: weight of the chosen response's per-token NLL added to the loss (0: plain DPO); see
    #: docs/guides/training.md for what 1 did to looping answers and to the shuffled-label control
    nll_weight: float = 0.0
    #: "drop": leave out pairs whose chosen answer was cut at the token limit
    #: (``chosen_truncated``) or is stuck in a loop (:func:`rlaif.rules.is_looping`), so DPO
    #: never pulls towards a broken answer (such answers may still be rejected); "keep": train
    #: every pair as labelled. "keep" stays the default: in the loop benchmark's rule rows
    #: (docs/results/loop-effect.md) "drop" left out 2% of the pairs (23 of 973) and its win
    #: rate and looping share were within seed noise of "keep", while 91% of the
    #: embedded model's 64-token samples are cut at the limit (tests/data/effect_responses.jsonl),
    #: so with an AI judge "drop" would leave about one pair in ten
    degenerate_chosen: str = "keep"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.beta > 0:
            raise ValueError(f"beta must be > 0, not {self.beta}")
        if not 0.0 <= self.min_margin < 0.5:
            raise ValueError(f"min_margin must be in [0, 0.5), not {self.min_margin}")
        if not self.nll_weight >= 0:
            raise ValueError(f"nll_weight must be >= 0, not {self.nll_weight}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, not {self.loss!r}")
        if self.degenerate_chosen not in DEGENERATE_CHOSEN:
            raise ValueError(
                f"degenerate_chosen must be one of {DEGENERATE_CHOSEN}, not "
                f"{self.degenerate_chosen!r}"
            )


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
        chosen_truncated=pair.rejected_truncated,
        rejected_truncated=pair.chosen_truncated,
        label_source=pair.label_source,
    )


def target(pair: PreferencePair, loss: str) -> float:
    """The probability the loss pulls DPO's implied preference towards, for an oriented pair.

    ``auto`` is ``hard`` for a pair a rule decided and ``soft`` for the others.
    """
    if loss == "hard" or (loss == "auto" and pair.label_source == "rule"):
        return hard_target(pair.p_chosen)
    return pair.p_chosen


def degenerate(pair: PreferencePair) -> bool:
    """Whether the chosen answer of an oriented pair was cut at the token limit or loops."""
    return bool(pair.chosen_truncated) or is_looping(completion_text(pair.chosen))


def select_pairs(settings: DPOSettings) -> tuple[list[PreferencePair], dict]:
    """The pairs to train on and a count of what was kept; InputError if none is usable."""
    pairs = [oriented(p) for p in read_preferences(settings.data)]
    kept = filter_by_margin(pairs, settings.min_margin)
    dropped_degenerate = 0
    if settings.degenerate_chosen == "drop":
        usable = [p for p in kept if not degenerate(p)]
        dropped_degenerate = len(kept) - len(usable)
        if kept and not usable:
            raise InputError(
                f"{settings.data}: every pair's chosen answer was cut at the token limit or is "
                f"stuck in a loop ({len(kept)} pairs); raise --max-tokens when generating, or "
                "keep them with --degenerate-chosen keep (rlaif loop: --dpo-degenerate-chosen keep)"
            )
        kept = usable
    if not kept:
        margins = sorted(p.margin for p in pairs)
        raise InputError(
            f"{settings.data}: no pair has |p_chosen - 0.5| >= --min-margin {settings.min_margin} "
            f"(the largest is {margins[-1]:.4f}); lower --min-margin"
        )
    targets = [target(p, settings.loss) for p in kept]
    if all(t == 0.5 for t in targets):
        raise InputError(
            f"{settings.data}: every kept pair has p_chosen = 0.5 (a coin flip): neither response "
            "is better, so DPO has nothing to learn from them"
        )
    counts = {
        "read": len(pairs),
        "kept": len(kept),
        "dropped_low_margin": len(pairs) - len(kept) - dropped_degenerate,
        "dropped_degenerate_chosen": dropped_degenerate,
        "ties": sum(1 for p in kept if p.p_chosen == 0.5),
        "mean_target": sum(targets) / len(targets),
    }
    return kept, counts


def soft_dpo_loss(h, p, beta: float):
    """Per-pair loss -p log s(b h) - (1 - p) log s(-b h) (tensors h and p, one entry a pair)."""
    import torch.nn.functional as F

    return -(p * F.logsigmoid(beta * h) + (1 - p) * F.logsigmoid(-beta * h))


def sequence_logps(outputs, completion_mask):
    """Sum of the log-probabilities of each row's completion tokens, as TRL reduces them.

    ``outputs`` is TRL's fused-LM-head output (``log_probs``: one per next token, zero where
    the label is not a completion token).
    """
    return outputs.log_probs[:, -(completion_mask.size(1) - 1) :].sum(dim=1)


def chosen_nll(logps, completion_mask):
    """Mean over the chosen rows (the first half of the batch) of -log p per completion token."""
    tokens = completion_mask.sum(dim=1).clamp(min=1).to(logps.dtype)
    chosen_logps, _ = logps.chunk(2, dim=0)
    chosen_tokens, _ = tokens.chunk(2, dim=0)
    return (-chosen_logps / chosen_tokens).mean()


def _collator_class():
    """TRL's preference collator, with each pair's target in the batch."""
    from dataclasses import dataclass as _dataclass

    import torch
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    @_dataclass
    class TargetCollator(DataCollatorForPreference):
        """TRL's preference collator; the batch also holds each pair's target."""

        def torch_call(self, examples):
            batch = super().torch_call(examples)
            batch[TARGET] = torch.tensor([e[TARGET] for e in examples], dtype=torch.float32)
            return batch

    return TargetCollator


def _gathered_ref_logps(trainer, dataset, batch_size: int):
    """The dataset with the reference log-probs of every pair, computed by all processes.

    TRL caches the reference log-probs in a file that only the main process writes, next to
    the dataset's own cache file; an in-memory dataset (ours) has none, so each process looks
    in its own temporary directory and the others never find the file. With several processes
    they are computed here as TRL does (each process its share of the pairs, gathered in
    order) and kept in memory by every process.
    """
    import torch
    from torch.utils.data import DataLoader
    from trl.models import prepare_deepspeed

    loader = trainer.accelerator.prepare(
        DataLoader(
            dataset,
            batch_size=batch_size,
            collate_fn=trainer.data_collator,
            num_workers=trainer.args.dataloader_num_workers,
            pin_memory=trainer.args.dataloader_pin_memory,
            shuffle=False,
        )
    )
    model = trainer.model
    if trainer.is_deepspeed_enabled:  # ZeRO shards the parameters: an inference engine
        if trainer._precompute_engine is None:
            trainer._precompute_engine = prepare_deepspeed(trainer.model, trainer.accelerator)
        model = trainer._precompute_engine
    chosen, rejected = [], []
    for batch in loader:
        logps = trainer.accelerator.gather_for_metrics(trainer.compute_ref_log_probs(model, batch))
        chosen.append(logps[0].cpu())
        rejected.append(logps[1].cpu())
    dataset = dataset.add_column("ref_chosen_logps", torch.cat(chosen).tolist())
    return dataset.add_column("ref_rejected_logps", torch.cat(rejected).tolist())


def _trainer_class():
    """TRL's DPOTrainer with the per-pair soft-label loss."""
    from trl import DPOTrainer

    class SoftLabelDPOTrainer(DPOTrainer):
        """TRL's DPOTrainer with the per-pair soft-label loss (reference log-probs precomputed).

        ``nll_weight`` (set after construction) adds the chosen responses' per-token NLL.

        TRL's own loss computation still runs, for its logged metrics (reward margins and
        accuracies, log-probs); the loss returned for the optimizer is :func:`soft_dpo_loss`
        of the same forward pass, whose output a thin wrapper around the model keeps.
        """

        def _set_signature_columns_if_needed(self):
            super()._set_signature_columns_if_needed()
            if TARGET not in self._signature_columns:
                self._signature_columns = [*self._signature_columns, TARGET]

        def _precompute_ref_logps(self, dataset, name, batch_size):
            if self.accelerator.num_processes == 1:
                return super()._precompute_ref_logps(dataset, name, batch_size)
            return _gathered_ref_logps(self, dataset, batch_size)

        def compute_ref_log_probs(self, model, inputs):
            inputs = {k: v for k, v in inputs.items() if k != TARGET}
            return super().compute_ref_log_probs(model, inputs)

        def _compute_loss(self, model, inputs, return_outputs):
            inputs = dict(inputs)
            p = inputs.pop(TARGET)
            if "ref_chosen_logps" not in inputs:
                raise RuntimeError("the soft-label loss needs precompute_ref_log_probs=True")
            kept = []

            def forward(*args, **kwargs):
                kept.append(model(*args, **kwargs))
                return kept[-1]

            super()._compute_loss(forward, inputs, return_outputs=False)  # TRL's loss unused
            outputs = kept[0]
            logps = sequence_logps(outputs, inputs["completion_mask"])
            chosen, rejected = logps.chunk(2, dim=0)
            h = (chosen - inputs["ref_chosen_logps"]) - (rejected - inputs["ref_rejected_logps"])
            loss = soft_dpo_loss(h, p.to(h.dtype), self.beta).mean()
            if self.nll_weight:
                loss = loss + self.nll_weight * chosen_nll(logps, inputs["completion_mask"])
            return (loss, outputs) if return_outputs else loss

    return SoftLabelDPOTrainer


def _trainer_classes():
    """(trainer, collator) classes: TRL's, carrying each pair's target to the soft loss."""
    return _trainer_class(), _collator_class()


def preference_dataset(settings: DPOSettings, pairs: list[PreferencePair], tokenizer):
    """A ``datasets.Dataset`` of the pairs in TRL's format, with each pair's target.

    Conversational records (the chat template applies) unless the tokenizer has no chat
    template; then text records, and InputError if a record is chat messages.
    """
    import datasets

    conversational = bool(getattr(tokenizer, "chat_template", None))
    if not conversational:
        chat = next((p for p in pairs if p.is_chat), None)
        if chat is not None:
            raise InputError(
                f"{settings.data}:{chat.line}: chat-message records need a model whose "
                f"tokenizer has a chat template, and {settings.model} has none"
            )
    records = [
        {**p.to_trl(conversational=conversational), TARGET: target(p, settings.loss)} for p in pairs
    ]
    datasets.disable_progress_bars()
    # one form throughout (pyarrow cannot mix text and message lists in a column)
    return datasets.Dataset.from_list(records)


def _config(settings: DPOSettings, steps: int, work_dir: str) -> dict:
    """DPOConfig arguments: CPU-friendly, quiet, nothing saved by the trainer itself."""
    return dict(
        **common_args(settings.seed),
        # the reference's log-probs, once per pair before training; the soft loss reads them
        precompute_ref_log_probs=True,
        output_dir=work_dir,
        max_steps=steps,
        per_device_train_batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        lr_scheduler_type="constant",
        beta=settings.beta,
        max_length=settings.max_length,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        include_num_input_tokens_seen="non_padding",
        # every parameter takes part in the loss: no search for unused ones under DDP
        ddp_find_unused_parameters=False,
    )


def build_trainer(settings: DPOSettings, pairs, model, tokenizer, work_dir: str, callbacks=()):
    """The DPO trainer for these pairs; the reference is ``model`` as it is now.

    The reference's log-probabilities of every pair are computed when the trainer is built
    (TRL's ``precompute_ref_log_probs``), so no frozen copy of the model is kept; with LoRA
    TRL computes them with the adapter turned off.
    """
    from transformers.trainer_callback import PrinterCallback
    from trl import DPOConfig

    from rlaif.train import distributed

    # an epoch is one pass over the pairs in global batches (every process's batch together)
    global_batch = settings.batch_size * distributed.world_size()
    steps = settings.max_steps or settings.epochs * math.ceil(len(pairs) / global_batch)
    with quiet_checkpointing_warning():
        args = DPOConfig(**_config(settings, steps, work_dir))
    trainer_class, collator_class = _trainer_classes()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    collator = collator_class(
        pad_token_id=tokenizer.pad_token_id,
        max_length=args.max_length,
        truncation_mode=args.truncation_mode,
        pad_to_multiple_of=args.pad_to_multiple_of,
    )
    with quiet_tqdm():
        trainer = trainer_class(
            model=model,
            ref_model=None,
            args=args,
            data_collator=collator,
            train_dataset=preference_dataset(settings, pairs, tokenizer),
            processing_class=tokenizer,
            callbacks=list(callbacks),
        )
    trainer.remove_callback(PrinterCallback)  # the progress bar shows the loss instead
    trainer.nll_weight = settings.nll_weight
    return trainer


def dpo_example(settings: DPOSettings) -> str:
    """The first training pair exactly as the model receives it, decoded from its token ids."""
    from rlaif.train.example import pair_example
    from rlaif.train.models import load_model_and_tokenizer

    pairs, _ = select_pairs(settings)
    model, tokenizer = load_model_and_tokenizer(settings.model, lora=settings.lora)
    with tempfile.TemporaryDirectory(prefix="rlaif-dpo-") as work, quiet_checkpointing_warning():
        # one pair: TRL's reference pass over the data set costs one forward
        trainer = build_trainer(settings, pairs[:1], model, tokenizer, work)
        batch = trainer.data_collator([trainer.train_dataset[0]])
    first = pairs[0]
    header = (
        f"first training pair ({settings.data}:{first.line}, p_chosen {first.p_chosen:.4f}, "
        f"target {float(batch[TARGET][0]):.4f}, --loss {settings.loss}), decoded from the "
        "token ids the model receives:"
    )
    rows = {}
    for i, side in enumerate(("chosen", "rejected")):
        keep = batch["attention_mask"][i].bool()
        rows[side] = (
            batch["input_ids"][i][keep].tolist(),
            batch["completion_mask"][i][keep].tolist(),
        )
    return pair_example(tokenizer, header, rows)


def train_dpo(settings: DPOSettings, *, show_progress: bool = True) -> dict:
    """Train a policy with DPO on ``settings.data``; save it to ``settings.out``; return info.

    Under a launcher (``accelerate launch``) every process trains and returns the info; only
    the main one saves (:mod:`rlaif.train.distributed`), and ``batch_size`` is per process.

    The info (also written to ``DIR/train.json``) holds the settings, what was kept, the loss
    per step, TRL's reward margins/accuracies of the last step, the record form trained on
    and the keys of the prompts trained on (:mod:`rlaif.train.provenance`).
    """
    import torch

    from rlaif.backends.llamacpp import _default_threads
    from rlaif.train import distributed
    from rlaif.train.models import check_out_dir, load_model_and_tokenizer, save_trained
    from rlaif.train.progress import trainer_progress_callback
    from rlaif.train.provenance import settings_record, training_record

    check_out_dir(settings.out)
    show_progress = show_progress and distributed.is_main_process()  # one bar, not one a rank
    pairs, counts = select_pairs(settings)
    torch.set_num_threads(_default_threads())
    model, tokenizer = load_model_and_tokenizer(settings.model, lora=settings.lora)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rlaif-dpo-") as work, quiet_checkpointing_warning():
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
        "settings": settings_record(settings),
        "pairs": counts,
        "steps": len(logs),
        "losses": [e["loss"] for e in logs],
        "final_loss": last.get("loss"),
        "last_step": {k: v for k, v in last.items() if k.startswith(("rewards/", "logps/"))},
        # TRL's implicit-reward accuracy and margin at every step, for the training curves
        "step_metrics": [
            {
                "step": e.get("step"),
                **{k: v for k, v in e.items() if k in ("rewards/accuracies", "rewards/margins")},
            }
            for e in logs
        ],
        "train_seconds": time.perf_counter() - started,
        # the training loop alone and the tokens (prompt + response, both sides) it read
        "train_loop_seconds": runtime[-1] if runtime else None,
        "train_loop_cpu_seconds": cpu_seconds,
        "train_tokens": trainer.state.num_input_tokens_seen,
        "format": "conversational" if getattr(tokenizer, "chat_template", None) else "text",
        "train_prompts": training_record([p.prompt for p in pairs], settings.model),
        **distributed.batch_record(settings.batch_size, trainer.args.gradient_accumulation_steps),
    }
    save_trained(trainer.model, tokenizer, settings.out, info)
    return info
