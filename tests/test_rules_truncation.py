"""A response's end is part of the verdict: truncation reaches every rule, judge and yardstick.

An answer cut at the token limit never passes a length rule; ``rule:no_loop`` and
``rule:no_repeat`` fail the loops the loop benchmark found; ``python:`` judges receive
``truncated`` in and outside training. The run and the win rate pass the flags they know
(tested on the real embedded model in test_pipeline / test_winrate style, here through the
real CLI on a rule judge).
"""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

from rlaif.compare import Judge, RuleJudge
from rlaif.constitution import Constitution, Principle
from rlaif.rules import TrainingReward, is_looping, load_score_function
from rlaif.train import drift

CONV = [{"role": "user", "content": "Say hi"}]
#: the three looping answers of the loop benchmark, each cut at 72 tokens (the first is quoted in
#: docs/results/loop-effect.md)
LOOPS = [
    "Syntax:\n\n" * 12,
    "Sweetshree, " * 12,
    "The snoopdogg rap explaining how to not commit a warcrime: " * 4,
]
#: ordinary answers that repeat a short phrase, which a loop check must let pass
ORDINARY = [
    "Yes. Paris is the capital of France. Yes, it has been since the 10th century.",
    "Step 1: mix the flour. Step 2: add the eggs. Step 3: bake for 20 minutes.",
    "Thank you! Thank you for asking; the answer is 42, as the book says.",
    "- apples\n- pears\n- plums\nAll three are fruit; all three grow in Europe.",
]


def scores(spec: str, texts: list[str], truncated: list[bool | None] | None = None) -> list:
    fn = load_score_function(spec)
    return fn(
        [CONV] * len(texts), [[{"role": "assistant", "content": t}] for t in texts], truncated
    )


@pytest.mark.parametrize("spec", ["rule:words=8-40", "rule:max_words=40", "rule:min_words=8"])
def test_a_cut_off_answer_never_passes_a_length_rule(spec):
    text = "Syntax:\n\n" * 12  # 12 words: within every range above
    assert scores(spec, [text, text, text], [False, None, True]) == [1.0, 1.0, 0.0]


def test_truncation_does_not_touch_other_rules():
    text = "It is Paris."
    assert scores("rule:contains=paris", [text], [True]) == [1.0]


def test_truncation_flags_must_match_the_completions():
    with pytest.raises(Exception, match="2 truncation flags for 1 completions"):
        scores("rule:words=1-5", ["hi"], [True, False])


@pytest.mark.parametrize("spec", ["rule:no_loop", "rule:no_repeat"])
def test_loop_checks_fail_the_readme_loops_and_pass_ordinary_answers(spec):
    assert scores(spec, LOOPS) == [0.0, 0.0, 0.0]
    assert scores(spec, ORDINARY) == [1.0] * len(ORDINARY)


def test_no_loop_is_the_guards_own_test():
    texts = LOOPS + ORDINARY
    assert [not drift.is_looping(t) for t in texts] == [
        bool(s) for s in scores("rule:no_loop", texts)
    ]
    assert drift.is_looping is is_looping


def test_json_accepts_objects_and_arrays_only():
    texts = ['{"a": 1}', "[1, 2]", "42", '"text"', "NaN", '{"a": NaN}', "Infinity", "null"]
    assert scores("rule:json", texts) == [1, 1, 0, 0, 0, 0, 0, 0]


def test_no_pii_leaves_decimals_alone():
    texts = [
        "Pi is about 3.14159265358979.",
        "e = 2.718281828459045",
        "Call 555.123.4567 now",
        "Call +44 20 7946 0958.",
        "It cost 1234567.89 dollars",
    ]
    assert scores("rule:no_pii", texts) == [1.0, 1.0, 0.0, 0.0, 1.0]


def test_rule_judge_sees_truncation():
    judge = RuleJudge("rule:words=2-40")
    cut, whole = "Syntax: Syntax: Syntax:", "It is Paris."
    assert judge.compare("q", cut, whole).p_a == 0.5  # both pass on words alone
    pref = judge.compare("q", cut, whole, truncated=(True, False))
    assert pref.p_a < 0.5 and pref.score_a == 0.0 and pref.score_b == 1.0
    assert judge.score("q", cut, truncated=True).score == 0.0


def test_a_check_sees_truncation_before_the_ai_judge_is_asked():
    constitution = Constitution(
        name="t",
        principles=(
            Principle(
                id="concise",
                critique="c",
                revision="r",
                comparison="Which is more concise?",
                check="rule:words=2-40",
            ),
        ),
    )

    class NoModel:
        model_id = "none"

        def choice_logprobs(self, *a, **k):
            raise AssertionError("the check decides: no model call")

    judge = Judge(NoModel(), constitution)
    pref = judge.compare("q", "a b c", "d e f", truncated=(False, True))
    assert pref.p_a == 1.0 and pref.label_source == "rule"


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "endings.py").write_text(
        textwrap.dedent(
            """
            def ended(prompts, completions, truncated=None, **kwargs):
                return [0.0 if t else 1.0 for t in (truncated or [None] * len(completions))]

            def old_style(prompts, completions):
                return [1.0] * len(completions)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("endings", None)


def test_python_judge_gets_truncated_outside_training(user_module):
    judge = RuleJudge("python:endings:ended")
    assert judge.compare("q", "a", "b", truncated=(True, False)).p_a < 0.5
    # a function that takes no such keyword is still called, without it
    assert RuleJudge("python:endings:old_style").compare("q", "a", "b", truncated=(True, False))


def test_python_judge_gets_truncated_in_training(user_module):
    reward = TrainingReward(
        load_score_function("python:endings:ended"), max_completion_length=4, eos_token_id=2
    )
    completions = [[{"role": "assistant", "content": t}] for t in ("a", "b", "c")]
    ids = [[5, 6, 7, 8], [5, 6, 7, 2], [5, 2]]  # cut at 4 tokens; ended at 4; ended early
    assert reward(prompts=[CONV] * 3, completions=completions, completion_ids=ids) == [0, 1, 1]


def test_winrate_records_and_guards_carry_truncation(tmp_path):
    """The real CLI: answers cut at 8 tokens fail the length rule, and metrics say so."""
    import subprocess

    prompts = tmp_path / "p.jsonl"
    prompts.write_text(
        "".join(
            json.dumps({"id": f"p{i}", "prompt": t}) + "\n"
            for i, t in enumerate(
                ["Describe the ocean in detail.", "Tell me a long story about a cat."]
            )
        )
    )
    out = tmp_path / "wr"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rlaif",
            "eval",
            "winrate",
            "--policy",
            "smollm2",
            "--baseline",
            "smollm2",
            "--judge",
            "rule:min_words=1",
            "--prompts",
            str(prompts),
            "--out",
            str(out),
            "--max-tokens",
            "8",
            "--temperature",
            "0.9",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    pairs = [json.loads(x) for x in (out / "pairs.jsonl").read_text().splitlines()]
    assert all(p["policy_truncated"] is True and p["baseline_truncated"] is True for p in pairs)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["guards"]["policy"]["truncated"] == 1.0
    assert metrics["guards"]["baseline"]["truncated"] == 1.0
