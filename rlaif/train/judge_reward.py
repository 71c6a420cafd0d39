"""Rewards for online RL: the AI judge directly ("direct RLAIF"), or a trained reward model.

**The judge as the reward.** The judge rates a response on a 1-9 scale under one principle of
the constitution. Nothing is generated: the reward is the *expected* score over the nine
score tokens, read from the judge's next-token probabilities, normalized to [-1, 1]
(``(E - 5) / 4``). The digits 1-9 are single tokens for SmolLM2 (and most tokenizers); "10"
is two tokens, which is why the scale stops at 9. An expected score keeps the judge's
uncertainty (a judge torn between 6 and 7 gives 6.5) where a sampled or argmax score would
throw it away, so nearby responses still get different rewards.

The principle is sampled per *prompt* (seeded), not per response: GRPO compares the
responses of one prompt with each other, so they must all be judged by the same question.

A judge reply that cannot be read, or that lacks the probability of any of the nine digits,
gives ``None``; TRL turns it into NaN and leaves it out (never a default score).

**A trained reward model as the reward.** :class:`RewardModelReward` scores prompt +
response with a sequence-classification checkpoint (``rlaif train reward --out DIR``) and
returns its raw score; GRPO normalizes rewards within each group, so no scaling is needed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rlaif.backends.base import Backend, ChoiceScores
from rlaif.constitution import Constitution, Principle
from rlaif.rules import cut_at_limit
from rlaif.templates import JUDGE_SYSTEM, block

#: the score tokens, each a single token for SmolLM2's tokenizer
SCORE_TOKENS = tuple(str(k) for k in range(1, 10))
LOW, HIGH = 1, 9


def score_messages(prompt: str, response: str, principle: Principle) -> list[dict]:
    """Ask the judge to rate one response from 1 to 9 under a principle; the reply is a digit."""
    user = (
        f"{block('User request', prompt)}\n\n"
        f"{block('Response', response)}\n\n"
        f"{principle.pointwise_question}\n"
        f"Rate the response on a scale from {LOW} (very poor) to {HIGH} (excellent). "
        f"Answer with a single digit from {LOW} to {HIGH}."
    )
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


def expected_score(scores: ChoiceScores) -> float | None:
    """Expected score over the score tokens (probabilities renormalized over 1-9), or None.

    Every score token must have a log-probability: with one missing (the server returned it
    in none of its top tokens) the expectation cannot be computed, and filling the gap with a
    default would invent a score, so the reply is unreadable (None). A backend with no
    log-probabilities generated a reply instead: its first standalone digit 1-9 is the score.
    """
    if scores.method == "verdict":
        found = re.search(r"(?<!\d)([1-9])(?!\d)", scores.text)
        return float(found.group(1)) if found else None
    values = [scores.logprobs.get(t) for t in SCORE_TOKENS]
    if any(v is None for v in values):
        return None
    top = max(values)
    weights = [math.exp(v - top) for v in values]
    total = sum(weights)
    return sum(int(t) * w for t, w in zip(SCORE_TOKENS, weights, strict=True)) / total


def normalize(score: float) -> float:
    """Map a 1-9 score to [-1, 1] (5 is 0)."""
    mid, half = (LOW + HIGH) / 2, (HIGH - LOW) / 2
    return max(-1.0, min(1.0, (score - mid) / half))


@dataclass(frozen=True)
class JudgeScore:
    """The judge's rating of one response."""

    reward: float | None
    expected_score: float | None
    principle_id: str
    method: str


