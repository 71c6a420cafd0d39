"""Ways of asking one judge for a preference, to compare side by side on the same pairs.

Every strategy turns (prompt, a, b) into a ``Preference`` with ``p_a`` and, where it asks in
both orders, each order's value, so the same metrics apply to all of them. An unreadable reply
stays ``p_a = None``: it is never turned into a win.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from statistics import fmean

from rlaif import templates
from rlaif.backends.base import Backend
from rlaif.compare import (
    CAI_CLAMP,
    Judge,
    PairJudge,
    Preference,
    RuleJudge,
    p_a_shown_second,
    parse_verdict,
)
from rlaif.constitution import Constitution, Principle

#: name -> what it does, in the order tables list them
STRATEGIES: dict[str, str] = {
    "one-order": "soft label, A shown first only (biased; for study)",
    "both-orders": "soft label asked in both orders and averaged (rlaif's default Judge)",
    "pointwise": "each response scored alone, p = sigmoid(logit_a - logit_b)",
    "verdict": "short generated verdict in both orders, letter parsed (the seed's method)",
    "cot": "chain of thought, then the verdict's soft label, both orders",
    "cot-clamp": "cot with each order clamped to 40-60% (Constitutional AI paper)",
    "self-consistency": "n sampled chain-of-thought rationales, soft labels averaged",
    "ensemble": "soft labels over k sampled principles averaged, both orders",
}
#: what ``rlaif eval agreement`` runs when no strategy is named: the ones that generate nothing
DEFAULT_STRATEGIES = ("one-order", "both-orders", "pointwise", "verdict", "ensemble")


@dataclass(frozen=True)
class StrategyOptions:
    """Settings of the strategies that have any."""

    #: self-consistency: rationales sampled per order
    samples: int = 3
    #: self-consistency: sampling temperature of the rationales
    sample_temperature: float = 0.7
    #: ensemble: principles per pair
    principles: int = 3
    #: chain of thought: longest rationale, in tokens
    cot_max_tokens: int = 160
    #: verdict: longest generated verdict, in tokens
    verdict_max_tokens: int = 16

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, not {self.samples}")
        if self.principles < 1:
            raise ValueError(f"principles must be >= 1, not {self.principles}")
        if self.sample_temperature <= 0:
            raise ValueError(f"sample_temperature must be > 0, not {self.sample_temperature}")
        if self.cot_max_tokens < 1 or self.verdict_max_tokens < 1:
            raise ValueError("cot_max_tokens and verdict_max_tokens must be >= 1")


class Strategy:
    """A named way to label a pair with one judge backend and constitution."""

    name: str

    def label(self, prompt: str, a: str, b: str) -> Preference:
        """The strategy's preference between ``a`` and ``b``."""
        raise NotImplementedError


class JudgeStrategy(Strategy):
    """A strategy that is one judge as configured: a ``Judge`` or a ``RuleJudge``."""

    def __init__(self, name: str, judge: PairJudge) -> None:
        self.name = name
        self.judge = judge

    def label(self, prompt: str, a: str, b: str) -> Preference:
        """The judge's ``compare``."""
        return self.judge.compare(prompt, a, b)


class VerdictStrategy(Strategy):
    """Generate a short verdict in each order and parse the letter; unparsable is unreadable."""

    name = "verdict"

    def __init__(self, judge: Judge, max_tokens: int) -> None:
        self.judge = judge
        self.max_tokens = max_tokens

    def _order(self, prompt: str, first: str, second: str, principle: Principle):
        messages = templates.compare_messages(prompt, first, second, principle)
        gen = self.judge.backend.generate(messages, max_tokens=self.max_tokens, temperature=0.0)
        return parse_verdict(gen.text, templates.CHOICES), gen

    def label(self, prompt: str, a: str, b: str) -> Preference:
        """Both orders; p_a is 1, 0.5 (the orders disagree) or 0, or None if either is unread."""
        principle = self.judge.principle_for_pair(prompt, a, b)
        p_ab, gen_ab = self._order(prompt, a, b, principle)
        q_ba, gen_ba = self._order(prompt, b, a, principle)
        return _combine(
            self.judge,
            [p_ab],
            [p_a_shown_second(q_ba)],
            principle_id=principle.id,
            method="verdict",
            prompt_tokens=gen_ab.prompt_tokens + gen_ba.prompt_tokens,
            completion_tokens=gen_ab.completion_tokens + gen_ba.completion_tokens,
            rationales=[gen_ab.text, gen_ba.text],
        )


