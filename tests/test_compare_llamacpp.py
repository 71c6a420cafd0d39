"""Preference labels from the real embedded model (SmolLM2-135M through llama.cpp)."""

from __future__ import annotations

import math
from itertools import combinations

import pytest

import rlaif
from rlaif import templates
from rlaif.backends.llamacpp import LlamaCppBackend, embedded_model_path
from rlaif.compare import CAI_CLAMP, Judge, Preference

PROMPT = "What is the capital of France?"
GOOD = "The capital of France is Paris."
ABSURD = "France has no capital; the moon is made of cheese."
COT_TOKENS = 48


@pytest.fixture(scope="module")
def pref(smollm2, constitution) -> Preference:
    return Judge(smollm2, constitution).compare(PROMPT, GOOD, ABSURD)


@pytest.fixture(scope="module")
def swapped(smollm2, constitution) -> Preference:
    return Judge(smollm2, constitution).compare(PROMPT, ABSURD, GOOD)


def _logit(p: float) -> float:
    return math.log(p) - math.log1p(-p)


def test_each_order_is_a_soft_probability(pref):
    for p in (pref.p_a_order_ab, pref.p_a_order_ba):
        assert isinstance(p, float)
        assert 0.0 < p < 1.0
        # exactly 0.5 is the symptom of reading all-zero logits
        assert abs(p - 0.5) > 1e-6
    assert abs(pref.p_a_order_ab - pref.p_a_order_ba) > 1e-6


def test_p_a_averages_the_two_orders(pref):
    assert pref.p_a == pytest.approx((pref.p_a_order_ab + pref.p_a_order_ba) / 2, abs=1e-12)


def test_position_consistent_matches_definition(pref):
    expected = (pref.p_a_order_ab > 0.5) == (pref.p_a_order_ba > 0.5)
    assert pref.position_consistent is expected


def test_record_metadata(pref, constitution):
    assert pref.principle_id in {p.id for p in constitution.principles}
    assert pref.constitution_hash == constitution.hash
    assert pref.judge == "smollm2"
    assert pref.method == "logprobs"
    assert pref.mode == "pairwise"
    assert pref.cot is False
    assert pref.rationales == []
    assert pref.prompt_tokens > 0
    assert pref.completion_tokens == 0
    assert pref.readable


def test_swapping_a_and_b_mirrors_the_label(pref, swapped):
    assert swapped.principle_id == pref.principle_id
    assert swapped.p_a == pytest.approx(1.0 - pref.p_a, abs=1e-9)
    assert swapped.p_a_order_ab == pytest.approx(1.0 - pref.p_a_order_ba, abs=1e-9)
    assert swapped.p_a_order_ba == pytest.approx(1.0 - pref.p_a_order_ab, abs=1e-9)


def test_choice_logprobs_depend_on_tokens_only(smollm2, constitution):
    principle = constitution.get("helpful")
    first = templates.compare_messages(PROMPT, GOOD, ABSURD, principle)
    other_order = templates.compare_messages(PROMPT, ABSURD, GOOD, principle)
    other_prompt = templates.compare_messages("What is 2+2?", "4", "5", constitution.get("correct"))

    before = smollm2.choice_logprobs(first, templates.CHOICES)
    smollm2.choice_logprobs(other_order, templates.CHOICES)  # shares a long prefix
    smollm2.choice_logprobs(other_prompt, templates.CHOICES)
    smollm2.generate([{"role": "user", "content": "Say hi."}], max_tokens=4)
    after_generation = smollm2.choice_logprobs(first, templates.CHOICES)
    smollm2.generate(first, max_tokens=4)  # leaves the whole prompt in the KV cache
    after_same_prompt = smollm2.choice_logprobs(first, templates.CHOICES)
    again = smollm2.choice_logprobs(first, templates.CHOICES)  # exact repeat

    assert all(v is not None and v < 0 for v in before.logprobs.values())
    assert after_generation.logprobs == before.logprobs
    assert after_same_prompt.logprobs == before.logprobs
    assert again.logprobs == before.logprobs


def test_fresh_backend_gives_identical_logprobs(smollm2, constitution):
    messages = templates.compare_messages(PROMPT, GOOD, ABSURD, constitution.get("correct"))
    shared = smollm2.choice_logprobs(messages, templates.CHOICES)
    fresh = LlamaCppBackend(embedded_model_path(), n_threads=1)
    try:
        assert fresh.choice_logprobs(messages, templates.CHOICES).logprobs == shared.logprobs
    finally:
        fresh.close()


