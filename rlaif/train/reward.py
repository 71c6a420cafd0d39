"""A Bradley-Terry reward model trained on the judge's soft labels.

The model reads prompt + response (through the chat template) and outputs one number, the
reward r. Under Bradley-Terry, p(chosen better) = sigmoid(r_chosen - r_rejected); the loss is
the cross-entropy of that against the judge's ``p_chosen``, not against a hard winner, so a pair
the judge called 0.55 pulls the rewards apart far less than one it called 0.95 (and a coin flip
not at all). The model is a transformers sequence classifier with one output
(``AutoModelForSequenceClassification(num_labels=1)``) on top of the chosen base model.

At the end it reports, on pairs of held-out prompts: pairwise accuracy (the reward ranks the
pair as the label does), the Brier score and ECE of sigmoid(r_c - r_r) against ``p_chosen``,
and the same before training, so a reader sees what training changed.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from typing import Any

from rlaif.errors import InputError
from rlaif.train.data import PreferencePair, hard_target, read_preferences, split_pairs
from rlaif.train.settings import PairTrainingSettings


@dataclass
class RewardSettings(PairTrainingSettings):
    """What ``rlaif train reward`` does; defaults sized for the embedded model on a CPU."""

    #: tokens per prompt + response; longer ones keep their end (where the reward is read)
    max_length: int = 512
    #: share of prompts held out for the final metrics
    held_out: float = 0.2
    #: train on hard winners (target 1 or 0; 0.5 for an exact tie) instead of p_chosen
    hard_labels: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.held_out < 1.0:
            raise ValueError(f"held_out must be in [0, 1), not {self.held_out}")


class RewardModel:
    """A trained reward model: ``score`` gives the reward of responses to prompts."""

    def __init__(self, model, tokenizer, max_length: int = 512) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        #: non-padding tokens read by ``rewards`` so far (for throughput)
        self.tokens_seen = 0

    @classmethod
    def load(cls, spec: str, *, num_labels_new: bool = False, max_length: int = 512):
        """Open a checkpoint directory (``hf:DIR`` or DIR) as a reward model.

        ``num_labels_new`` starts a fresh one-output head on a causal LM checkpoint (training);
        otherwise the checkpoint must be a reward model ``rlaif train reward`` wrote.
        """
        import torch
        from transformers import AutoModelForSequenceClassification
        from transformers.utils import logging as hf_logging

        from rlaif.backends.checkpoints import load_tokenizer, resolve_checkpoint
        from rlaif.errors import ModelSpecError

        path = resolve_checkpoint(spec)
        if not num_labels_new:
            config = json.loads((path / "config.json").read_text(encoding="utf-8"))
            if not any(
                a.endswith("ForSequenceClassification") for a in config.get("architectures") or []
            ):
                raise ModelSpecError(
                    f"{spec}: not a reward model (no sequence-classification head); train one "
                    "with 'rlaif train reward --out DIR'"
                )
        tokenizer = load_tokenizer(path)
        tokenizer.truncation_side = "left"  # keep the end of the response: the reward reads it
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # "score.weight newly initialized" is expected here
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                str(path), num_labels=1, dtype=torch.float32
            )
        finally:
            hf_logging.set_verbosity(verbosity)
        model.config.pad_token_id = tokenizer.pad_token_id
        return cls(model, tokenizer, max_length)

    def _encode(self, conversations: list[list[dict]]):
        texts = [self.tokenizer.apply_chat_template(c, tokenize=False) for c in conversations]
        return self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            add_special_tokens=False,
            return_tensors="pt",
        )

    def rewards(self, conversations: list[list[dict]]):
        """Rewards (a 1-D tensor, with gradients) of full conversations ending in a response."""
        batch = self._encode(conversations)
        self.tokens_seen += int(batch["attention_mask"].sum())
        return self.model(**batch.to(self.model.device)).logits[:, 0]

    def score(self, prompts: list[str | list[dict]], responses: list[str]) -> list[float]:
        """Reward of each response to its prompt (text or chat messages), without gradients."""
        import torch

        convs = []
        for prompt, response in zip(prompts, responses, strict=True):
            msgs = (
                list(prompt) if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
            )
            convs.append(msgs + [{"role": "assistant", "content": response}])
        with torch.inference_mode():
            return self.rewards(convs).tolist()


def pair_logits(rm: RewardModel, pairs: list[PreferencePair]):
    """r_chosen - r_rejected for each pair (chosen and rejected in one forward pass)."""
    convs = [p.messages("chosen") for p in pairs] + [p.messages("rejected") for p in pairs]
    r = rm.rewards(convs)
    return r[: len(pairs)] - r[len(pairs) :]


def evaluate_pairs(
    rm: RewardModel, pairs: list[PreferencePair], batch_size: int = 8, progress=None
) -> dict:
    """Pairwise accuracy (with a bootstrap 95% interval), Brier, ECE and soft cross-entropy."""
    import numpy as np
    import torch

    from rlaif.stats import bootstrap_mean_ci, brier, ece

    if not pairs:
        return {"n": 0}
    task = progress.add_task("evaluate", total=len(pairs), info="") if progress else None
    q: list[float] = []
    with torch.inference_mode():
        for i in range(0, len(pairs), batch_size):
            chunk = pairs[i : i + batch_size]
            # float32 before the sigmoid: under bf16 autocast the logits are bf16
            q += torch.sigmoid(pair_logits(rm, chunk).float()).tolist()
            if task is not None:
                progress.advance(task, len(chunk))
    if task is not None:
        progress.remove_task(task)
    qa, pa = np.array(q), np.array([p.p_chosen for p in pairs])
    decided = pa != 0.5  # a label of exactly 0.5 says neither is better: no right answer
    correct = ((qa > 0.5) == (pa > 0.5)).astype(float)[decided]
    eps = 1e-7
    qc = np.clip(qa, eps, 1 - eps)
    xent = float(np.mean(-(pa * np.log(qc) + (1 - pa) * np.log(1 - qc))))
    return {
        "n": len(pairs),
        "accuracy": float(correct.mean()) if correct.size else None,
        # pairs of one prompt are resampled together (a cluster bootstrap by prompt)
        "accuracy_ci": (
            bootstrap_mean_ci(correct, clusters=[p.group for p in pairs if p.p_chosen != 0.5])
            if correct.size
            else None
        ),
        "brier": brier(pa, qa),
        "brier_constant_half": brier(pa, np.full_like(pa, 0.5)),
        "ece": ece(pa, qa),
        "cross_entropy": xent,
        "mean_p_model": float(qa.mean()),
        "mean_p_label": float(pa.mean()),
    }


def _split(settings: RewardSettings, pairs: list[PreferencePair]):
    """(train, held-out) pairs; InputError if the held-out split leaves none to train on."""
    train, held = split_pairs(pairs, settings.held_out, settings.seed)
    if not train:
        raise InputError(f"{settings.data}: no pairs left to train on after the held-out split")
    return train, held


def reward_example(settings: RewardSettings) -> str:
    """The first training pair exactly as the reward model reads it, decoded from its token ids."""
    from rlaif.backends.checkpoints import load_tokenizer, resolve_checkpoint
    from rlaif.train.example import pair_example

    train, _ = _split(settings, read_preferences(settings.data))
    first = train[0]
    tokenizer = load_tokenizer(resolve_checkpoint(settings.model))
    tokenizer.truncation_side = "left"  # as RewardModel.load sets it
    rm = RewardModel(None, tokenizer, settings.max_length)
    batch = rm._encode([first.messages("chosen"), first.messages("rejected")])
    rows = {}
    for i, side in enumerate(("chosen", "rejected")):
        keep = batch["attention_mask"][i].bool()
        rows[side] = (batch["input_ids"][i][keep].tolist(), None)
    p = hard_target(first.p_chosen) if settings.hard_labels else first.p_chosen
    header = (
        f"first training pair ({settings.data}:{first.line}, p_chosen {first.p_chosen:.4f}, "
        f"target {p:.4f}), decoded from the token ids the reward model reads; the reward is "
        "read at the last token of each sequence:"
    )
    return pair_example(tokenizer, header, rows)


@dataclass
class _Training:
    """A reward model ready to train: under a launcher, this process's part of a DDP run."""

    accelerator: Any
    rm: RewardModel
    #: the model as the accelerator prepared it (wrapped in DDP under a launcher)
    wrapped: Any
    #: the same model unwrapped, for the held-out metrics and the saving
    plain: Any
    optimizer: Any


