"""Strategies: their logic with a scripted backend, then on the real embedded judge."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from rlaif.backends import Backend, ChoiceScores, Generation, Messages
from rlaif.compare import Judge
from rlaif.evaluate.strategies import STRATEGIES, StrategyOptions, make_strategy
from rlaif.stats import agreement

PROMPT = "What is the capital of France?"
GOOD = "The capital of France is Paris."
BAD = "France has no capital; the moon is made of cheese."


class Scripted(Backend):
    """Logic only: answers 'A' with a probability that depends on which text is shown first,
    and generates scripted verdicts; records every call."""

    model_id = "scripted"

    def __init__(self, verdicts: Sequence[str] = ("A",), p_first_good: float = 0.8) -> None:
        self.verdicts = list(verdicts)
        self.p_first_good = p_first_good
        self.generated: list[dict] = []
        self.scored: list[Messages] = []

    def generate(self, messages, *, max_tokens=256, temperature=0.0, seed=0) -> Generation:
        self.generated.append({"messages": messages, "temperature": temperature, "seed": seed})
        text = self.verdicts[(len(self.generated) - 1) % len(self.verdicts)]
        return Generation(text=text, prompt_tokens=10, completion_tokens=3)

    def choice_logprobs(self, messages: Messages, choices: Sequence[str]) -> ChoiceScores:
        import math

        self.scored.append(messages)
        user = messages[-1]["content"] if messages[-1]["role"] == "user" else ""
        text = " ".join(m["content"] for m in messages)
        first_good = text.find(GOOD) < text.find(BAD) if GOOD in text and BAD in text else True
        p = self.p_first_good if first_good else 1 - self.p_first_good
        if choices == ("Yes", "No"):
            p = 0.9 if GOOD in user else 0.2
        return ChoiceScores(
            method="logprobs",
            logprobs={choices[0]: math.log(p), choices[1]: math.log(1 - p)},
            prompt_tokens=20,
        )


def test_every_strategy_has_a_description_and_unknown_names_fail(constitution):
    for name in STRATEGIES:
        assert make_strategy(name, Scripted(), constitution).name == name
    with pytest.raises(ValueError, match="unknown strategy 'best'"):
        make_strategy("best", Scripted(), constitution)


def test_verdict_parses_letters_and_unparsable_is_unreadable(constitution):
    backend = Scripted(verdicts=["Response A is better.", "B"])
    pref = make_strategy("verdict", backend, constitution).label(PROMPT, GOOD, BAD)
    # first order names A (the good one first), second names B (the good one, shown second)
    assert (pref.p_a_order_ab, pref.p_a_order_ba, pref.p_a) == (1.0, 1.0, 1.0)
    assert pref.method == "verdict" and pref.position_consistent is True
    assert pref.completion_tokens == 6 and len(backend.generated) == 2
    assert backend.scored == []  # a verdict reads no probabilities

    unsure = make_strategy("verdict", Scripted(verdicts=["A or B"]), constitution)
    pref = unsure.label(PROMPT, GOOD, BAD)
    assert pref.p_a is None and pref.p_a_order_ab is None
    assert agreement([1.0], [float("nan")]) == 0.0  # unreadable is never a win

    flip = make_strategy("verdict", Scripted(verdicts=["A"]), constitution)
    pref = flip.label(PROMPT, GOOD, BAD)  # always the first slot: the orders disagree
    assert (pref.p_a_order_ab, pref.p_a_order_ba, pref.p_a) == (1.0, 0.0, 0.5)
    assert pref.position_consistent is False


def test_one_order_asks_once_and_both_orders_twice(constitution):
    backend = Scripted(p_first_good=0.8)
    one = make_strategy("one-order", backend, constitution).label(PROMPT, GOOD, BAD)
    assert len(backend.scored) == 1 and one.p_a == pytest.approx(0.8)
    assert one.p_a_order_ba is None
    both = make_strategy("both-orders", backend, constitution).label(PROMPT, GOOD, BAD)
    assert len(backend.scored) == 3
    assert both.p_a == pytest.approx(0.8) and both.p_a_order_ba == pytest.approx(0.8)


def test_ensemble_asks_k_distinct_principles_and_averages(constitution):
    backend = Scripted()
    strategy = make_strategy(
        "ensemble", backend, constitution, options=StrategyOptions(principles=3)
    )
    chosen = strategy.principles_for_pair(PROMPT, GOOD, BAD)
    assert len({p.id for p in chosen}) == 3
    assert strategy.principles_for_pair(PROMPT, BAD, GOOD) == chosen  # either order
    pref = strategy.label(PROMPT, GOOD, BAD)
    assert pref.principle_id == "+".join(p.id for p in chosen)
    assert len(backend.scored) == 6
    asked = [msgs[-1]["content"] for msgs in backend.scored]
    for k, p in enumerate(chosen):
        assert p.comparison in asked[k] and p.comparison in asked[3 + k]
    # all three orders A-first come before the B-first ones (the KV cache keeps the texts)
    assert all(a.index(GOOD) < a.index(BAD) for a in asked[:3])
    assert all(a.index(BAD) < a.index(GOOD) for a in asked[3:])
    assert pref.p_a == pytest.approx(0.8) and pref.position_consistent is True
    many = make_strategy(
        "ensemble", Scripted(), constitution, options=StrategyOptions(principles=99)
    )
    assert many.label(PROMPT, GOOD, BAD).principle_id.count("+") == len(constitution.principles) - 1


def test_self_consistency_samples_rationales_with_distinct_seeds(constitution):
    backend = Scripted(verdicts=["reasoning"])
    options = StrategyOptions(samples=3, sample_temperature=0.7)
    pref = make_strategy("self-consistency", backend, constitution, options=options).label(
        PROMPT, GOOD, BAD
    )
    # 3 samples x 2 orders rationales, each sampled at 0.7 with seeds 0, 1, 2
    assert [(g["temperature"], g["seed"]) for g in backend.generated] == [
        (0.7, s) for s in (0, 0, 1, 1, 2, 2)
    ]
    assert pref.cot and len(pref.rationales) == 6
    assert pref.p_a == pytest.approx(0.8)


def test_judge_compare_takes_an_explicit_principle_and_cot_sampling(constitution):
    backend = Scripted(verdicts=["thinking"])
    principle = constitution.principles[-1]
    judge = Judge(backend, constitution, cot=True, cot_temperature=0.5, cot_seed=4)
    pref = judge.compare(PROMPT, GOOD, BAD, principle=principle)
    assert pref.principle_id == principle.id
    assert {(g["temperature"], g["seed"]) for g in backend.generated} == {(0.5, 4)}
    default = Judge(Scripted(verdicts=["t"]), constitution, cot=True)
    default.compare(PROMPT, GOOD, BAD)
    assert {(g["temperature"], g["seed"]) for g in default.backend.generated} == {(0.0, 0)}
    with pytest.raises(ValueError, match="cot_temperature must be >= 0"):
        Judge(backend, constitution, cot_temperature=-1)


def test_strategies_on_the_real_judge(smollm2, constitution):
    """On the real model (the CLI test covers one order, both orders and pointwise): the
    verdict is a parsed letter per order, the ensemble gives a probability from k principles,
    and sampled rationales differ from one seed to the next."""
    options = StrategyOptions(samples=2, principles=2, cot_max_tokens=16, verdict_max_tokens=8)
    verdict = make_strategy("verdict", smollm2, constitution, options=options)
    pref = verdict.label(PROMPT, GOOD, BAD)
    assert pref.method == "verdict" and pref.completion_tokens > 0
    assert {pref.p_a_order_ab, pref.p_a_order_ba} <= {None, 0.0, 1.0}
    assert pref.p_a in (None, 0.0, 0.5, 1.0)
    assert len(pref.rationales) == 2  # the two generated verdicts, kept for inspection
    for name in ("ensemble", "self-consistency"):
        pref = make_strategy(name, smollm2, constitution, options=options).label(PROMPT, GOOD, BAD)
        assert pref.p_a is not None and 0.0 < pref.p_a < 1.0, name
        assert pref.p_a == pytest.approx((pref.p_a_order_ab + pref.p_a_order_ba) / 2), name
        assert pref.prompt_tokens > 0, name
    assert pref.cot and len(pref.rationales) == 4  # [sample 0: AB, BA, sample 1: AB, BA]
    assert pref.rationales[0] != pref.rationales[2]  # same question, another seed
