"""Group-relative judge rewards (rlaif.rewards, GroupJudgeReward): the standing of each response
among the responses of its prompt, and a GRPO run rewarded by it."""

from __future__ import annotations

import math

import pytest
from test_train_grpo import _prompts
from tiny_model import tiny_checkpoint

from rlaif.compare import RuleJudge
from rlaif.constitution import load_constitution
from rlaif.rewards import RewardJudge
from rlaif.train.judge_reward import GroupJudgeReward


def _chat(role: str, text: str) -> list[dict]:
    return [{"role": role, "content": text}]


def test_group_reward_is_the_mean_probability_of_beating_the_others():
    reward = GroupJudgeReward("rule:max_words=3", load_constitution("default"))
    prompts = [_chat("user", "A?")] * 3 + [_chat("user", "B?")] * 2 + [_chat("user", "C?")]
    texts = ["yes", "a b c d e", "no", "one two", "x y z w v u", "alone"]
    rewards = reward(prompts, [_chat("assistant", t) for t in texts])
    rule = RuleJudge("rule:max_words=3")
    pass_fail = rule.compare("A?", "yes", "a b c d e").p_a
    assert pass_fail == pytest.approx(1 / (1 + math.exp(-1)))  # 0.731, a soft label
    # "yes" beats "a b c d e" (0.731) and ties "no" (0.5)
    assert rewards[0] == pytest.approx((pass_fail + 0.5) / 2)
    assert rewards[1] == pytest.approx(1 - pass_fail)
    assert rewards[3] == pytest.approx(pass_fail) and rewards[4] == pytest.approx(1 - pass_fail)
    assert rewards[5] is None  # one response of its prompt: no standing, never a default


def test_a_truncated_response_fails_a_length_rule_in_its_group():
    reward = GroupJudgeReward(
        "rule:max_words=3", load_constitution("default"), max_completion_length=4
    )
    reward.eos_token_id = 0
    prompts = [_chat("user", "A?")] * 2
    completions = [_chat("assistant", "short"), _chat("assistant", "also short")]
    # the second was cut at the limit (4 tokens, no end token): it loses its pair
    rewards = reward(prompts, completions, completion_ids=[[5, 0], [5, 6, 7, 8]])
    assert rewards[0] > 0.5 > rewards[1]
    assert reward(prompts, completions) == [0.5, 0.5]  # unknown: both pass, a tie


def test_the_same_group_twice_gives_the_same_rewards():
    judge = RewardJudge("rule:words=2-5", load_constitution("default"))
    responses = [f"word {'x ' * k}".strip() for k in range(12)]  # 12 > 8: the neighbour schedule
    first = judge.score_group("Q?", responses)
    assert [r.reward for r in first] == [r.reward for r in judge.score_group("Q?", responses)]
    assert all(0.0 <= r.reward <= 1.0 for r in first)
    assert first[1].reward > first[11].reward  # 2 words pass, 12 fail


def test_grpo_with_group_relative_rewards(tmp_path):
    from rlaif.train.grpo import GRPOSettings, make_reward, train_grpo

    settings = GRPOSettings(
        data=str(_prompts(tmp_path)),
        out=tmp_path / "grpo",
        model=f"hf:{tiny_checkpoint(tmp_path / 'tiny')}",
        judge="rule:max_words=3",
        judge_mode="group",
        max_steps=2,
        prompts_per_step=2,
        num_generations=4,
        max_completion_length=8,
        learning_rate=1e-2,
    )
    assert make_reward(settings).__name__ == "group_judge"
    info = train_grpo(settings, show_progress=False)
    assert len(info["steps"]) == 2
    assert all(math.isfinite(s["loss"]) for s in info["steps"])
    # a mean standing in a group is 0.5 on average, whatever the group holds
    assert all(s["reward"] == pytest.approx(0.5) for s in info["steps"])
    with pytest.raises(ValueError, match="judge_mode"):
        GRPOSettings(data="x", out=tmp_path / "y", judge_mode="pairs")