def _prepare(settings: RewardSettings) -> _Training:
    """A fresh reward model on the base model, its optimizer, both prepared by accelerate."""
    import torch
    from accelerate import Accelerator

    from rlaif.backends.accelerator import device
    from rlaif.train.models import add_lora

    # one process, or each of a launch's (accelerate launch: DDP, the launcher's device)
    accelerator = Accelerator(cpu=device() == "cpu")
    torch.manual_seed(settings.seed)
    rm = RewardModel.load(settings.model, num_labels_new=True, max_length=settings.max_length)
    if settings.lora:
        rm.model = add_lora(rm.model, task_type="SEQ_CLS")
    optimizer = torch.optim.AdamW(
        [p for p in rm.model.parameters() if p.requires_grad], lr=settings.learning_rate
    )
    # float32 weights on the process's device; the forward passes autocast to bf16 on a GPU
    wrapped, optimizer = accelerator.prepare(rm.model, optimizer)
    return _Training(accelerator, rm, wrapped, accelerator.unwrap_model(wrapped), optimizer)


def _batches(
    train: list[PreferencePair], settings: RewardSettings, world: int, index: int, total: int
):
    """This process's batch for each of ``total`` steps.

    Every process draws the same global batch of batch_size x processes pairs (same seed) and
    trains on its own slice of it; DDP averages the gradients, so a step is the one a single
    process would take on the whole global batch.
    """
    global_batch = settings.batch_size * world
    rng = random.Random(settings.seed)
    order: list[PreferencePair] = []
    for _ in range(total):
        if len(order) < global_batch:
            epoch = list(train)
            rng.shuffle(epoch)
            order += epoch
        yield order[index * settings.batch_size : (index + 1) * settings.batch_size]
        order = order[global_batch:]


