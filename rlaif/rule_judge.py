"""Preferences from scoring functions: a programmatic judge, and a principle's check.

A **programmatic judge** (``--judge rule:...`` or ``--judge python:MODULE:FUNCTION``, see
:mod:`rlaif.rules`) scores each response alone and turns the two scores into a soft label,
the Bradley-Terry reading of scores as rewards::

    p(A better) = sigmoid((score_a - score_b) / temperature)      (temperature 1 by default)

so equal scores give exactly 0.5 (a tie, never a win) and a pass/fail rule (1.0 vs 0.0) gives
0.731. Nothing is shown in an order, so the order fields and ``position_consistent`` are None.

A **check** on a principle (``check: rule:...`` in the constitution) decides a comparison
under that principle when the two responses' check scores differ: the higher score wins with
certainty (p = 1.0 or 0.0, ``label_source: rule``) and no model is asked. When they score the
same (both pass or both fail) the AI judge decides as usual (``label_source: ai``).
"""

from __future__ import annotations

import math

from rlaif.compare import OrderResult, Preference
from rlaif.constitution import Constitution, Principle
from rlaif.rules import ScoreFunction, is_programmatic, load_score_function

DEFAULT_TEMPERATURE = 1.0


def as_conversation(prompt: str | list[dict]) -> list[dict]:
    """A prompt in TRL's conversational form: messages as given, a text as one user turn."""
    return prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]


def as_completion(text: str) -> list[dict]:
    """A response in TRL's conversational form: one assistant message."""
    return [{"role": "assistant", "content": text}]


def score_pair(
    function: ScoreFunction, prompt: str | list[dict], a: str, b: str
) -> tuple[float, float]:
    """The function's scores of responses ``a`` and ``b`` to one prompt, in one call."""
    conversation = as_conversation(prompt)
    sa, sb = function([conversation, conversation], [as_completion(a), as_completion(b)])
    return sa, sb


def soft_label(score_a: float, score_b: float, temperature: float = DEFAULT_TEMPERATURE) -> float:
    """``sigmoid((score_a - score_b) / temperature)``; exactly 0.5 for equal scores."""
    x = (score_a - score_b) / temperature
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


class RuleJudge:
    """A judge whose preferences come from a scoring function instead of a model."""

    #: what the pipeline and reports read of a judge; a scoring function has no such settings
    mode = "rule"
    cot = False
    both_orders = False

    def __init__(
        self,
        spec: str,
        constitution: Constitution | None = None,
        *,
        seed: int = 0,
        temperature: float = DEFAULT_TEMPERATURE,
    ) -> None:
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, not {temperature}")
        self.spec = spec.strip()
        self.function = load_score_function(self.spec)
        self.constitution = constitution
        self.seed = seed
        self.temperature = temperature
        self.model_id = self.spec

    def compare(
        self, prompt: str | list[dict], a: str, b: str, principle: Principle | None = None
    ) -> Preference:
        """The function's preference between ``a`` and ``b``; ``principle`` is ignored."""
        sa, sb = score_pair(self.function, prompt, a, b)
        return Preference(
            p_a=soft_label(sa, sb, self.temperature),
            p_a_order_ab=None,
            p_a_order_ba=None,
            position_consistent=None,
            principle_id="",
            constitution_hash="",
            judge=self.spec,
            method="rule",
            mode="rule",
            label_source="rule",
            score_a=sa,
            score_b=sb,
        )

    def score(self, prompt: str | list[dict], response: str, principle=None) -> OrderResult:
        """One response's score (best-worst pairing ranks by it); ``principle`` is ignored."""
        (s,) = self.function([as_conversation(prompt)], [as_completion(response)])
        return OrderResult(p_first=s, method="rule")


def check_preference(
    check: ScoreFunction,
    prompt: str | list[dict],
    a: str,
    b: str,
    principle: Principle,
    constitution: Constitution,
    mode: str,
) -> Preference | None:
    """The certain preference a principle's check gives, or None when it does not decide."""
    sa, sb = score_pair(check, prompt, a, b)
    if sa == sb:
        return None
    return Preference(
        p_a=1.0 if sa > sb else 0.0,
        p_a_order_ab=None,
        p_a_order_ba=None,
        position_consistent=None,
        principle_id=principle.id,
        constitution_hash=constitution.hash,
        judge=check.spec,
        method="rule",
        mode=mode,
        label_source="rule",
        score_a=sa,
        score_b=sb,
    )


def load_checks(constitution: Constitution) -> dict[str, ScoreFunction]:
    """The loaded check of every principle that has one, by principle id (RuleError if not)."""
    return {p.id: load_score_function(p.check) for p in constitution.principles if p.check}


def check_judge_spec(spec: str) -> None:
    """Fail early on a bad judge string: a model string, or a scoring function (imported)."""
    if isinstance(spec, str) and is_programmatic(spec):
        load_score_function(spec)
    else:
        from rlaif.backends import parse_model_spec

        parse_model_spec(spec)


class NoModel:
    """Stands in for the judge backend of an evaluation whose judge is a scoring function:
    the accounting a backend keeps, all zero (a function makes no model call, costs nothing)."""

    price_per_million = (0.0, 0.0)
    model_calls = 0
    cached_calls = 0

    def __init__(self, spec: str) -> None:
        self.model_id = spec


#: how ``rlaif eval agreement`` describes the one strategy of a programmatic judge
RULE_STRATEGY = "scoring function, p = sigmoid((score_a - score_b) / temperature)"


def rule_strategies(spec: str, constitution: Constitution, *, seed: int = 0):
    """(backend stand-in, {"rule": strategy}) for ``rlaif eval agreement`` with a rule judge."""
    from rlaif.evaluate.strategies import JudgeStrategy

    return NoModel(spec), {"rule": JudgeStrategy("rule", RuleJudge(spec, constitution, seed=seed))}