def test_top_level_compare_matches_judge(pref):
    direct = rlaif.compare("smollm2", PROMPT, GOOD, ABSURD)
    assert direct.p_a == pytest.approx(pref.p_a, abs=1e-12)
    assert direct.principle_id == pref.principle_id


def test_pointwise_scores_each_response_once(counted_smollm2, constitution):
    judge = Judge(counted_smollm2, constitution, mode="pointwise")
    responses = [GOOD, ABSURD, "Paris."]
    prefs = {(a, b): judge.compare(PROMPT, a, b) for a, b in combinations(responses, 2)}

    assert counted_smollm2.calls == {"choice_logprobs": 3}
    scored = {m[-1]["content"] for m in counted_smollm2.scored}
    assert len(scored) == 3  # three different responses, one call each
    for pref in prefs.values():
        assert pref.mode == "pointwise"
        assert pref.method == "logprobs"
        assert 0.0 < pref.p_a < 1.0
        # no order was shown: nothing about positions was measured
        assert pref.p_a_order_ab is None and pref.p_a_order_ba is None
        assert pref.position_consistent is None
        assert 0.0 < pref.p_yes_a < 1.0 and 0.0 < pref.p_yes_b < 1.0
        assert _logit(pref.p_a) == pytest.approx(
            _logit(pref.p_yes_a) - _logit(pref.p_yes_b), abs=1e-9
        )
        assert pref.principle_id in {p.id for p in constitution.principles}
    # p_a = sigmoid(score_a - score_b): the pairs' log-odds add up along a chain
    chain = _logit(prefs[(GOOD, ABSURD)].p_a) + _logit(prefs[(ABSURD, "Paris.")].p_a)
    assert _logit(prefs[(GOOD, "Paris.")].p_a) == pytest.approx(chain, abs=1e-9)
    # the first pair pays for two scores; the last reuses both and reports no tokens
    assert prefs[(GOOD, ABSURD)].prompt_tokens > prefs[(GOOD, "Paris.")].prompt_tokens > 0
    assert prefs[(ABSURD, "Paris.")].prompt_tokens == 0


def test_chain_of_thought_with_clamp(counted_smollm2, constitution):
    # short rationales keep the test fast; the mechanism is the same at any length
    cot = {"cot": True, "cot_max_tokens": COT_TOKENS}
    raw = Judge(counted_smollm2, constitution, **cot).compare(PROMPT, GOOD, ABSURD)
    clamped = Judge(counted_smollm2, constitution, clamp=CAI_CLAMP, **cot).compare(
        PROMPT, GOOD, ABSURD
    )
    # one rationale and one verdict per order, per judge
    assert counted_smollm2.calls == {"generate": 4, "choice_logprobs": 4}
    for p in (clamped.p_a_order_ab, clamped.p_a_order_ba):
        assert CAI_CLAMP[0] <= p <= CAI_CLAMP[1]
    for p_raw, p_clamped in (
        (raw.p_a_order_ab, clamped.p_a_order_ab),
        (raw.p_a_order_ba, clamped.p_a_order_ba),
    ):
        assert p_clamped == pytest.approx(min(max(p_raw, CAI_CLAMP[0]), CAI_CLAMP[1]), abs=1e-12)
    assert clamped.cot is True
    assert len(clamped.rationales) == 2
    assert all(r.strip() for r in clamped.rationales)
    assert 0 < clamped.completion_tokens <= 2 * COT_TOKENS
    assert clamped.p_a == pytest.approx(
        (clamped.p_a_order_ab + clamped.p_a_order_ba) / 2, abs=1e-12
    )


def test_one_order(counted_smollm2, constitution, pref):
    one = Judge(counted_smollm2, constitution, both_orders=False).compare(PROMPT, GOOD, ABSURD)
    assert counted_smollm2.calls == {"choice_logprobs": 1}
    assert one.p_a_order_ba is None
    assert one.position_consistent is None
    assert one.p_a == one.p_a_order_ab
    assert one.p_a_order_ab == pytest.approx(pref.p_a_order_ab, abs=1e-12)