def _step(t: _Training, batch: list[PreferencePair], hard_labels: bool):
    """One optimizer step on this process's batch: (loss, accuracy) of the whole global batch.

    The accuracy is the share of the global batch's decided pairs (p_chosen != 0.5) that the
    reward ranks as the label does; None when no pair is decided.
    """
    import torch
    import torch.nn.functional as F

    from rlaif.backends.accelerator import autocast

    target = torch.tensor(
        [hard_target(p.p_chosen) if hard_labels else p.p_chosen for p in batch],
        dtype=torch.float32,
        device=t.accelerator.device,
    )
    with autocast():
        logits = pair_logits(t.rm, batch)
        loss = F.binary_cross_entropy_with_logits(logits, target)
    # the whole global batch's logits and targets, for the logged loss and accuracy
    all_logits, all_target = t.accelerator.gather((logits.detach().float(), target))
    decided = all_target != 0.5
    accuracy = (
        ((all_logits > 0) == (all_target > 0.5))[decided].float().mean().item()
        if bool(decided.any())
        else None
    )
    t.optimizer.zero_grad()
    t.accelerator.backward(loss)
    t.accelerator.clip_grad_norm_(t.wrapped.parameters(), 1.0)
    t.optimizer.step()
    return t.accelerator.reduce(loss.detach(), reduction="mean").item(), accuracy


