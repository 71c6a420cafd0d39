"""Shared parts of the effect tests: the model's own answers, rule labels, and the yardsticks.

The known-correct labeller is a rule, ``rule:words=8-40``: an answer of 8 to 40 words that
ends by itself. The embedded model rarely gives one (its greedy answers to the held-out
prompts run to the token limit), so a rise in the pass rate is an effect of training, and a
rule whose optimum is a real answer cannot be won by saying nothing. Every answer in the
fixture is one the model wrote to the prompt as it stands (on-policy): training teaches which of
its own answers to prefer, not the style of answers written to another request.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from rlaif.compare import RuleJudge
from rlaif.rules import load_score_function
from rlaif.train import drift

FIXTURE = Path(__file__).parent / "data" / "effect_responses.jsonl"
RULE = "rule:words=8-40"
#: tokens of a held-out greedy answer: room for 40 words and the end token
GEN_TOKENS = 72


def fixture_rows(split: str) -> list[dict]:
    """The committed answers of one split ("train" or "heldout")."""
    rows = [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]
    return [r for r in rows if r["split"] == split]


def passes(text: str, truncated: bool = False) -> bool:
    """Whether an answer passes the rule (an answer cut at the token limit never does: the
    rule itself fails it when told)."""
    (score,) = load_score_function(RULE)([[{"role": "user", "content": ""}]], [text], [truncated])
    return score == 1.0


def rule_pairs(split: str, per_prompt: int = 2) -> list[dict]:
    """Pairs the rule decides, labelled by the rule judge through rlaif's compare.

    Per prompt up to ``per_prompt`` pairs of a passing and a failing sample, in sample order;
    the record's ``chosen`` is the passing one and ``p_chosen`` the rule judge's probability for
    it, given each sample's end (a cut-off sample fails, so the loops cut at the token limit are
    among the rejected answers).
    """
    judge = RuleJudge(RULE)
    pairs = []
    for row in fixture_rows(split):
        samples = row["samples"]
        good = [s for s in samples if passes(s["text"], s["truncated"])]
        bad = [s for s in samples if not passes(s["text"], s["truncated"])]
        for chosen, rejected in list(zip(good, bad, strict=False))[:per_prompt]:
            cut = (chosen["truncated"], rejected["truncated"])
            p = judge.compare(row["prompt"], chosen["text"], rejected["text"], truncated=cut).p_a
            assert p is not None and p > 0.5, (chosen, rejected, p)
            pairs.append(
                {
                    "prompt": row["prompt"],
                    "chosen": chosen["text"],
                    "rejected": rejected["text"],
                    "p_chosen": p,
                    "chosen_truncated": chosen["truncated"],
                    "rejected_truncated": rejected["truncated"],
                }
            )
    return pairs


def heldout_pairs(split: str = "heldout") -> tuple[list[tuple[str, str, str]], list[int]]:
    """Every (prompt, passing sample, failing sample) of a split, and each pair's prompt index.

    All combinations, not a few per prompt: the measurement gets every pair the fixture holds,
    and its interval resamples prompts (the pairs of one prompt share it, and answers).
    """
    pairs, clusters = [], []
    for i, row in enumerate(fixture_rows(split)):
        good = [s["text"] for s in row["samples"] if passes(s["text"], s["truncated"])]
        bad = [s["text"] for s in row["samples"] if not passes(s["text"], s["truncated"])]
        for chosen in good:
            for rejected in bad:
                pairs.append((row["prompt"], chosen, rejected))
                clusters.append(i)
    return pairs, clusters


def variant(pairs: list[dict], kind: str, seed: int = 0) -> list[dict]:
    """The pairs as labelled ("correct"), with chosen and rejected swapped, or shuffled."""
    if kind == "correct":
        return pairs
    if kind == "swapped":
        return [{**p, "chosen": p["rejected"], "rejected": p["chosen"]} for p in pairs]
    if kind == "shuffled":  # each pair turned around with probability 1/2
        rng = random.Random(seed)
        return [variant([p], "swapped")[0] if rng.random() < 0.5 else p for p in pairs]
    raise ValueError(kind)


def write_jsonl(records: list[dict], path: Path) -> Path:
    """Write records as JSONL and return the path."""
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@dataclass
class Yardstick:
    """The held-out figures of one model: the rule's pass rate and the answers' health."""

    pass_rate: float
    health: dict
    answers: list[str]


def measure(model, tokenizer, prompts: list[str]) -> Yardstick:
    """Greedy answers to the held-out prompts: pass rate of the rule and their health."""
    answers = drift.greedy_answers(model, tokenizer, prompts, max_new_tokens=GEN_TOKENS)
    texts = [a.text for a in answers]
    rate = sum(passes(a.text, a.truncated) for a in answers) / len(answers)
    return Yardstick(rate, drift.answer_health(texts, [a.truncated for a in answers]), texts)


#: tokens of a GRPO completion, in training and when measuring (the GRPO reward's limit)
GRPO_TOKENS = 64


def ended_answer(prompts: list, completions: list, completion_ids: list, **_: object) -> list:
    """GRPO's reward (a TRL reward function): the rule, on an answer that ended in time."""
    from rlaif.rules import completion_text

    return [
        1.0 if passes(completion_text(c), truncated=len(ids) >= GRPO_TOKENS) else 0.0
        for c, ids in zip(completions, completion_ids, strict=True)
    ]


def ended_answer_negated(prompts: list, completions: list, completion_ids: list, **kw) -> list:
    """The same reward with its sign turned: the broken variant."""
    return [1.0 - r for r in ended_answer(prompts, completions, completion_ids, **kw)]


def sometimes_passed(split: str) -> list[str]:
    """Prompts of a split where 1 to 8 of the model's 10 samples pass the rule."""
    out = []
    for row in fixture_rows(split):
        n = sum(passes(s["text"], s["truncated"]) for s in row["samples"])
        if 1 <= n <= 8:
            out.append(row["prompt"])
    return out


def sampled_pass(model, tokenizer, prompts: list[str], n: int = 8, seed: int = 1) -> list[bool]:
    """Whether each of ``n`` sampled answers per prompt (temperature 1) passes the rule."""
    answers = drift.sampled_answers(
        model, tokenizer, prompts, n, seed=seed, max_new_tokens=GRPO_TOKENS
    )
    return [passes(a.text, truncated=a.truncated) for a in answers]