def _text(value: str | list | dict) -> str:
    """Plain text of a prompt or completion as TRL passes it (text or chat messages)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return str(value.get("content", ""))
    users = [m for m in value if m.get("role") == "user"]
    if value and value[-1].get("role") == "assistant":
        return str(value[-1].get("content", ""))
    return str((users[-1] if users else value[-1]).get("content", "")) if value else ""


class JudgeReward:
    """A GRPO reward function: the judge's expected 1-9 score, normalized to [-1, 1]."""

    #: TRL names the reward's logged metrics after this
    __name__ = "judge"

    def __init__(self, backend: Backend, constitution: Constitution, *, seed: int = 0) -> None:
        self.backend = backend
        self.constitution = constitution
        self.seed = seed

    def principle_for(self, prompt: str) -> Principle:
        """The principle every response to ``prompt`` is judged by (seeded, per prompt)."""
        return self.constitution.sample(self.seed, "reward", prompt)

    def score(self, prompt: str, response: str) -> JudgeScore:
        """The judge's rating of one response to one prompt."""
        principle = self.principle_for(prompt)
        scores = self.backend.choice_logprobs(
            score_messages(prompt, response, principle), SCORE_TOKENS
        )
        expected = expected_score(scores)
        return JudgeScore(
            reward=None if expected is None else normalize(expected),
            expected_score=expected,
            principle_id=principle.id,
            method=scores.method,
        )

    def __call__(
        self, prompts: Sequence[str | list], completions: Sequence[str | list], **_: object
    ) -> list[float | None]:
        """One reward per (prompt, completion), as TRL's GRPOTrainer calls a reward function."""
        return [
            self.score(_text(p), _text(c).strip()).reward
            for p, c in zip(prompts, completions, strict=True)
        ]


class RewardModelReward:
    """A GRPO reward function: a trained reward model's score of prompt + response."""

    __name__ = "reward_model"

    def __init__(self, path: str | Path, *, batch_size: int = 8) -> None:
        from rlaif.train.reward import RewardModel

        self.reward_model = RewardModel.load(str(path))
        self.reward_model.model.eval()
        self.batch_size = batch_size

    def __call__(
        self, prompts: Sequence[str | list], completions: Sequence[str | list], **_: object
    ) -> list[float]:
        """One reward (the reward model's raw score) per (prompt, completion)."""
        responses = [_text(c).strip() for c in completions]
        rewards: list[float] = []
        for i in range(0, len(responses), self.batch_size):
            rewards += self.reward_model.score(
                list(prompts[i : i + self.batch_size]), responses[i : i + self.batch_size]
            )
        return rewards


class GroupJudgeReward:
    """A GRPO reward function: each completion's standing among the completions of its prompt.

    TRL's batch is split by prompt; each group's completions are judged pairwise in both
    orders (:meth:`rlaif.rewards.RewardJudge.score_group`: the mean probability of beating the
    others, a principle's check deciding where it separates two). A completion with no readable
    pair gets ``None`` (TRL leaves it out); a prompt with one completion in the batch, too.
    With ``max_completion_length`` a completion cut at the limit is flagged to the rules.
    """

    __name__ = "group_judge"

    def __init__(
        self,
        judge: str,
        constitution: Constitution,
        *,
        seed: int = 0,
        max_completion_length: int | None = None,
    ) -> None:
        from rlaif.rewards import RewardJudge

        self.judge = RewardJudge(judge, constitution, seed=seed)
        self.max_completion_length = max_completion_length
        #: set once the policy's tokenizer is loaded (train_grpo)
        self.eos_token_id: int | None = None

    def _truncated(self, ids: object, n: int) -> list[bool | None]:
        return cut_at_limit(ids, n, self.max_completion_length, self.eos_token_id)

    def __call__(
        self, prompts: Sequence[str | list], completions: Sequence[str | list], **kwargs: object
    ) -> list[float | None]:
        """One reward per (prompt, completion), as TRL's GRPOTrainer calls a reward function."""
        texts = [_text(p) for p in prompts]
        responses = [_text(c).strip() for c in completions]
        cut = self._truncated(kwargs.get("completion_ids"), len(responses))
        groups: dict[str, list[int]] = {}
        for index, text in enumerate(texts):
            groups.setdefault(text, []).append(index)
        rewards: list[float | None] = [None] * len(responses)
        for prompt, indices in groups.items():
            if len(indices) < 2:
                continue
            scored = self.judge.score_group(
                prompt, [responses[i] for i in indices], [cut[i] for i in indices]
            )
            for i, item in zip(indices, scored, strict=True):
                rewards[i] = item.reward
        return rewards
