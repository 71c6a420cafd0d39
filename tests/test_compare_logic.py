"""Pure logic of preference labels: probabilities from scores, verdict parsing, the Judge's
arithmetic (with a scripted fake backend; the real model is tested in test_compare_llamacpp)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import pytest

from rlaif.backends import Backend, ChoiceScores, Generation, Messages
from rlaif.compare import Judge, parse_verdict, probability_from_scores
from rlaif.constitution import Constitution, Principle

AB = ("A", "B")
YES_NO = ("Yes", "No")


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# -- probability_from_scores ------------------------------------------------------------------
def test_probability_normalizes_over_the_two_choices():
    scores = ChoiceScores("logprobs", {"A": math.log(0.3), "B": math.log(0.1)})
    assert probability_from_scores(scores, AB) == pytest.approx(0.75, abs=1e-12)
    assert probability_from_scores(scores, ("B", "A")) == pytest.approx(0.25, abs=1e-12)


def test_probability_is_stable_for_tiny_logprobs():
    scores = ChoiceScores("logprobs", {"A": -1000.0, "B": -1001.0})
    assert probability_from_scores(scores, AB) == pytest.approx(_sigmoid(1.0), abs=1e-12)


def test_missing_choice_takes_the_floor():
    scores = ChoiceScores("logprobs", {"A": None, "B": -1.0}, floor=-3.0)
    assert probability_from_scores(scores, AB) == pytest.approx(_sigmoid(-2.0), abs=1e-12)
    absent_key = ChoiceScores("logprobs", {"A": -0.5}, floor=-4.5)
    assert probability_from_scores(absent_key, AB) == pytest.approx(_sigmoid(4.0), abs=1e-12)


def test_both_choices_missing_is_unreadable():
    scores = ChoiceScores("logprobs", {"A": None, "B": None}, floor=-3.0)
    assert probability_from_scores(scores, AB) is None
    assert probability_from_scores(ChoiceScores("logprobs", {}, floor=-3.0), AB) is None


def test_missing_choice_without_floor_is_unreadable():
    scores = ChoiceScores("logprobs", {"A": -0.1, "B": None})
    assert probability_from_scores(scores, AB) is None


def test_verdict_scores_are_parsed():
    assert probability_from_scores(ChoiceScores("verdict", text="B"), AB) == 0.0
    assert probability_from_scores(ChoiceScores("verdict", text="A."), AB) == 1.0
    assert probability_from_scores(ChoiceScores("verdict", text="no idea"), AB) is None


# -- parse_verdict ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "choices", "expected"),
    [
        ("A", AB, 1.0),
        ("B", AB, 0.0),
        ("A.", AB, 1.0),
        (" Response B is better.", AB, 0.0),
        ("The answer is (A)", AB, 1.0),
        ("A and B are equally good", AB, None),
        ("", AB, None),
        ("Answer: Apple", AB, None),  # letters inside words do not count
        ("a", AB, None),  # case matters: 'a' is an article, not a verdict
        ("Yes, it is.", YES_NO, 1.0),
        ("No.", YES_NO, 0.0),
        ("Nope", YES_NO, None),
        ("Yes and No", YES_NO, None),
    ],
)
def test_parse_verdict(text, choices, expected):
    assert parse_verdict(text, choices) == expected


# -- the Judge's arithmetic, with a scripted backend ------------------------------------------
class ScriptedBackend(Backend):
    """Returns the given ChoiceScores in turn; generation returns a fixed rationale."""

    model_id = "scripted"

    def __init__(self, *scores: ChoiceScores) -> None:
        self.queue = list(scores)
        self.asked: list[Messages] = []

    def generate(self, messages, *, max_tokens=256, temperature=0.0, seed=0) -> Generation:
        return Generation(text="Some reasoning.", prompt_tokens=5, completion_tokens=3)

    def choice_logprobs(self, messages: Messages, choices: Sequence[str]) -> ChoiceScores:
        self.asked.append(messages)
        return self.queue.pop(0)


def _lp(p_first: float, choices: tuple[str, str] = AB) -> ChoiceScores:
    logprobs = {choices[0]: math.log(p_first), choices[1]: math.log1p(-p_first)}
    return ChoiceScores("logprobs", logprobs, prompt_tokens=10)


CONSTITUTION = Constitution(
    "test", (Principle("only", "Critique it.", "Revise it.", "Which is better?"),)
)


def test_both_orders_are_averaged():
    backend = ScriptedBackend(_lp(0.8), _lp(0.4))  # A first: 0.8 for A; B first: 0.6 for A
    pref = Judge(backend, CONSTITUTION).compare("p", "x", "y")
    assert pref.p_a_order_ab == pytest.approx(0.8)
    assert pref.p_a_order_ba == pytest.approx(0.6)
    assert pref.p_a == pytest.approx(0.7)
    assert pref.position_consistent is True
    assert pref.prompt_tokens == 20
    # the second question really shows B first
    first, second = (m[-1]["content"] for m in backend.asked)
    assert first.index("x") < first.index("y")
    assert second.index("y") < second.index("x")
    json.dumps(pref.to_dict())


def test_position_bias_is_flagged():
    pref = Judge(ScriptedBackend(_lp(0.8), _lp(0.7)), CONSTITUTION).compare("p", "x", "y")
    assert pref.p_a == pytest.approx(0.55)
    assert pref.position_consistent is False


@pytest.mark.parametrize("unreadable_order", [0, 1])
def test_unreadable_order_gives_no_preference(unreadable_order):
    replies = [_lp(0.9), _lp(0.1)]
    replies[unreadable_order] = ChoiceScores("logprobs", {"A": None, "B": None})
    pref = Judge(ScriptedBackend(*replies), CONSTITUTION).compare("p", "x", "y")
    assert pref.p_a is None
    assert pref.position_consistent is None
    assert not pref.readable


def test_clamp_applies_to_each_order():
    judge = Judge(ScriptedBackend(_lp(0.95), _lp(0.45)), CONSTITUTION, clamp=(0.4, 0.6))
    pref = judge.compare("p", "x", "y")
    assert pref.p_a_order_ab == pytest.approx(0.6)
    assert pref.p_a_order_ba == pytest.approx(0.55)


def test_pointwise_is_a_sigmoid_of_score_differences():
    backend = ScriptedBackend(_lp(0.9, YES_NO), _lp(0.5, YES_NO))
    pref = Judge(backend, CONSTITUTION, mode="pointwise").compare("p", "x", "y")
    expected = _sigmoid(math.log(0.9 / 0.1) - 0.0)
    assert pref.p_a == pytest.approx(expected, abs=1e-12)
    assert len(backend.asked) == 2
    # no order was shown: the order figures were never measured, the scores keep their names
    assert pref.p_a_order_ab is None and pref.p_a_order_ba is None
    assert pref.position_consistent is None
    assert (pref.p_yes_a, pref.p_yes_b) == (pytest.approx(0.9), pytest.approx(0.5))


@pytest.mark.parametrize(
    ("p_first", "q_second", "consistent"),
    [
        (0.5, 0.8, False),  # 0.5 then B: old code read 0.5 as B and called it consistent
        (0.5, 0.2, False),  # 0.5 then A
        (0.7, 0.5, False),  # A then 0.5
        (0.5, 0.5, True),  # neither side in both orders: the order changed nothing
        (0.7, 0.2, True),
        (0.3, 0.8, True),
    ],
)
def test_a_half_is_neither_side_of_position_consistency(p_first, q_second, consistent):
    """``q_second`` is p("A") with B shown first, i.e. p(B better) in that order."""
    backend = ScriptedBackend(_lp(p_first), _lp(q_second))
    pref = Judge(backend, CONSTITUTION).compare("p", "x", "y")
    assert pref.position_consistent is consistent


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "listwise"},
        {"clamp": (0.6, 0.4)},
        {"clamp": (-0.1, 0.6)},
        {"clamp": (0.4, 1.1)},
        {"mode": "pointwise", "cot": True},
    ],
)
def test_judge_rejects_nonsense_settings(kwargs):
    with pytest.raises(ValueError):
        Judge(ScriptedBackend(), CONSTITUTION, **kwargs)
