"""Critique and revision: the real embedded model, plus the pure logic around it."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from rlaif.backends import Backend, ChoiceScores, Generation, Messages
from rlaif.critique import critique, parse_critique, revise

PROMPT = "How do I boil an egg?"
RESPONSE = "Put it in the microwave for ten minutes."
#: shorter generations than the library's defaults keep the real-model tests fast
SHORT_TOKENS = 64


def test_critique_with_the_real_model(counted_smollm2, constitution):
    crit = critique(counted_smollm2, constitution, PROMPT, RESPONSE, seed=0)
    assert counted_smollm2.calls == {"generate": 1}
    assert crit.text.strip()
    assert crit.principle_id in {p.id for p in constitution.principles}
    assert crit.constitution_hash == constitution.hash
    assert crit.model == "smollm2"
    assert crit.prompt_tokens > 0 and crit.completion_tokens > 0
    assert (crit.problems, crit.suggestions) == parse_critique(crit.text)
    # the principle is drawn from the seed and the texts: the same call draws the same one
    assert crit.principle_id == constitution.sample(0, "critique", PROMPT, RESPONSE).id


@pytest.mark.slow
def test_revise_two_rounds_with_the_real_model(counted_smollm2, constitution):
    short = {"max_tokens": SHORT_TOKENS, "critique_max_tokens": SHORT_TOKENS}
    result = revise(counted_smollm2, constitution, PROMPT, RESPONSE, rounds=2, seed=0, **short)
    assert counted_smollm2.calls == {"generate": 4}  # a critique and a rewrite per round
    assert len(result.rounds) == 2
    ids = {p.id for p in constitution.principles}
    assert result.rounds[0].response == RESPONSE
    assert result.rounds[1].response == result.rounds[0].revision
    for r in result.rounds:
        assert r.critique.principle_id in ids
        assert r.critique.text.strip()
        assert r.revision.strip()
        assert r.changed == (r.revision != r.response)
        assert 0 < r.completion_tokens <= SHORT_TOKENS
        assert 0 < r.critique.completion_tokens <= SHORT_TOKENS
    assert result.final == result.rounds[-1].revision
    d = result.to_dict()
    assert d["principle_id"] == result.rounds[-1].critique.principle_id
    assert d["revision"] == result.final
    assert d["original"] == RESPONSE
    assert [r["principle_id"] for r in d["rounds"]] == [
        r.critique.principle_id for r in result.rounds
    ]


# -- logic, with a scripted backend -----------------------------------------------------------
class ScriptedBackend(Backend):
    """Generates the given texts in turn and records who was asked."""

    def __init__(self, model_id: str, *texts: str) -> None:
        self.model_id = model_id
        self.texts = list(texts)
        self.prompts: list[str] = []

    def generate(self, messages, *, max_tokens=256, temperature=0.0, seed=0) -> Generation:
        self.prompts.append(messages[-1]["content"])
        return Generation(text=self.texts.pop(0), prompt_tokens=7, completion_tokens=3)

    def choice_logprobs(self, messages: Messages, choices: Sequence[str]) -> ChoiceScores:
        raise AssertionError("critique and revision never score choices")


def test_revise_uses_the_critic_for_critiques(constitution):
    critic = ScriptedBackend("critic", "Problems: vague. Suggestions: be exact.")
    policy = ScriptedBackend("policy", "[Response] Boil it for nine minutes. [End of Response]")
    result = revise(policy, constitution, PROMPT, RESPONSE, rounds=1, critic=critic)
    assert result.final == "Boil it for nine minutes."
    crit = result.rounds[0].critique
    assert crit.model == "critic"
    assert (crit.problems, crit.suggestions) == ("vague.", "be exact.")
    # the rewrite is asked with the critique and with the same principle's revision request
    principle = constitution.get(crit.principle_id)
    assert "Problems: vague." in policy.prompts[0]
    assert principle.revision in policy.prompts[0]
    assert principle.critique in critic.prompts[0]


def test_empty_rewrite_keeps_the_text(constitution):
    backend = ScriptedBackend("m", "Problems: none.", "   ")
    result = revise(backend, constitution, PROMPT, RESPONSE, rounds=1)
    assert result.final == RESPONSE
    assert result.rounds[0].changed is False


def test_zero_and_negative_rounds(constitution):
    backend = ScriptedBackend("m")
    result = revise(backend, constitution, PROMPT, RESPONSE, rounds=0)
    assert result.rounds == [] and result.final == RESPONSE
    assert result.to_dict()["principle_id"] is None
    with pytest.raises(ValueError):
        revise(backend, constitution, PROMPT, RESPONSE, rounds=-1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Problems: too short.\nSuggestions: add detail.", ("too short.", "add detail.")),
        ("problem: wrong fact\nsuggestion: fix it", ("wrong fact", "fix it")),
        ("  PROBLEMS :  x  \n\n SUGGESTIONS:  y  ", ("x", "y")),
        ("It is fine.", ("It is fine.", "")),
        ("Suggestions: say more.", ("", "say more.")),
        ("", ("", "")),
        ("Problems: a\nSuggestions: b\nSuggestions: c", ("a", "b\nSuggestions: c")),
    ],
)
def test_parse_critique(text, expected):
    assert parse_critique(text) == expected
