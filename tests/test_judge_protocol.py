"""One judge protocol: the model judge and the rule judge both are a ``PairJudge``, every
``p_first`` is a probability, and two orders are put together one way."""

from __future__ import annotations

import math
import sys
import textwrap
from collections.abc import Sequence

import pytest

from rlaif.backends import Backend, ChoiceScores, Generation, Messages
from rlaif.compare import Judge, PairJudge, Preference, RuleJudge
from rlaif.constitution import Constitution, Principle
from rlaif.pipeline.config import RunConfig
from rlaif.pipeline.executor import compare_pairs
from rlaif.pipeline.ray_executor import model_judge
from rlaif.pipeline.stages import pairs
from rlaif.prompts import Prompt

CONSTITUTION = Constitution(
    "test", (Principle("only", "Critique it.", "Revise it.", "Which is better?"),)
)
PRINCIPLE = CONSTITUTION.principles[0]


class Scripted(Backend):
    """p(first choice) from a list, in turn, as log-probabilities."""

    model_id = "scripted"

    def __init__(self, *p_first: float) -> None:
        self.queue = list(p_first)

    def generate(self, messages, *, max_tokens=256, temperature=0.0, seed=0) -> Generation:
        return Generation(text="", prompt_tokens=0, completion_tokens=0)

    def choice_logprobs(self, messages: Messages, choices: Sequence[str]) -> ChoiceScores:
        p = self.queue.pop(0)
        return ChoiceScores("logprobs", {choices[0]: math.log(p), choices[1]: math.log1p(-p)})


@pytest.fixture
def wide_scores(tmp_path, monkeypatch):
    """A user's function whose scores are any real number: the length, minus 10."""
    (tmp_path / "wide_scores.py").write_text(
        textwrap.dedent(
            """
            def shifted_length(prompts, completions, **kw):
                return [float(len(c[0]["content"]) - 10) for c in completions]
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "python:wide_scores:shifted_length"
    sys.modules.pop("wide_scores", None)


def test_both_judges_are_pair_judges():
    assert isinstance(Judge(Scripted(), CONSTITUTION), PairJudge)
    assert isinstance(RuleJudge("rule:max_words=3"), PairJudge)


def test_a_rule_score_is_kept_raw_and_read_as_a_probability(wide_scores):
    judge = RuleJudge(wide_scores, temperature=2.0)
    for text in ("", "short", "ten chars!", "x" * 60, "x" * 500):
        result = judge.score("q", text, PRINCIPLE)
        assert result.score == len(text) - 10
        assert 0.0 <= result.p_first <= 1.0
        assert result.p_first == pytest.approx(1 / (1 + math.exp(-result.score / 2.0)))
    # far from 0 the probabilities saturate; the raw scores still rank the responses
    far, farther = judge.score("q", "x" * 400), judge.score("q", "x" * 500)
    assert far.p_first == farther.p_first == 1.0 and far.score < farther.score


def test_a_pass_fail_rule_reads_as_the_soft_label_against_a_fail():
    judge = RuleJudge("rule:max_words=3")
    passing, failing = judge.score("q", "yes"), judge.score("q", "a b c d e")
    assert (passing.score, failing.score) == (1.0, 0.0)
    assert passing.p_first == pytest.approx(1 / (1 + math.exp(-1)))  # 0.731
    assert failing.p_first == 0.5


def test_the_pointwise_reading_of_two_rule_scores_is_the_rule_label(wide_scores):
    judge = RuleJudge(wide_scores)
    a, b = "a longer answer", "short"
    pa, pb = judge.score("q", a).p_first, judge.score("q", b).p_first
    pointwise = 1 / (1 + math.exp(-(math.log(pa / (1 - pa)) - math.log(pb / (1 - pb)))))
    assert judge.compare("q", a, b).p_a == pytest.approx(pointwise)


def test_the_model_judge_ranks_by_p_yes():
    result = Judge(Scripted(0.8), CONSTITUTION, mode="pointwise").score("q", "r", PRINCIPLE)
    assert result.p_first == result.score == pytest.approx(0.8)


def test_either_judge_labels_through_the_local_executor():
    pairs = [("q", "yes", "a b c d e"), ("q", "a b c d e", "yes")]
    rule = list(compare_pairs(RuleJudge("rule:max_words=3"), pairs))
    assert rule[0].p_a == pytest.approx(1 - rule[1].p_a) and rule[0].p_a > 0.5
    model = list(compare_pairs(Judge(Scripted(0.9, 0.2, 0.3, 0.6), CONSTITUTION), pairs))
    assert [p.p_a for p in model] == [pytest.approx(0.85), pytest.approx(0.35)]


def test_the_ray_executor_takes_a_model_judge_only():
    judge = Judge(Scripted(), CONSTITUTION)
    assert model_judge(judge) is judge
    with pytest.raises(ValueError, match="model judge"):
        model_judge(RuleJudge("rule:max_words=3"))


def test_a_model_judge_settings_rebuild_the_same_judge():
    judge = Judge(Scripted(), CONSTITUTION, seed=3, both_orders=False, cot=True, clamp=(0.4, 0.6))
    again = Judge(Scripted(), CONSTITUTION, **judge.settings())
    assert again.settings() == judge.settings()


def test_one_order_or_two_make_a_preference_one_way():
    fields = dict(principle_id="", constitution_hash="", judge="", method="", mode="")
    one = Preference.from_orders([0.7], **fields)
    assert (one.p_a, one.p_a_order_ab, one.p_a_order_ba) == (0.7, 0.7, None)
    assert one.position_consistent is None
    two = Preference.from_orders([0.7, 0.4], **fields)
    assert two.p_a == pytest.approx(0.55) and two.position_consistent is False
    assert Preference.from_orders([0.7, None], **fields).p_a is None
    with pytest.raises(ValueError):
        Preference.from_orders([], **fields)


def test_one_order_judge_keeps_its_label():
    pref = Judge(Scripted(0.8), CONSTITUTION, both_orders=False).compare("q", "x", "y")
    assert (pref.p_a, pref.p_a_order_ab, pref.p_a_order_ba) == (
        pytest.approx(0.8),
        pytest.approx(0.8),
        None,
    )
    assert pref.position_consistent is None


class SeededPolicy(Backend):
    """Response i (seed i) is ``texts[i]``."""

    model_id = "seeded"

    def __init__(self, texts: Sequence[str]) -> None:
        self.texts = texts

    def generate(self, messages, *, max_tokens=256, temperature=0.0, seed=0) -> Generation:
        return Generation(text=self.texts[seed], prompt_tokens=1, completion_tokens=1)

    def choice_logprobs(self, messages: Messages, choices: Sequence[str]) -> ChoiceScores:
        raise AssertionError("a rule judge asks no model")


def test_best_worst_pairs_rank_a_rule_by_its_raw_score(wide_scores, tmp_path):
    # every score is far above 0, so every p_first is 1.0: only the raw scores tell them apart
    texts = ["x" * 400, "x" * 500, "x" * 450]
    policy = SeededPolicy(texts)
    config = RunConfig(
        out=tmp_path, judge=wide_scores, n_responses=3, revision_rounds=0, pairs="best-worst"
    )
    judge = RuleJudge(wide_scores, CONSTITUTION)
    prompt = Prompt(id="p", text="Say x.")
    (pair,) = pairs(policy, policy, judge, CONSTITUTION, prompt, config)
    assert pair[:3] == ("x" * 500, "x" * 400, "responses")
