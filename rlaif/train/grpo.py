"""Online RL from AI feedback: TRL's GRPOTrainer with the judge (or a reward model) as reward.

For each prompt the policy samples ``num_generations`` responses; each is scored by the reward
(:mod:`rlaif.train.judge_reward`: the judge's expected 1-9 score under a principle sampled per
prompt, in [-1, 1]; or a trained reward model's score); a response's advantage is its reward
relative to the other responses of the same prompt, and the policy is moved towards the
better ones. A KL penalty (``beta``) to the starting policy keeps a weak judge from being
gamed too quickly.

The trained policy is saved as a checkpoint directory (``hf:DIR``) with ``train.json``: the
settings and, per step, the loss, the mean reward and the KL (drawn in ``training_curves.png``).
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from rlaif.errors import InputError
from rlaif.train.trl_common import common_args, quiet_checkpointing_warning


@dataclass
class GRPOSettings:
    """What ``rlaif train grpo`` does; defaults sized for the embedded model on a CPU."""

    #: prompts file (any format ``rlaif run --prompts`` reads)
    data: str
    out: Path
    #: the policy to train: smollm2 or hf:DIR
    model: str = "smollm2"
    #: "judge" (direct RLAIF) or the directory of a reward model (``rlaif train reward``)
    reward: str = "judge"
    #: the judge model string, when ``reward == "judge"``; or the URL of ``rlaif serve``
    #: (its token from ``$RLAIF_SERVE_TOKEN``)
    judge: str = "smollm2"
    constitution: str = "default"
    #: with the judge: "pointwise" (each response rated alone) or "group" (each response's
    #: mean probability of beating the others of its prompt, pairs judged in both orders)
    judge_mode: str = "pointwise"
    max_steps: int = 10
    #: prompts per optimizer step; each gets ``num_generations`` sampled responses
    prompts_per_step: int = 2
    num_generations: int = 4
    max_completion_length: int = 64
    learning_rate: float = 1e-6
    #: KL coefficient to the starting policy (the GRPO paper's 0.04; 0 drops the reference)
    beta: float = 0.04
    temperature: float = 1.0
    lora: bool = False
    limit: int | None = None
    seed: int = 0
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        for name in ("max_steps", "prompts_per_step", "max_completion_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, not {getattr(self, name)}")
        if self.num_generations < 2:
            raise ValueError(
                f"num_generations must be >= 2 (GRPO compares responses of one prompt), "
                f"not {self.num_generations}"
            )
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, not {self.learning_rate}")
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, not {self.beta}")
        if self.judge_mode not in ("pointwise", "group"):
            raise ValueError(f"judge_mode must be 'pointwise' or 'group', not {self.judge_mode!r}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 (GRPO samples), not {self.temperature}")


def prompt_dataset(path: str, limit: int | None = None):
    """A ``datasets.Dataset`` of distinct prompts as chat messages (``prompt`` column)."""
    from datasets import Dataset

    from rlaif.prompts import load_prompts

    seen: set[str] = set()
    rows = []
    for p in load_prompts(path, limit=limit):
        key = json.dumps(p.chat())
        if key not in seen:
            seen.add(key)
            rows.append({"prompt": p.chat()})
    if not rows:
        raise InputError(f"{path}: no prompts")
    return Dataset.from_list(rows)


def make_reward(settings: GRPOSettings):
    """The reward function the settings name: the judge, or a reward-model checkpoint."""
    if settings.reward == "judge":
        from rlaif.backends import load_backend
        from rlaif.constitution import load_constitution
        from rlaif.remote import is_url, remote_reward
        from rlaif.rules import TrainingReward, is_programmatic, load_score_function
        from rlaif.train.judge_reward import GroupJudgeReward, JudgeReward

        group = settings.judge_mode == "group"
        if is_url(settings.judge):  # a served judge (rlaif serve); failed items come back None
            return remote_reward(
                settings.judge,
                group=group,
                max_completion_length=settings.max_completion_length,
            )
        if group:
            return GroupJudgeReward(
                settings.judge,
                load_constitution(settings.constitution),
                seed=settings.seed,
                max_completion_length=settings.max_completion_length,
            )
        if is_programmatic(settings.judge):  # a TRL reward function, called by TRL itself
            # it gets ``truncated`` (cut at max_completion_length) beside TRL's keywords; the
            # end-of-answer token is set once the tokenizer is loaded (train_grpo)
            return TrainingReward(
                load_score_function(settings.judge),
                max_completion_length=settings.max_completion_length,
            )

        return JudgeReward(
            load_backend(settings.judge),
            load_constitution(settings.constitution),
            seed=settings.seed,
        )
    from rlaif.train.judge_reward import RewardModelReward

    return RewardModelReward(settings.reward)


def _check_inputs(settings: GRPOSettings):
    """Find everything wrong with the input before any model is loaded."""
    from rlaif.backends.checkpoints import resolve_checkpoint
    from rlaif.constitution import load_constitution
    from rlaif.train.models import check_out_dir

    check_out_dir(settings.out)
    dataset = prompt_dataset(settings.data, settings.limit)
    if settings.reward == "judge":
        from rlaif.backends import check_judge_spec
        from rlaif.remote import is_url, remote_reward

        if is_url(settings.judge):
            remote_reward(settings.judge).health()  # the server answers before training starts
        else:
            check_judge_spec(settings.judge)
        load_constitution(settings.constitution)
    else:
        resolve_checkpoint(settings.reward)
    if settings.model != "smollm2":
        resolve_checkpoint(settings.model)
    return dataset


def _history(log_history: list[dict]) -> list[dict]:
    keep = ("loss", "reward", "reward_std", "kl", "completions/mean_length")
    steps = []
    for entry in log_history:
        if "loss" in entry and "step" in entry:
            steps.append({"step": entry["step"], **{k: entry.get(k) for k in keep}})
    return steps


def grpo_example(settings: GRPOSettings) -> str:
    """The first prompt exactly as the policy receives it, decoded from its token ids.

    TRL's GRPOTrainer renders a conversational prompt with the chat template and the
    generation prompt (``add_generation_prompt=True``); the sampled response follows it.
    """
    from rlaif.backends.checkpoints import load_tokenizer, resolve_checkpoint
    from rlaif.train.example import decode, marker

    dataset = prompt_dataset(settings.data, settings.limit)
    tokenizer = load_tokenizer(resolve_checkpoint(settings.model))
    ids = tokenizer.apply_chat_template(
        conversation=[dataset[0]["prompt"]],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
    )["input_ids"][0]
    return (
        f"first training prompt ({settings.data}), decoded from the token ids the policy "
        f"receives; each of the --num-generations {settings.num_generations} sampled "
        "responses follows the marker, and the loss reads only those:\n"
        f"=== prompt: {len(ids)} tokens ===\n"
        f"{decode(tokenizer, list(ids))}{marker('sampled')}\n"
    )


def _grpo_args(settings: GRPOSettings, work_dir: str):
    """The GRPOConfig of these settings; TRL's output directory is ``work_dir``."""
    from trl import GRPOConfig

    return GRPOConfig(
        **common_args(settings.seed),
        output_dir=work_dir,
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.prompts_per_step * settings.num_generations,
        num_generations=settings.num_generations,
        max_completion_length=settings.max_completion_length,
        learning_rate=settings.learning_rate,
        beta=settings.beta,
        temperature=settings.temperature,
        **settings.extra,
    )


