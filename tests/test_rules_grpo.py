"""GRPO with a programmatic judge as the reward: a tiny policy trained a few steps."""

from __future__ import annotations

import json
import math

from test_train_grpo import _prompts
from tiny_model import tiny_checkpoint


def test_grpo_with_a_rule_judge_as_reward(tmp_path):
    from rlaif.train.grpo import GRPOSettings, make_reward, train_grpo

    settings = GRPOSettings(
        data=str(_prompts(tmp_path)),
        out=tmp_path / "grpo",
        model=f"hf:{tiny_checkpoint(tmp_path / 'tiny')}",
        reward="judge",
        judge="rule:max_words=3",
        max_steps=2,
        prompts_per_step=2,
        num_generations=4,
        max_completion_length=8,
        learning_rate=1e-2,
    )
    reward = make_reward(settings)
    assert reward.__name__ == "max_words"  # TRL logs the reward under this name
    info = train_grpo(settings, show_progress=False)
    assert len(info["steps"]) == 2
    assert all(math.isfinite(s["loss"]) for s in info["steps"])
    # a pass/fail rule: every step's mean reward is a fraction of passing completions
    assert all(0.0 <= s["reward"] <= 1.0 for s in info["steps"])
    saved = json.loads((settings.out / "train.json").read_text())
    assert saved["settings"]["judge"] == "rule:max_words=3"
