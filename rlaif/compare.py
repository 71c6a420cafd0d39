"""Compare two responses: p(A better) from the judge's next-token probabilities, or a rule's.

Pairwise mode asks "A or B?" in both orders and averages, ``p = (p_ab + 1 - q_ba) / 2`` where
``p_ab`` is p("A") with A shown first and ``q_ba`` is p("A") with B shown first; each order's
value is kept and ``position_consistent`` says whether both orders prefer the same response.
Pointwise mode asks a yes/no question about each response alone and gives
``sigmoid(score_a - score_b)`` with ``score = log p(Yes) - log p(No)``; its scores are cached so
n responses to one prompt cost n judge calls, not one per pair. Nothing is shown in an order,
so its order fields and ``position_consistent`` are None (not measured), and each response's
p(Yes) is kept as ``p_yes_a`` / ``p_yes_b``. A reply that cannot be read gives
``p_a = None``: it is never turned into a win for either side.

Preferences from scoring functions: a programmatic judge, and a principle's check.

A **programmatic judge** (``--judge rule:...`` or ``--judge python:MODULE:FUNCTION``, see
:mod:`rlaif.rules`) scores each response alone and turns the two scores into a soft label,
the Bradley-Terry reading of scores as rewards::

    p(A better) = sigmoid((score_a - score_b) / temperature)      (temperature 1 by default)

so equal scores give exactly 0.5 (a tie, never a win) and a pass/fail rule (1.0 vs 0.0) gives
0.731. Nothing is shown in an order, so the order fields and ``position_consistent`` are None.
One response scored alone (:meth:`RuleJudge.score`) keeps the function's raw score as
``score`` and reads it as a probability the same way, against a response scored 0::

    p_first = sigmoid(score / temperature)

so a pass (1.0) reads 0.731 and a fail (0.0) 0.5, and the pointwise combination of two such
probabilities, ``sigmoid(logit(p_a) - logit(p_b))``, is the soft label above.

Both judges implement :class:`PairJudge`, what the pipeline, the evaluations and the rewards ask
of a judge: ``compare`` two responses, ``score`` one. Every ``p_first`` is a probability in
[0, 1]; responses are ranked by ``score``, the judge's own scale (p("Yes") for the model, the
raw score for a function).

A **check** on a principle (``check: rule:...`` in the constitution) decides a comparison
under that principle when the two responses' check scores differ: the higher score wins with
certainty (p = 1.0 or 0.0, ``label_source: rule``) and no model is asked. When they score the
same (both pass or both fail) the AI judge decides as usual (``label_source: ai``).

Both kinds see whether each response was cut at the token limit (``truncated``, where the
caller knows it): a length rule fails a cut-off answer (:mod:`rlaif.rules`). The AI judge reads
the text only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Literal, Protocol, runtime_checkable

from rlaif import templates
from rlaif.backends.base import Backend, ChoiceScores, Messages
from rlaif.constitution import Constitution, Principle
from rlaif.rules import (
    DEFAULT_TEMPERATURE,
    UNKNOWN,
    ScoreFunction,
    Truncated,
    as_completion,
    as_conversation,
    load_score_function,
    score_pair,
    soft_label,
)

Mode = Literal["pairwise", "pointwise"]
CAI_CLAMP = (0.4, 0.6)


@dataclass
class OrderResult:
    """One question put to a judge, or one response scored alone, and what it cost.

    ``p_first`` is a probability in [0, 1], None when the reply cannot be read: the first
    choice's probability ("A" of a pair, "Yes" of one response), or for a scoring function
    ``sigmoid(score / temperature)`` (see the module docstring).
    """

    p_first: float | None
    method: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    rationale: str = ""
    #: the judge model's reply text
    raw: str = ""
    #: one response scored alone: what responses are ranked by, on the judge's own scale (the
    #: model's p("Yes"), equal to ``p_first``; a function's raw score); None for a pair's order
    score: float | None = None

    @classmethod
    def read(cls, scores: ChoiceScores, p_first: float | None, **fields: object) -> OrderResult:
        """The result of one question to the model: ``p_first`` as read from its ``scores``,
        with their method, reply text and tokens; ``fields`` add the rest (a rationale, a
        score)."""
        return cls(
            p_first,
            scores.method,
            prompt_tokens=scores.prompt_tokens,
            completion_tokens=scores.completion_tokens,
            cached_tokens=scores.cached_tokens,
            raw=scores.text,
            **fields,
        )


@dataclass
class Preference:
    """The judge's preference between responses A and B of one prompt."""

    p_a: float | None
    p_a_order_ab: float | None
    p_a_order_ba: float | None
    position_consistent: bool | None
    principle_id: str
    constitution_hash: str
    judge: str
    method: str
    mode: str
    cot: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    rationales: list[str] = field(default_factory=list)
    #: pointwise only: p("Yes") that response A / B meets the principle, each asked alone
    p_yes_a: float | None = None
    p_yes_b: float | None = None
    #: who decided: "ai" (the judge model) or "rule" (a principle's check, or a rule judge)
    label_source: str = "ai"
    #: rule labels only: the scoring function's score of response A / B
    score_a: float | None = None
    score_b: float | None = None

    @classmethod
    def unordered(cls, p_a: float | None, **fields: object) -> Preference:
        """A preference asked of each response alone, or of a rule: nothing was shown in an
        order, so the order figures and ``position_consistent`` are None (not measured)."""
        return cls(
            p_a=p_a, p_a_order_ab=None, p_a_order_ba=None, position_consistent=None, **fields
        )

    @classmethod
    def from_orders(cls, orders: Sequence[float | None], **fields: object) -> Preference:
        """A preference asked in one order or both: ``orders`` holds each order's probability
        that A is better (None: unreadable), A shown first, then B shown first if asked.

        One order: ``p_a`` is its value and ``position_consistent`` None (not measured). Both:
        ``p_a`` is their mean and ``position_consistent`` whether they agree, both None unless
        both orders were read.
        """
        if len(orders) not in (1, 2):
            raise ValueError(f"a pair is asked in one order or two, not {len(orders)}")
        if len(orders) == 1:
            (p_ab,) = orders
            return cls(
                p_a=p_ab, p_a_order_ab=p_ab, p_a_order_ba=None, position_consistent=None, **fields
            )
        p_ab, p_ba = orders
        both = p_ab is not None and p_ba is not None
        return cls(
            p_a=(p_ab + p_ba) / 2 if both else None,
            p_a_order_ab=p_ab,
            p_a_order_ba=p_ba,
            position_consistent=orders_agree(p_ab, p_ba) if both else None,
            **fields,
        )

    @property
    def readable(self) -> bool:
        """Whether the judge's replies could be read (``p_a`` is a number)."""
        return self.p_a is not None

    def to_dict(self) -> dict:
        """A JSON-ready dict of every field."""
        return asdict(self)


