"""RLAIFAgent's bookkeeping (which response is chosen), with scripted backends."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from rlaif.backends import Backend, ChoiceScores, Generation, Messages
from rlaif.pipeline.agent import RLAIFAgent


class Policy(Backend):
    """Answers ``r<seed>``: response i of a prompt is ``r<i>``."""

    model_id = "policy"

    def generate(self, messages, *, max_tokens=256, temperature=0.0, seed=0) -> Generation:
        return Generation(text=f" r{seed} ", prompt_tokens=1, completion_tokens=1)

    def choice_logprobs(self, messages: Messages, choices: Sequence[str]) -> ChoiceScores:
        raise AssertionError("the policy is never asked to judge")


class Judge(Backend):
    """Prefers the higher-numbered response (p = 0.8); cannot read pairs of r0 and r2."""

    model_id = "judge"

    def generate(self, messages, *, max_tokens=256, temperature=0.0, seed=0) -> Generation:
        raise AssertionError("no generation is needed to compare")

    def choice_logprobs(self, messages: Messages, choices: Sequence[str]) -> ChoiceScores:
        text = messages[-1]["content"]
        shown = sorted((text.index(f"\nr{i}\n"), f"r{i}") for i in range(3) if f"\nr{i}\n" in text)
        first, second = (name for _, name in shown)
        if {first, second} == {"r0", "r2"}:
            return ChoiceScores("logprobs", {"A": None, "B": None})
        p = 0.8 if first > second else 0.2
        return ChoiceScores("logprobs", {"A": math.log(p), "B": math.log1p(-p)})


def test_preference_records(constitution):
    agent = RLAIFAgent(Policy(), Judge(), constitution)
    records = agent.generate_preference_data(["q"], n_responses=3)
    by_pair = {(r["chosen"], r["rejected"]): r for r in records}
    assert len(records) == 3
    assert by_pair[("r1", "r0")]["p_chosen"] == pytest.approx(0.8)
    assert by_pair[("r2", "r1")]["p_chosen"] == pytest.approx(0.8)
    unreadable = by_pair[(None, None)]
    assert unreadable["p_chosen"] is None and unreadable["p_a"] is None
    for r in records:
        assert r["prompt"] == "q"
        assert r["judge"] == "judge"
        assert r["principle_id"] in {p.id for p in constitution.principles}