def _info(settings: GRPOSettings, dataset, steps: list[dict], args, started: float) -> dict:
    """What ``train.json`` holds: the settings, the steps, the rewards and the prompts."""
    from rlaif.train import distributed
    from rlaif.train.provenance import settings_record, training_record

    losses = [s["loss"] for s in steps if s["loss"] is not None]
    rewards = [s["reward"] for s in steps if s["reward"] is not None]
    return {
        "method": "grpo",
        "settings": settings_record(settings),
        "steps": steps,
        "final_loss": losses[-1] if losses else None,
        "losses_finite": all(math.isfinite(x) for x in losses),
        "first_reward": rewards[0] if rewards else None,
        "last_reward": rewards[-1] if rewards else None,
        "prompts": len(dataset),
        "time_s": round(time.time() - started, 1),
        "train_prompts": training_record(dataset["prompt"], settings.model),
        # sampled responses per optimizer step, over every process
        **distributed.batch_record(
            args.per_device_train_batch_size, args.gradient_accumulation_steps
        ),
    }


def train_grpo(settings: GRPOSettings, *, show_progress: bool = True) -> dict:
    """Train a policy with GRPO; save it to ``settings.out``; return what ``train.json`` holds.

    Under a launcher every process samples and trains on its share of each step's prompts;
    only the main one saves (:mod:`rlaif.train.distributed`).
    """
    dataset = _check_inputs(settings)
    import torch
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOTrainer

    from rlaif.backends.llamacpp import _default_threads
    from rlaif.train import distributed
    from rlaif.train.models import load_model_and_tokenizer, save_trained
    from rlaif.train.progress import trainer_progress_callback

    started = time.time()
    show_progress = show_progress and distributed.is_main_process()  # one bar, not one a rank
    torch.set_num_threads(_default_threads())
    reward = make_reward(settings)
    model, tokenizer = load_model_and_tokenizer(settings.model, lora=settings.lora)
    if hasattr(reward, "eos_token_id"):
        reward.eos_token_id = tokenizer.eos_token_id
    with tempfile.TemporaryDirectory(prefix="rlaif-grpo-") as work, quiet_checkpointing_warning():
        args = _grpo_args(settings, work)
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=[reward],
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=[trainer_progress_callback("grpo", settings.max_steps, show_progress)],
        )
        trainer.remove_callback(PrinterCallback)  # the rich bar shows the loss instead
        trainer.train()
        steps = _history(trainer.state.log_history)
    info = _info(settings, dataset, steps, args, started)
    save_trained(trainer.model, tokenizer, settings.out, info, ensure_ascii=False)
    return info