def probability_from_scores(scores: ChoiceScores, choices: tuple[str, str]) -> float | None:
    """p(first choice) normalized over the two choices, or None when the reply is unreadable.

    A choice the server did not return in its top tokens gets the smallest returned
    log-probability, an upper bound on its true value (so the label errs towards 0.5).
    """
    if scores.method == "verdict":
        return parse_verdict(scores.text, choices)
    first, second = (scores.logprobs.get(c) for c in choices)
    if first is None and second is None:
        return None
    if first is None:
        first = scores.floor
    if second is None:
        second = scores.floor
    if first is None or second is None:
        return None
    top = max(first, second)
    e1, e2 = math.exp(first - top), math.exp(second - top)
    return e1 / (e1 + e2)


def p_a_shown_second(p_first: float | None) -> float | None:
    """p(A better) from a question that showed B first: ``1 - p_first`` (None stays None)."""
    return None if p_first is None else 1.0 - p_first


def orders_agree(p_ab: float, p_ba: float) -> bool:
    """Whether both orders give the same answer: A, B, or (exactly 0.5) neither.

    A 0.5 is neither side, so 0.5 in one order and B in the other is not consistent.
    """
    return (p_ab > 0.5, p_ab < 0.5) == (p_ba > 0.5, p_ba < 0.5)


def parse_verdict(text: str, choices: tuple[str, str]) -> float | None:
    """1.0 or 0.0 from a generated verdict naming exactly one choice; None otherwise."""
    # Single letters are matched as written ("a" is a word, "A" a verdict); words in any case.
    found = {
        c
        for c in choices
        if re.search(
            rf"(?<![A-Za-z]){re.escape(c)}(?![A-Za-z])",
            text,
            flags=re.IGNORECASE if len(c) > 1 else 0,
        )
    }
    if len(found) != 1:
        return None
    return 1.0 if choices[0] in found else 0.0


