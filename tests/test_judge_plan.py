"""Judge calls planned for reuse: one prompt's questions asked in the backend's order.

The fast tests use a scripted backend whose answer depends on the question alone; the last
two use the real embedded model and compare planned with pair-by-pair labelling exactly.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from itertools import combinations

import pytest

from rlaif.backends import Backend, ChoiceScores, Generation, Messages
from rlaif.backends.cached import CachedBackend
from rlaif.compare import Judge, RuleJudge
from rlaif.constitution import Constitution, Principle
from rlaif.pipeline.executor import label, label_by_prompt
from rlaif.store import Store


class ScriptedBackend(Backend):
    """Answers from a hash of the question (so from the question alone); records the order
    of the questions and plans them in reverse sorted order (any fixed order will do)."""

    model_id = "scripted"

    def __init__(self, plan: bool = True) -> None:
        self.asked: list[str] = []
        self.plan = plan

    def generate(
        self, messages: Messages, *, max_tokens: int = 256, temperature: float = 0.0, seed: int = 0
    ) -> Generation:
        raise AssertionError("the judge generates nothing without chain-of-thought")

    def choice_logprobs(self, messages: Messages, choices: Sequence[str]) -> ChoiceScores:
        text = json.dumps(messages)
        self.asked.append(text)
        h = sum(map(ord, text)) % 97
        return ChoiceScores(
            "logprobs",
            {choices[0]: -1.0 - h / 50, choices[1]: -1.5},
            prompt_tokens=len(text),
            cached_tokens=h,
        )

    def reuse_order(self, questions: Sequence[Messages]) -> list[int]:
        if not self.plan:
            return super().reuse_order(questions)
        keys = [json.dumps(q) for q in questions]
        return sorted(range(len(questions)), key=keys.__getitem__, reverse=True)


def _constitution(check: str = "") -> Constitution:
    principles = tuple(
        Principle(pid, "critique", "revise", f"Which response is more {pid}?", check=check)
        for pid in ("helpful", "honest", "brief")
    )
    return Constitution("test", principles)


ITEMS = [
    ("What is 2+2?", a, b, (False, False))
    for a, b in combinations(["4", "Four.", "It is 4.", "5"], 2)
] + [("Name a colour.", "Red.", "Blue is one.", (None, True))]


def _dicts(prefs) -> list[dict]:
    """The preferences as records, without the KV-cache reuse (it depends on the order)."""
    return [{k: v for k, v in p.to_dict().items() if k != "cached_tokens"} for p in prefs]


@pytest.mark.parametrize("both_orders", [True, False])
def test_compare_many_equals_compare_item_by_item(both_orders):
    planned, plain = ScriptedBackend(), ScriptedBackend(plan=False)
    many = Judge(planned, _constitution(), both_orders=both_orders).compare_many(ITEMS)
    one = Judge(plain, _constitution(), both_orders=both_orders)
    expected = [one.compare(p, a, b, truncated=t) for p, a, b, t in ITEMS]
    assert _dicts(many) == _dicts(expected)
    # the same questions, asked in the backend's planned order
    assert sorted(planned.asked) == sorted(plain.asked)
    assert planned.asked == sorted(plain.asked, reverse=True)
    assert len(planned.asked) == len(ITEMS) * (2 if both_orders else 1)


def test_compare_many_leaves_pairs_a_check_decides_to_the_check():
    # words=2-40: "4" and "5" fail, the longer answers pass; ties go to the model
    constitution = _constitution(check="rule:words=2-40")
    backend = ScriptedBackend()
    many = Judge(backend, constitution).compare_many(ITEMS)
    one = Judge(ScriptedBackend(plan=False), constitution)
    assert _dicts(many) == _dicts(one.compare(p, a, b, truncated=t) for p, a, b, t in ITEMS)
    sources = [p.label_source for p in many]
    assert "rule" in sources and "ai" in sources
    assert len(backend.asked) == 2 * sources.count("ai")


@pytest.mark.parametrize("settings", [{"mode": "pointwise"}, {"clamp": (0.4, 0.6)}])
def test_compare_many_in_other_settings_equals_compare(settings):
    many = Judge(ScriptedBackend(), _constitution(), **settings).compare_many(ITEMS)
    one = Judge(ScriptedBackend(plan=False), _constitution(), **settings)
    assert _dicts(many) == _dicts(one.compare(p, a, b, truncated=t) for p, a, b, t in ITEMS)


def test_label_by_prompt_plans_each_prompt_apart():
    backend = ScriptedBackend()
    judge = Judge(backend, _constitution())
    pairs = [item[:3] for item in ITEMS[:6]] + list(ITEMS[6:])  # truncation given or not
    prefs = list(label_by_prompt(judge, pairs))
    expected = [label(Judge(ScriptedBackend(plan=False), _constitution()), p) for p in pairs]
    assert _dicts(prefs) == _dicts(expected)
    first_prompt = [q for q in backend.asked if "2+2" in q]
    assert backend.asked[: len(first_prompt)] == first_prompt  # one prompt, then the next
    assert first_prompt == sorted(first_prompt, reverse=True)


def test_label_by_prompt_with_a_rule_judge_labels_pair_by_pair():
    judge = RuleJudge("rule:words=2-40")
    prefs = list(label_by_prompt(judge, ITEMS))
    assert _dicts(prefs) == _dicts(label(judge, item) for item in ITEMS)
    assert [p.score_a for p in prefs][-1] == 0.0  # "Red." fails words=2-40


def test_cached_backend_counts_evaluated_and_reused_tokens_of_fresh_calls(tmp_path):
    store = Store(tmp_path / "store.sqlite")
    try:
        cached = CachedBackend(ScriptedBackend(), store)
        questions = [[{"role": "user", "content": c}] for c in ("one", "two")]
        made = [cached.choice_logprobs(q, ("A", "B")) for q in questions]
        assert cached.evaluated_tokens == sum(s.prompt_tokens - s.cached_tokens for s in made)
        assert cached.reused_tokens == sum(s.cached_tokens for s in made)
        before = (cached.evaluated_tokens, cached.reused_tokens)
        cached.choice_logprobs(questions[0], ("A", "B"))  # answered by the store
        assert (cached.evaluated_tokens, cached.reused_tokens) == before
        assert cached.reuse_order(questions) == [1, 0]  # the wrapped backend's order
    finally:
        store.close()


# -- the real embedded model ------------------------------------------------------------------
PROMPTS = {
    "How do I boil an egg?": [
        "Put the egg in boiling water for about nine minutes, then cool it in cold water.",
        "Boil water. Add the egg. Wait ten minutes.",
        "You can't boil an egg; eggs are only fried.",
        "Place the egg in a pot of cold water, bring it to a boil, simmer eight to ten "
        "minutes, and peel it under running water.",
    ],
    "What is the largest planet in the Solar System?": [
        "Jupiter is the largest planet.",
        "The largest planet is Saturn, because of its rings.",
        "Jupiter, a gas giant more than eleven times as wide as Earth.",
    ],
}


def _open_embedded():
    from rlaif.backends.llamacpp import LlamaCppBackend, embedded_model_path

    return LlamaCppBackend(embedded_model_path(), model_id="smollm2", n_threads=1)


@pytest.fixture(scope="module")
def two_ways(constitution):
    """Every pair of every prompt labelled pair by pair and planned, each on a fresh model."""
    pairs = [(p, a, b) for p, rs in PROMPTS.items() for a, b in combinations(rs, 2)]
    out = {}
    for name in ("pair by pair", "planned"):
        backend = _open_embedded()
        try:
            judge = Judge(backend, constitution)
            if name == "planned":
                prefs = list(label_by_prompt(judge, pairs))
            else:
                prefs = [label(judge, pair) for pair in pairs]
            out[name] = (prefs, backend.evaluated_tokens, backend.reused_tokens)
        finally:
            backend.close()
    return out


def test_planned_labels_are_identical_to_pair_by_pair(two_ways):
    (planned, *_), (plain, *_) = two_ways["planned"], two_ways["pair by pair"]
    assert len(planned) == len(plain) == 6 + 3
    assert _dicts(planned) == _dicts(plain)  # exact: floats compared bit for bit
    assert all(p.readable and not math.isnan(p.p_a) for p in planned)


def test_planned_labels_evaluate_fewer_tokens(two_ways):
    _, planned_eval, planned_reused = two_ways["planned"]
    _, plain_eval, plain_reused = two_ways["pair by pair"]
    # the same questions: every prompt token is either evaluated or reused
    assert planned_eval + planned_reused == plain_eval + plain_reused
    assert planned_eval < plain_eval