class SelfConsistency(Strategy):
    """Chain of thought sampled n times per order (seeds 0..n-1); soft labels averaged."""

    name = "self-consistency"

    def __init__(self, judges: list[Judge]) -> None:
        self.judges = judges

    def label(self, prompt: str, a: str, b: str) -> Preference:
        """Mean of each order's readable samples; unreadable if an order has none."""
        prefs = [j.compare(prompt, a, b) for j in self.judges]
        return _combine(
            self.judges[0],
            [p.p_a_order_ab for p in prefs],
            [p.p_a_order_ba for p in prefs],
            principle_id=prefs[0].principle_id,
            method=prefs[0].method,
            prompt_tokens=sum(p.prompt_tokens for p in prefs),
            completion_tokens=sum(p.completion_tokens for p in prefs),
            rationales=[r for p in prefs for r in p.rationales],
            cot=True,
        )


class Ensemble(Strategy):
    """Soft labels under k principles sampled per pair, averaged per order.

    Each order is asked under every principle before the other order, so the judge's KV
    cache keeps the prompt and both responses: only the question at the end changes.
    """

    name = "ensemble"

    def __init__(self, judge: Judge, k: int) -> None:
        self.judge = judge  # one order per call: the orders are put together here
        self.k = min(k, len(judge.constitution.principles))

    def principles_for_pair(self, prompt: str, a: str, b: str) -> list[Principle]:
        """k distinct principles drawn from the seed and the pair (the same in either order)."""
        key = json.dumps([self.judge.seed, "ensemble", prompt, sorted([a, b])])
        rng = random.Random(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big"))
        return rng.sample(list(self.judge.constitution.principles), self.k)

    def label(self, prompt: str, a: str, b: str) -> Preference:
        """Mean over the principles of each order's soft label."""
        principles = self.principles_for_pair(prompt, a, b)
        ab = [self.judge.compare(prompt, a, b, principle=p) for p in principles]
        ba = [self.judge.compare(prompt, b, a, principle=p) for p in principles]
        return _combine(
            self.judge,
            [p.p_a for p in ab],
            [p_a_shown_second(p.p_a) for p in ba],
            principle_id="+".join(p.id for p in principles),
            method=ab[0].method,
            prompt_tokens=sum(p.prompt_tokens for p in ab + ba),
            completion_tokens=sum(p.completion_tokens for p in ab + ba),
        )


def _mean(values: list[float | None]) -> float | None:
    readable = [v for v in values if v is not None]
    return fmean(readable) if readable else None


def _combine(
    judge: Judge,
    p_ab: list[float | None],
    p_ba: list[float | None],
    *,
    principle_id: str,
    method: str,
    prompt_tokens: int,
    completion_tokens: int,
    rationales: list[str] | None = None,
    cot: bool = False,
) -> Preference:
    """A Preference from several readings of each order (means of the readable ones)."""
    return Preference.from_orders(
        [_mean(p_ab), _mean(p_ba)],
        principle_id=principle_id,
        constitution_hash=judge.constitution.hash,
        judge=judge.backend.model_id,
        method=method,
        mode="pairwise",
        cot=cot,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        rationales=rationales or [],
    )


def make_strategy(
    name: str,
    backend: Backend,
    constitution: Constitution,
    *,
    seed: int = 0,
    options: StrategyOptions | None = None,
) -> Strategy:
    """The strategy called ``name`` (a key of ``STRATEGIES``) on one judge backend."""
    o = options or StrategyOptions()

    def judge(**kw) -> Judge:
        return Judge(backend, constitution, seed=seed, cot_max_tokens=o.cot_max_tokens, **kw)

    if name == "one-order":
        return JudgeStrategy(name, judge(both_orders=False))
    if name == "both-orders":
        return JudgeStrategy(name, judge())
    if name == "pointwise":
        return JudgeStrategy(name, judge(mode="pointwise"))
    if name == "verdict":
        return VerdictStrategy(judge(), o.verdict_max_tokens)
    if name == "cot":
        return JudgeStrategy(name, judge(cot=True))
    if name == "cot-clamp":
        return JudgeStrategy(name, judge(cot=True, clamp=CAI_CLAMP))
    if name == "self-consistency":
        return SelfConsistency(
            [
                judge(cot=True, cot_temperature=o.sample_temperature, cot_seed=i)
                for i in range(o.samples)
            ]
        )
    if name == "ensemble":
        return Ensemble(judge(both_orders=False), o.principles)
    raise ValueError(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}")


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
    return NoModel(spec), {"rule": JudgeStrategy("rule", RuleJudge(spec, constitution, seed=seed))}