@runtime_checkable
class PairJudge(Protocol):
    """What the pipeline, the evaluations and the rewards ask of a judge.

    :class:`Judge` (a model) and :class:`RuleJudge` (a scoring function) implement it.
    """

    def compare(
        self,
        prompt: str,
        a: str,
        b: str,
        principle: Principle | None = None,
        *,
        truncated: Truncated = UNKNOWN,
    ) -> Preference:
        """The preference between responses ``a`` and ``b`` to ``prompt``; ``truncated`` says
        whether each was cut at the token limit (None: unknown)."""
        ...

    def score(
        self, prompt: str, response: str, principle: Principle, *, truncated: bool | None = None
    ) -> OrderResult:
        """One response scored alone: ``p_first`` a probability in [0, 1] (None: unreadable),
        ``score`` what responses are ranked by."""
        ...


class Judge(PairJudge):
    """A backend, a constitution and the settings of how to ask them for preferences."""

    def __init__(
        self,
        backend: Backend,
        constitution: Constitution,
        *,
        seed: int = 0,
        mode: Mode = "pairwise",
        both_orders: bool = True,
        cot: bool = False,
        clamp: tuple[float, float] | None = None,
        cot_max_tokens: int = 160,
        cot_temperature: float = 0.0,
        cot_seed: int = 0,
    ) -> None:
        if mode not in ("pairwise", "pointwise"):
            raise ValueError(f"mode must be 'pairwise' or 'pointwise', not {mode!r}")
        if clamp is not None and not 0.0 <= clamp[0] < clamp[1] <= 1.0:
            raise ValueError(f"clamp must be (low, high) with 0 <= low < high <= 1, not {clamp}")
        if cot_temperature < 0:
            raise ValueError(f"cot_temperature must be >= 0, not {cot_temperature}")
        if mode == "pointwise" and cot:
            raise ValueError("chain-of-thought is for pairwise mode; pointwise has no verdict")
        self.backend = backend
        self.constitution = constitution
        self.seed = seed
        self.mode = mode
        self.both_orders = both_orders
        self.cot = cot
        self.clamp = clamp
        self.cot_max_tokens = cot_max_tokens
        #: sampling of the rationale (0: greedy); the seed matters only above 0
        self.cot_temperature = cot_temperature
        self.cot_seed = cot_seed
        self._scores: dict[tuple[str, str, str], OrderResult] = {}
        #: the loaded check of each principle that has one (rlaif.rules)
        self.checks = load_checks(constitution)

    def settings(self) -> dict:
        """How this judge asks, as keyword arguments: ``Judge(backend, constitution,
        **judge.settings())`` builds the same judge on another backend (a Ray worker's)."""
        return {
            "seed": self.seed,
            "mode": self.mode,
            "both_orders": self.both_orders,
            "cot": self.cot,
            "clamp": self.clamp,
            "cot_max_tokens": self.cot_max_tokens,
            "cot_temperature": self.cot_temperature,
            "cot_seed": self.cot_seed,
        }

    # -- principle choice -------------------------------------------------------------------
    def principle_for_pair(self, prompt: str, a: str, b: str) -> Principle:
        """The principle of one comparison: per pair in pairwise mode, per prompt in pointwise."""
        if self.mode == "pointwise":
            return self.constitution.sample(self.seed, "compare", prompt)
        return self.constitution.sample(self.seed, "compare", prompt, a, b)

    # -- the two modes ----------------------------------------------------------------------
    def compare(
        self,
        prompt: str,
        a: str,
        b: str,
        principle: Principle | None = None,
        *,
        truncated: Truncated = UNKNOWN,
    ) -> Preference:
        """The judge's preference between responses ``a`` and ``b`` to ``prompt``.

        ``principle`` overrides the sampled one (an ensemble over principles asks several);
        ``truncated`` (whether ``a`` / ``b`` was cut at the token limit, None: unknown) reaches
        the principle's check.
        """
        principle = principle or self.principle_for_pair(prompt, a, b)
        decided = self._checked(prompt, a, b, principle, truncated)
        if decided is not None:
            return decided
        if self.mode == "pointwise":
            return self._pointwise(prompt, a, b, principle)
        orders = [self._ask(prompt, a, b, principle)]
        if self.both_orders:
            orders.append(self._ask(prompt, b, a, principle))
        return self._pairwise(principle, orders)

    def compare_many(self, items: Sequence[tuple]) -> list[Preference]:
        """The preferences of several ``(prompt, a, b, truncated)``, in order: each equal to
        :meth:`compare` of that item, asked with the judge calls in a planned order.

        In pairwise mode without chain-of-thought every question of every item is built
        first, then put to the backend in the order it plans for reuse
        (:meth:`rlaif.backends.base.Backend.reuse_order`: a llama.cpp model evaluates a prefix
        shared by consecutive questions once), and the answers are assembled per item. A
        backend's answer depends on the question alone, so the preferences are those of
        asking item by item. Other modes ask item by item.
        """
        if self.mode != "pairwise" or self.cot:
            return [self.compare(p, a, b, truncated=t) for p, a, b, t in items]
        plans: list[tuple[Principle, Preference | None]] = []
        questions: list[Messages] = []
        for prompt, a, b, truncated in items:
            principle = self.principle_for_pair(prompt, a, b)
            decided = self._checked(prompt, a, b, principle, truncated)
            plans.append((principle, decided))
            if decided is None:
                questions.append(templates.compare_messages(prompt, a, b, principle))
                if self.both_orders:
                    questions.append(templates.compare_messages(prompt, b, a, principle))
        answers: list[ChoiceScores | None] = [None] * len(questions)
        for i in self.backend.reuse_order(questions):
            answers[i] = self.backend.choice_logprobs(questions[i], templates.CHOICES)
        read = iter(answers)
        out = []
        for principle, decided in plans:
            if decided is None:
                n_orders = 2 if self.both_orders else 1
                decided = self._pairwise(
                    principle, [self._read(next(read)) for _ in range(n_orders)]
                )
            out.append(decided)
        return out

    def _checked(
        self, prompt: str, a: str, b: str, principle: Principle, truncated: Truncated
    ) -> Preference | None:
        """The preference the principle's check decides, or None (no check, or a tie)."""
        if principle.id not in self.checks:
            return None
        return check_preference(
            self.checks[principle.id],
            prompt,
            a,
            b,
            principle,
            self.constitution,
            self.mode,
            truncated=truncated,
        )

    def _pairwise(self, principle: Principle, orders: list[OrderResult]) -> Preference:
        """The preference from a pair's answers: A shown first, then B shown first if asked."""
        fields = dict(
            principle_id=principle.id,
            constitution_hash=self.constitution.hash,
            judge=self.backend.model_id,
            method=_method(orders),
            mode="pairwise",
            cot=self.cot,
            prompt_tokens=sum(o.prompt_tokens for o in orders),
            completion_tokens=sum(o.completion_tokens for o in orders),
            cached_tokens=sum(o.cached_tokens for o in orders),
            rationales=[o.rationale for o in orders if o.rationale],
        )
        p_by_order = [orders[0].p_first, *(p_a_shown_second(o.p_first) for o in orders[1:])]
        return Preference.from_orders(p_by_order, **fields)

    def _ask(self, prompt: str, first: str, second: str, principle: Principle) -> OrderResult:
        rationale, prompt_tokens, completion_tokens = "", 0, 0
        if self.cot:
            reasoning = templates.compare_cot_messages(prompt, first, second, principle)
            gen = self.backend.generate(
                reasoning,
                max_tokens=self.cot_max_tokens,
                temperature=self.cot_temperature,
                seed=self.cot_seed,
            )
            rationale = gen.text.strip()
            prompt_tokens, completion_tokens = gen.prompt_tokens, gen.completion_tokens
            messages = templates.cot_verdict_messages(reasoning, rationale)
        else:
            messages = templates.compare_messages(prompt, first, second, principle)
        result = self._read(self.backend.choice_logprobs(messages, templates.CHOICES), rationale)
        # the rationale's generation is part of what this question cost
        result.prompt_tokens += prompt_tokens
        result.completion_tokens += completion_tokens
        return result

    def _read(self, scores: ChoiceScores, rationale: str = "") -> OrderResult:
        """One order's answer: p("A") read from the judge's scores, clamped if set."""
        p = probability_from_scores(scores, templates.CHOICES)
        if p is not None and self.clamp is not None:
            p = min(max(p, self.clamp[0]), self.clamp[1])
        return OrderResult.read(scores, p, rationale=rationale)

    def score(
        self, prompt: str, response: str, principle: Principle, *, truncated: bool | None = None
    ) -> OrderResult:
        """Pointwise: p("Yes") that ``response`` meets the principle, cached per response; it
        is both ``p_first`` and ``score``.

        ``truncated`` is accepted as :class:`PairJudge` has it; the model reads the text only.
        """
        key = (prompt, response, principle.id)
        if key not in self._scores:
            messages = templates.pointwise_messages(prompt, response, principle)
            scores = self.backend.choice_logprobs(messages, templates.YES_NO)
            p_yes = probability_from_scores(scores, templates.YES_NO)
            self._scores[key] = OrderResult.read(scores, p_yes, score=p_yes)
            return self._scores[key]
        # A repeated score costs nothing: report zero tokens for it.
        return replace(self._scores[key], prompt_tokens=0, completion_tokens=0, cached_tokens=0)

    def _pointwise(self, prompt: str, a: str, b: str, principle: Principle) -> Preference:
        sa, sb = self.score(prompt, a, principle), self.score(prompt, b, principle)
        p_a = None
        if sa.p_first is not None and sb.p_first is not None:
            p_a = _sigmoid(_logit(sa.p_first) - _logit(sb.p_first))
        # Each response is asked alone: no order was shown, so no order figure was measured.
        return Preference.unordered(
            p_a,
            principle_id=principle.id,
            constitution_hash=self.constitution.hash,
            judge=self.backend.model_id,
            method=_method([sa, sb]),
            mode="pointwise",
            prompt_tokens=sa.prompt_tokens + sb.prompt_tokens,
            completion_tokens=sa.completion_tokens + sb.completion_tokens,
            cached_tokens=sa.cached_tokens + sb.cached_tokens,
            p_yes_a=sa.p_first,
            p_yes_b=sb.p_first,
        )


