"""GRPO with the rule as reward raises the held-out reward; with the reward negated it does not.

The reward is ``rule:words=8-40`` on an answer that ended within 64 tokens (effect_support).
GRPO trains on the training prompts where some of the model's own samples pass (elsewhere a
group's rewards are all equal and GRPO learns nothing), 12 steps of 2 prompts x 8 samples at
3e-5 (about 8 minutes on 2 cores), and is measured on the held-out prompts of the same kind
(8 sampled answers each) and on all held-out prompts (greedy: answers stay answers, KL).

The sampled answers of one prompt are not independent, and the "before" rate is measured too:
the gain is the mean of the paired differences (the same prompt, the same sample index, before
and after), with a 95% interval from a bootstrap over prompts (:func:`rlaif.stats.paired_gain`).
"""

from __future__ import annotations

import json

import pytest
from effect_support import (
    GRPO_TOKENS,
    fixture_rows,
    measure,
    sampled_pass,
    sometimes_passed,
)
from test_effect_training import assert_answers_stay_answers, effect

from rlaif.stats import paired_gain
from rlaif.train.grpo import GRPOSettings, train_grpo
from rlaif.train.models import load_model_and_tokenizer

#: the sampled pass rate must rise by at least this much (absolute)
MIN_SAMPLED_GAIN = 0.1
_TRAINED: dict[str, object] = {}


@pytest.fixture(scope="module")
def base_grpo():
    model, tokenizer = load_model_and_tokenizer("smollm2")
    model.eval()
    prompts = [r["prompt"] for r in fixture_rows("heldout")]
    # the base model's sampled answers, seeded: measured once for both tests
    before = sampled_pass(model, tokenizer, sometimes_passed("heldout"))
    return model, tokenizer, measure(model, tokenizer, prompts), before


def trained_grpo(tmp_path_factory, reward: str):
    """GRPO from the embedded model with the named reward function, once a reward."""
    if reward not in _TRAINED:
        work = tmp_path_factory.mktemp(f"grpo-{reward}")
        data = work / "prompts.jsonl"
        rows = "".join(json.dumps({"prompt": p}) + "\n" for p in sometimes_passed("train"))
        data.write_text(rows, encoding="utf-8")
        settings = GRPOSettings(
            data=str(data),
            out=work / "policy",
            judge=f"python:effect_support:{reward}",
            max_steps=12,
            prompts_per_step=2,
            num_generations=8,
            max_completion_length=GRPO_TOKENS,
            learning_rate=3e-5,
        )
        train_grpo(settings, show_progress=False)
        model, _ = load_model_and_tokenizer(f"hf:{work / 'policy'}")
        model.eval()
        _TRAINED[reward] = model
    return _TRAINED[reward]


def assert_grpo_effect(base_grpo, policy) -> None:
    """The held-out sampled pass rate rose clearly, and answers stayed answers."""
    model, tokenizer, greedy, before = base_grpo
    prompts = sometimes_passed("heldout")
    after = sampled_pass(policy, tokenizer, prompts)
    heldout = [r["prompt"] for r in fixture_rows("heldout")]
    result = effect((model, tokenizer, greedy), policy, heldout, [])
    per_prompt = len(before) // len(prompts)
    gain = paired_gain(before, after, [i // per_prompt for i in range(len(before))])
    summary = (
        f"sampled pass {gain['before']:.2f} -> {gain['after']:.2f} on {gain['clusters']} prompts "
        f"x {per_prompt}: gain {gain['gain']:+.2f} [{gain['ci'][0]:+.2f}, {gain['ci'][1]:+.2f}] "
        f"(bootstrap over prompts); {result['summary']}"
    )
    print(summary)
    assert gain["gain"] >= MIN_SAMPLED_GAIN, summary
    assert gain["ci"][0] > 0, summary
    assert result["after"].pass_rate >= result["before"].pass_rate, summary
    assert_answers_stay_answers(result)


def test_grpo_effect_on_rule_reward(tmp_path_factory, base_grpo):
    assert_grpo_effect(base_grpo, trained_grpo(tmp_path_factory, "ended_answer"))


@pytest.mark.xfail(raises=AssertionError, strict=True, reason="reward negated: must not learn")
def test_grpo_effect_negated_reward_fails(tmp_path_factory, base_grpo):
    assert_grpo_effect(base_grpo, trained_grpo(tmp_path_factory, "ended_answer_negated"))
