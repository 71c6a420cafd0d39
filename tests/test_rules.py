"""Programmatic judges (rlaif.rules, rlaif.compare) and principles with a check.

The built-in rules and the error messages are unit-tested; a check inside the AI judge is
tested on the real embedded model through a call counter.
"""

from __future__ import annotations

import math
import re
import sys
import textwrap

import pytest

from rlaif.compare import Judge, RuleJudge
from rlaif.constitution import Constitution, Principle, load_constitution, parse_constitution
from rlaif.errors import ConstitutionError
from rlaif.rules import (
    RuleError,
    TrainingReward,
    completion_text,
    is_programmatic,
    load_score_function,
    soft_label,
)

CONV = [{"role": "user", "content": "Say hi"}]


def scores(spec: str, *texts: str) -> list[float]:
    """The rule's scores of each text, called in TRL's conversational form."""
    fn = load_score_function(spec)
    return fn([CONV] * len(texts), [[{"role": "assistant", "content": t}] for t in texts])


# -- built-in rules ---------------------------------------------------------------------------
def test_max_and_min_words():
    assert scores("rule:max_words=3", "one two three", "one two three four", "") == [1, 0, 1]
    assert scores("rule:min_words=2", "one", "one two") == [0.0, 1.0]
    assert scores("rule:words=2-3", "one", "one two", "a b c", "a b c d", "") == [0, 1, 1, 0, 0]


def test_contains_and_not_contains_ignore_case():
    assert scores("rule:contains=Paris", "It is PARIS.", "It is Lyon.") == [1.0, 0.0]
    assert scores("rule:not_contains=sorry", "Sorry, no.", "Here it is.") == [0.0, 1.0]


def test_regex():
    assert scores(r"rule:regex=^\d+$", "42", "forty-two") == [1.0, 0.0]


def test_json_accepts_one_code_fence():
    fenced = '```json\n{"a": 1}\n```'
    assert scores("rule:json", '{"a": 1}', fenced, "{a: 1}", "[1, 2") == [1, 1, 0, 0]


def test_no_repeat_fails_a_repeated_sentence_only():
    looping = "The sky is blue. The sky is blue. It is nice."
    varied = "The sky is blue. The sea is blue too. Ok. Ok."  # "Ok" is too short to count
    assert scores("rule:no_repeat", looping, varied) == [0.0, 1.0]


def test_no_pii_fails_emails_and_phone_numbers_not_years():
    texts = ["Write to jo.doe@example.com", "Call +1 (555) 123-4567.", "It happened in 1969."]
    assert scores("rule:no_pii", *texts) == [0.0, 0.0, 1.0]


def test_rules_accept_plain_strings_too():
    fn = load_score_function("rule:max_words=1")
    assert fn(["Say hi"], ["hi"]) == [1.0]
    assert completion_text([{"role": "user", "content": "q"}]) == "q"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("rule:max_words=ten", "needs a whole number, not 'ten'"),
        ("rule:max_words=-1", "must be >= 0"),
        ("rule:contains=", "needs a value"),
        ("rule:words=8", "needs a range MIN-MAX"),
        ("rule:words=40-8", "MIN <= MAX"),
        ("rule:words=a-8", "needs a whole number, not 'a'"),
        ("rule:regex=(", "not a valid regular expression"),
        ("rule:shout", "unknown rule 'rule:shout'; valid forms: rule:max_words=N"),
        ("rule:json=1", "unknown rule"),
        ("python:just_a_module", "write python:MODULE:FUNCTION"),
    ],
)
def test_bad_rule_strings_say_what_is_wrong(spec, message):
    with pytest.raises(RuleError, match=re.escape(message)):
        load_score_function(spec)


def test_is_programmatic():
    assert is_programmatic("rule:json") and is_programmatic(" python:m:f")
    assert not is_programmatic("smollm2") and not is_programmatic("openai:x@http://h/v1")


# -- python: functions ------------------------------------------------------------------------
@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A user's reward module in tmp_path, put on the import path as PYTHONPATH would."""
    (tmp_path / "my_rewards.py").write_text(
        textwrap.dedent(
            """
            def length(prompts, completions, **kw):
                return [float(len(c[0]["content"])) for c in completions]

            def prompt_aware(prompts, completions, **kw):
                # the prompt arrives as messages; reward echoing the user's last word
                return [float(p[-1]["content"].split()[-1] in c[0]["content"])
                        for p, c in zip(prompts, completions)]

            def too_few(prompts, completions, **kw):
                return [1.0]

            def not_a_list(prompts, completions, **kw):
                return 3.0

            def nan_for_second(prompts, completions, **kw):
                return [1.0, float("nan")]

            def text_for_first(prompts, completions, **kw):
                return ["good", 1.0]

            def none_for_first(prompts, completions, **kw):
                return [None, 1.0]

            def raises(prompts, completions, **kw):
                raise KeyError("content")

            def sees_trl_kwargs(prompts, completions, completion_ids, trainer_state, **kw):
                return [float(trainer_state == "state") for _ in completions]

            CONSTANT = 3
            """
        )
    )
    (tmp_path / "broken_rewards.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in ("my_rewards", "broken_rewards"):
        sys.modules.pop(name, None)


def test_python_judge_is_a_trl_reward_function(user_module):
    judge = RuleJudge("python:my_rewards:length")
    pref = judge.compare("Say hi", "hello there", "hi")
    assert pref.label_source == "rule" and pref.method == "rule" and pref.mode == "rule"
    assert (pref.score_a, pref.score_b) == (11.0, 2.0)
    assert pref.p_a == pytest.approx(1 / (1 + math.exp(-9.0)))
    assert pref.position_consistent is None and pref.p_a_order_ab is None
    assert pref.judge == "python:my_rewards:length"


def test_python_judge_gets_the_prompt_as_messages(user_module):
    judge = RuleJudge("python:my_rewards:prompt_aware")
    chat = [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Say hi"}]
    assert judge.compare(chat, "hi!", "hello").p_a == pytest.approx(soft_label(1.0, 0.0))
    assert judge.compare("Say bye", "hi", "bye").p_a < 0.5


def test_equal_scores_are_exactly_a_tie(user_module):
    pref = RuleJudge("python:my_rewards:length").compare("q", "abc", "xyz")
    assert pref.p_a == 0.5


def test_soft_label_temperature():
    assert soft_label(1.0, 0.0) == pytest.approx(0.7310585786)
    assert soft_label(1.0, 0.0, temperature=0.25) == pytest.approx(1 / (1 + math.exp(-4)))
    assert soft_label(0.0, 1000.0) == pytest.approx(0.0)  # no overflow
    with pytest.raises(ValueError, match="temperature must be > 0"):
        RuleJudge("rule:json", temperature=0)


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("too_few", "my_rewards.too_few returned 1 scores for 2 completions"),
        ("not_a_list", "my_rewards.not_a_list returned float, not a list of numbers"),
        ("nan_for_second", "my_rewards.nan_for_second returned nan for record 1 ('bb')"),
        ("text_for_first", "my_rewards.text_for_first returned 'good' for record 0 ('a')"),
        ("none_for_first", "my_rewards.none_for_first returned None for record 0"),
        ("raises", "my_rewards.raises raised KeyError: 'content' (called on records 0-1"),
    ],
)
def test_bad_function_output_names_the_function_and_record(user_module, function, message):
    with pytest.raises(RuleError) as e:
        RuleJudge(f"python:my_rewards:{function}").compare("q", "a", "bb")
    assert message in str(e.value)