def _method(results: list[OrderResult]) -> str:
    return "verdict" if any(r.method == "verdict" for r in results) else "logprobs"


def _logit(p: float) -> float:
    p = min(max(p, 1e-12), 1 - 1e-12)
    return math.log(p) - math.log1p(-p)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


# -- preferences from scoring functions -------------------------------------------------------


class RuleJudge(PairJudge):
    """A judge whose preferences come from a scoring function instead of a model."""

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

    def compare(
        self,
        prompt: str | list[dict],
        a: str,
        b: str,
        principle: Principle | None = None,
        *,
        truncated: Truncated = UNKNOWN,
    ) -> Preference:
        """The function's preference between ``a`` and ``b``; ``principle`` is ignored.

        ``truncated`` says whether ``a`` / ``b`` was cut at the token limit (None: unknown).
        """
        sa, sb = score_pair(self.function, prompt, a, b, truncated)
        return Preference.unordered(
            soft_label(sa, sb, self.temperature),
            principle_id="",
            constitution_hash="",
            judge=self.spec,
            method="rule",
            mode="rule",
            label_source="rule",
            score_a=sa,
            score_b=sb,
        )

    def score(
        self,
        prompt: str | list[dict],
        response: str,
        principle: Principle | None = None,
        *,
        truncated: bool | None = None,
    ) -> OrderResult:
        """One response's raw score as ``score`` (best-worst pairing ranks by it, a reward is
        it) and ``p_first = sigmoid(score / temperature)``; ``principle`` is ignored."""
        flags = None if truncated is None else [truncated]
        (s,) = self.function([as_conversation(prompt)], [as_completion(response)], flags)
        return OrderResult(p_first=soft_label(s, 0.0, self.temperature), method="rule", score=s)


def check_preference(
    check: ScoreFunction,
    prompt: str | list[dict],
    a: str,
    b: str,
    principle: Principle,
    constitution: Constitution,
    mode: str,
    *,
    truncated: Truncated = UNKNOWN,
) -> Preference | None:
    """The certain preference a principle's check gives, or None when it does not decide."""
    sa, sb = score_pair(check, prompt, a, b, truncated)
    if sa == sb:
        return None
    return Preference.unordered(
        1.0 if sa > sb else 0.0,
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
