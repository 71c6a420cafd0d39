"""Rewards from the judge: one response's pointwise reward, and a group's pairwise standing.

Both ``rlaif serve`` (over HTTP) and ``rlaif train grpo`` (in-process) use these, so a served
reward equals the in-process one for the same items.

**Pointwise** (:meth:`RewardJudge.score_item`). A model judge's reward is p("Yes") that the
response meets one principle, the question of the judge's pointwise mode
(:meth:`rlaif.compare.Judge.score`), in [0, 1]. The principle is sampled per prompt (seeded),
so every response to one prompt is judged by the same question. When that principle has a
check (``check: rule:...``) and the response fails it (score <= 0), the check decides: reward
0.0, ``source: rule``, no model call. A programmatic judge (``rule:...``, ``python:...``) gives
its function's score. A reply that cannot be read gives ``reward: None`` and ``failed: True``.

**Group-relative** (:meth:`RewardJudge.score_group`). One prompt and G responses; each
response's reward is its mean probability of beating the others, each pair judged by
:meth:`rlaif.compare.Judge.compare` in both orders (a principle's check decides a pair where the
two responses score differently on it). The principle is sampled once per prompt. Schedule: up
to :data:`FULL_GROUP` responses every pair is judged (G(G-1)/2 pairs, two calls each); above
that each response meets :data:`NEIGHBOURS` x 2 others, its neighbours on a seeded shuffle of
the group read as a circle (G x :data:`NEIGHBOURS` pairs), so the cost grows linearly in G. A
pair whose verdict cannot be read counts for neither response and is listed in
:attr:`GroupReward.failed_pairs`; a response left with no readable pair is failed (``None``).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass

from rlaif import templates
from rlaif.backends.base import Backend
from rlaif.compare import Judge, RuleJudge, probability_from_scores
from rlaif.constitution import Constitution, Principle
from rlaif.rules import (
    UNKNOWN,
    ScoreFunction,
    Truncated,
    as_completion,
    as_conversation,
    is_programmatic,
)

#: groups up to this size have every pair judged
FULL_GROUP = 8
#: above FULL_GROUP, each response is paired with this many neighbours on each side
NEIGHBOURS = 4


@dataclass(frozen=True)
class ItemReward:
    """The reward of one response: a number, or ``None`` with ``failed`` set."""

    reward: float | None
    #: who decided: "ai" (the judge model), "rule" (a check or a programmatic judge)
    source: str
    principle_id: str = ""
    error: str = ""

    @property
    def failed(self) -> bool:
        """Whether the judge gave no number for this response."""
        return self.reward is None


@dataclass(frozen=True)
class GroupReward:
    """The rewards of one group of responses, and the pairs judged to make them."""

    items: list[ItemReward]
    #: the pairs (i, j), i < j, judged (:func:`group_pairs`)
    pairs: list[tuple[int, int]]
    #: the pairs whose verdict could not be read: they count for neither response
    failed_pairs: list[tuple[int, int]]


def group_pairs(size: int, seed: int = 0, key: str = "") -> list[tuple[int, int]]:
    """The pairs (i, j), i < j, judged in a group of ``size`` responses (see module docstring)."""
    if size <= FULL_GROUP:
        return [(i, j) for i in range(size) for j in range(i + 1, size)]
    order = list(range(size))
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    random.Random(digest).shuffle(order)
    pairs = set()
    for k in range(size):
        for offset in range(1, NEIGHBOURS + 1):
            i, j = order[k], order[(k + offset) % size]
            pairs.add((min(i, j), max(i, j)))
    return sorted(pairs)


class RewardJudge:
    """A judge string made into rewards: a model judge under a constitution, or a function."""

    def __init__(
        self,
        judge: str | Backend,
        constitution: Constitution,
        *,
        seed: int = 0,
        backend: Backend | None = None,
    ) -> None:
        """``judge`` is a judge string; ``backend`` (for a model judge) the opened backend,
        e.g. wrapped by the run store (default: ``load_backend(judge)``)."""
        self.constitution = constitution
        self.seed = seed
        self.rule: RuleJudge | None = None
        self.judge: Judge | None = None
        if isinstance(judge, str) and is_programmatic(judge):
            self.rule = RuleJudge(judge, constitution, seed=seed)
            self.model_id = self.rule.spec
        else:
            if backend is None:
                from rlaif.backends import load_backend

                backend = load_backend(judge)
            self.judge = Judge(backend, constitution, seed=seed, mode="pairwise")
            self.model_id = backend.model_id

    def principle_for(self, prompt: str) -> Principle:
        """The principle every response to ``prompt`` is judged by (seeded, per prompt)."""
        return self.constitution.sample(self.seed, "compare", prompt)

    def score_item(self, prompt: str, response: str, truncated: bool | None = None) -> ItemReward:
        """The pointwise reward of one response to one prompt (see the module docstring).

        ``truncated`` (cut at the token limit; None: unknown) reaches the rules and checks.
        """
        if self.rule is not None:
            score = self.rule.score(prompt, response, truncated=truncated).score
            return ItemReward(score, "rule")
        assert self.judge is not None
        principle = self.principle_for(prompt)
        check = self.judge.checks.get(principle.id)
        if check is not None and _check_score(check, prompt, response, truncated) <= 0:
            return ItemReward(0.0, "rule", principle.id)
        messages = templates.pointwise_messages(prompt, response, principle)
        scores = self.judge.backend.choice_logprobs(messages, templates.YES_NO)
        p_yes = probability_from_scores(scores, templates.YES_NO)
        error = "" if p_yes is not None else f"unreadable judge reply {scores.text[:80]!r}"
        return ItemReward(p_yes, "ai", principle.id, error)

    def score_pair(
        self, prompt: str, a: str, b: str, principle: Principle, truncated: Truncated = UNKNOWN
    ) -> float | None:
        """p(``a`` beats ``b``): both orders for the model judge, the soft label for a rule.

        ``truncated`` (whether ``a`` / ``b`` was cut at the token limit) reaches the rules.
        """
        if self.rule is not None:
            return self.rule.compare(prompt, a, b, truncated=truncated).p_a
        assert self.judge is not None
        return self.judge.compare(prompt, a, b, principle, truncated=truncated).p_a

    def score_group(
        self,
        prompt: str,
        responses: list[str],
        truncated: Sequence[bool | None] | None = None,
    ) -> list[ItemReward]:
        """Each response's mean probability of beating the others (see the module docstring).

        ``truncated`` (one flag per response, None: unknown) reaches the rules and checks.
        """
        return self.judge_group(prompt, responses, truncated).items

    def judge_group(
        self,
        prompt: str,
        responses: list[str],
        truncated: Sequence[bool | None] | None = None,
    ) -> GroupReward:
        """:meth:`score_group`'s rewards with the pairs judged and those that could not be read."""
        principle = self.principle_for(prompt)
        cut = list(truncated) if truncated is not None else [None] * len(responses)
        pairs = group_pairs(len(responses), self.seed, prompt)
        wins: list[list[float]] = [[] for _ in responses]
        failed = []
        for i, j in pairs:
            p = self.score_pair(prompt, responses[i], responses[j], principle, (cut[i], cut[j]))
            if p is None:
                failed.append((i, j))
                continue
            wins[i].append(p)
            wins[j].append(1.0 - p)
        source = "rule" if self.rule is not None else "ai"
        pid = "" if self.rule is not None else principle.id
        items = [
            ItemReward(sum(w) / len(w), source, pid)
            if w
            else ItemReward(None, source, pid, "no readable pair")
            for w in wins
        ]
        return GroupReward(items, pairs, failed)


def _check_score(check: ScoreFunction, prompt: str, response: str, truncated: bool | None) -> float:
    flags = None if truncated is None else [truncated]
    (score,) = check([as_conversation(prompt)], [as_completion(response)], flags)
    return score