def test_missing_module_attribute_and_dependency_are_clear(user_module):
    with pytest.raises(RuleError, match="no module named 'nowhere_rewards'; install it or put"):
        load_score_function("python:nowhere_rewards:f")
    with pytest.raises(RuleError, match="module 'my_rewards' has no attribute 'nope'"):
        load_score_function("python:my_rewards:nope")
    with pytest.raises(RuleError, match="my_rewards.CONSTANT is not callable"):
        load_score_function("python:my_rewards:CONSTANT")
    with pytest.raises(RuleError, match="importing 'broken_rewards' failed.*no_such_dependency"):
        load_score_function("python:broken_rewards:f")


def test_training_reward_passes_trl_keywords_and_allows_none(user_module):
    reward = TrainingReward(load_score_function("python:my_rewards:sees_trl_kwargs"))
    assert reward.__name__ == "sees_trl_kwargs"
    comps = [[{"role": "assistant", "content": "x"}]]
    assert reward([CONV], comps, completion_ids=[[1]], trainer_state="state") == [1.0]
    none_first = TrainingReward(load_score_function("python:my_rewards:none_for_first"))
    assert none_first([CONV, CONV], comps * 2) == [None, 1.0]


# -- principles with a check ------------------------------------------------------------------
def principle(check: str = "", pid: str = "short") -> Principle:
    return Principle(
        id=pid,
        critique="Point out padding.",
        revision="Rewrite it shorter.",
        comparison="Which response is shorter and still answers?",
        check=check,
    )


def test_check_is_parsed_validated_and_hashed():
    raw = {"principles": [{**principle().__dict__, "check": "rule:max_words=5"}]}
    del raw["principles"][0]["pointwise"]
    c = parse_constitution(raw, source="c.yaml")
    assert c.principles[0].check == "rule:max_words=5"
    unchecked = Constitution("x", (principle(),))
    assert c.hash != unchecked.hash  # the check is part of the content
    # a constitution without checks hashes as before checks existed (same cache, same hash)
    assert load_constitution("default").hash != "a1034d1b5c8a8e96"  # the default has checks
    plain = Constitution(
        "d",
        tuple(
            p.__class__(**{**p.__dict__, "check": ""})
            for p in load_constitution("default").principles
        ),
    )
    assert plain.hash == "a1034d1b5c8a8e96"
    bad = {"principles": [{**raw["principles"][0], "check": "rule:loud"}]}
    with pytest.raises(ConstitutionError, match="c.yaml: principle 1 \\('short'\\): field 'check'"):
        parse_constitution(bad, source="c.yaml")


def test_default_constitution_checks_concise_and_privacy():
    checks = {p.id: p.check for p in load_constitution("default").principles if p.check}
    assert checks == {"concise": "rule:no_repeat", "privacy": "rule:no_pii"}


def test_check_decides_with_certainty_and_calls_no_model(counted_smollm2):
    judge = Judge(counted_smollm2, Constitution("c", (principle("rule:max_words=3"),)))
    pref = judge.compare("Say hi", "Hello, how are you today, my friend?", "Hi!")
    assert (pref.p_a, pref.label_source, pref.principle_id) == (0.0, "rule", "short")
    assert (pref.score_a, pref.score_b) == (0.0, 1.0)
    assert pref.judge == "rule:max_words=3" and pref.prompt_tokens == 0
    assert sum(counted_smollm2.calls.values()) == 0


def test_check_tie_leaves_the_decision_to_the_ai(counted_smollm2):
    judge = Judge(counted_smollm2, Constitution("c", (principle("rule:max_words=3"),)))
    pref = judge.compare("Say hi", "Hi!", "Hello!")  # both pass
    assert pref.label_source == "ai" and pref.judge == counted_smollm2.model_id
    assert pref.p_a is not None and 0.0 < pref.p_a < 1.0
    assert counted_smollm2.calls["choice_logprobs"] == 2  # both orders, as without a check