def _optimize(t: _Training, settings: RewardSettings, train: list[PreferencePair], progress):
    """Train on the pairs: (losses, accuracies, the loop's seconds and tokens), one a step."""
    import torch

    world, index = t.accelerator.num_processes, t.accelerator.process_index
    steps_per_epoch = math.ceil(len(train) / (settings.batch_size * world))
    # --max-steps overrides the epochs (as in transformers' Trainer)
    total = settings.max_steps or steps_per_epoch * settings.epochs
    losses: list[float] = []
    accuracies: list[float | None] = []
    task = progress.add_task("reward", total=total, info="")
    t.rm.model = t.wrapped
    t.rm.model.train()
    loop_started, tokens_before = time.perf_counter(), t.rm.tokens_seen
    cpu_started = time.process_time()
    for batch in _batches(train, settings, world, index, total):
        loss, accuracy = _step(t, batch, settings.hard_labels)
        accuracies.append(accuracy)
        losses.append(loss)
        progress.update(task, advance=1, info=f"loss {loss:.4f}")
    loop = {
        # the optimizer steps alone (no evaluation) and the tokens they read
        "train_loop_seconds": time.perf_counter() - loop_started,
        "train_loop_cpu_seconds": time.process_time() - cpu_started,
    }
    tokens = torch.tensor(t.rm.tokens_seen - tokens_before, device=t.accelerator.device)
    loop["train_tokens"] = int(t.accelerator.reduce(tokens, reduction="sum").item())
    t.rm.model = t.plain
    return losses, accuracies, loop


def _held_out_metrics(rm: RewardModel, held: list[PreferencePair], progress, main: bool):
    """The held-out metrics of the model as it is now; None except on the main process."""
    from rlaif.backends.accelerator import autocast

    rm.model.eval()
    if not main:  # the held-out metrics are the main process's to report
        return None
    with autocast():
        return evaluate_pairs(rm, held, progress=progress)


def train_reward(settings: RewardSettings, *, show_progress: bool = True) -> dict:
    """Train a reward model on ``settings.data``; save it to ``settings.out``; return the info.

    The info (also written to ``DIR/train.json``, and drawn in ``DIR/training_curves.png``)
    holds the settings, the pair counts, the loss and the batch's pairwise accuracy per step
    and the held-out metrics before and after training.

    Under a launcher (``accelerate launch``) ``batch_size`` is per process and the processes
    train one model together (DDP); only the main one measures the held-out pairs, saves the
    model and returns them (the others' ``held_out`` is None).
    """
    import torch

    from rlaif.backends.llamacpp import _default_threads
    from rlaif.train import distributed
    from rlaif.train.models import check_out_dir, save_trained
    from rlaif.train.progress import training_progress
    from rlaif.train.provenance import settings_record, training_record

    check_out_dir(settings.out)
    pairs = read_preferences(settings.data)
    train, held = _split(settings, pairs)
    torch.set_num_threads(_default_threads())
    t = _prepare(settings)
    main = distributed.is_main_process()
    started = time.perf_counter()
    with training_progress(show_progress and main) as progress:
        before = _held_out_metrics(t.rm, held, progress, main)
        losses, accuracies, loop = _optimize(t, settings, train, progress)
        after = _held_out_metrics(t.rm, held, progress, main)
    info = {
        "method": "reward",
        "settings": settings_record(settings),
        "pairs": {"total": len(pairs), "train": len(train), "held_out": len(held)},
        "steps": len(losses),
        "losses": losses,
        "accuracies": accuracies,
        "final_loss": losses[-1],
        "held_out_before": before,
        "held_out": after,
        "train_seconds": time.perf_counter() - started,
        **loop,
        "train_prompts": training_record([p.prompt for p in train], settings.model),
        **distributed.batch_record(settings.batch_size),
    }
    save_trained(t.rm.model, t.rm.tokenizer, settings.out, info)
    return info
