"""Synthetic data: candidate responses sampled from a policy, and prompts a model writes itself.

Responses: ``generate`` / ``sample_responses`` sample a policy's answers to a prompt, each with
whether it was cut off at the token limit.

Prompts: a model writes new prompts from seed prompts and from the constitution.

Two kinds, as in the original project description's "synthetic training data":

* ``helpful``: shown a few seed prompts (sampled with the seed), the model writes a new request
  of the same kind;
* ``harmless``: shown one principle's critique request, the model writes a red-team request
  that tests whether an assistant follows it.

Candidates are cleaned (first line, numbering and quotes removed), then deduplicated: exactly
(case, spacing and punctuation ignored) and near-duplicates (word-trigram Jaccard similarity or
character similarity above a threshold) against the kept prompts and the seeds.
"""

from __future__ import annotations

import difflib
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from rlaif import templates
from rlaif.backends.base import (
    DEFAULT_BATCH_SIZE,
    Backend,
    GenerateRequest,
    generate_in_groups,
)
from rlaif.constitution import Constitution

NEAR_DUPLICATE = 0.8
MIN_CHARS, MAX_CHARS = 12, 600


@dataclass
class SynthResult:
    """The kept prompts and what happened to every candidate."""

    prompts: list[dict] = field(default_factory=list)
    attempts: int = 0
    exact_duplicates: int = 0
    near_duplicates: int = 0
    rejected: int = 0


def _normalize(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def _trigrams(text: str) -> set[tuple[str, ...]]:
    words = _normalize(text).split()
    return {tuple(words[i : i + 3]) for i in range(max(1, len(words) - 2))}


def similarity(a: str, b: str) -> float:
    """Near-duplicate score in [0, 1]: the larger of trigram Jaccard and character ratio."""
    ta, tb = _trigrams(a), _trigrams(b)
    jaccard = len(ta & tb) / len(ta | tb) if ta | tb else 1.0
    chars = difflib.SequenceMatcher(None, _normalize(a), _normalize(b)).ratio()
    return max(jaccard, chars)


def clean_candidate(text: str) -> str:
    """The request in a model's reply: its first real line, without numbering or quotes."""
    for line in text.strip().splitlines():
        line = line.strip()
        line = re.sub(r"^(\d+[.)]|[-*•])\s*", "", line)
        line = re.sub(r"^(new )?(request|prompt|user)\s*:\s*", "", line, flags=re.IGNORECASE)
        line = line.strip().strip("\"'“”").strip()
        if line:
            return line
    return ""


def _helpful_messages(examples: list[str]) -> list[dict]:
    shown = "\n".join(f"{i}. {e}" for i, e in enumerate(examples, start=1))
    return [
        {
            "role": "user",
            "content": "Here are requests that users sent to an AI assistant:\n"
            f"{shown}\n\nWrite one new request of the same kind, on a different topic. "
            "Write only the request, on one line.",
        }
    ]


def _harmless_messages(critique_request: str) -> list[dict]:
    return [
        {
            "role": "user",
            "content": "An AI assistant is being tested. A reviewer will check its answer "
            f"with this question: {critique_request}\n\nWrite one realistic request a user "
            "might send that puts this to the test. Write only the request, on one line.",
        }
    ]


def synth_prompts(
    backend: Backend,
    seeds: list[str],
    constitution: Constitution,
    n: int,
    *,
    kinds: tuple[str, ...] = ("helpful", "harmless"),
    seed: int = 0,
    temperature: float = 0.9,
    max_attempts: int | None = None,
    on_attempt: Callable[[SynthResult], None] | None = None,
) -> SynthResult:
    """Up to ``n`` new, deduplicated prompts, alternating the kinds; stops after max_attempts."""
    if n < 1:
        raise ValueError(f"n must be >= 1, not {n}")
    if "helpful" in kinds and not seeds:
        raise ValueError("helpful prompts need seed prompts")
    unknown = set(kinds) - {"helpful", "harmless"}
    if unknown or not kinds:
        raise ValueError(f"kinds must be helpful and/or harmless, not {sorted(unknown)}")
    rng = random.Random(seed)
    result = SynthResult()
    seen_exact = {_normalize(s) for s in seeds}
    kept_texts: list[str] = list(seeds)
    max_attempts = max_attempts or 4 * n
    while len(result.prompts) < n and result.attempts < max_attempts:
        kind = kinds[result.attempts % len(kinds)]
        source: dict = {}
        if kind == "helpful":
            examples = rng.sample(seeds, k=min(3, len(seeds)))
            messages = _helpful_messages(examples)
        else:
            principle = rng.choice(constitution.principles)
            messages = _harmless_messages(principle.critique)
            source = {"principle_id": principle.id}
        gen = backend.generate(
            messages, max_tokens=96, temperature=temperature, seed=seed * 100_003 + result.attempts
        )
        result.attempts += 1
        text = clean_candidate(gen.text)
        if not MIN_CHARS <= len(text) <= MAX_CHARS:
            result.rejected += 1
        elif _normalize(text) in seen_exact:
            result.exact_duplicates += 1
        elif any(similarity(text, other) >= NEAR_DUPLICATE for other in kept_texts):
            result.near_duplicates += 1
        else:
            seen_exact.add(_normalize(text))
            kept_texts.append(text)
            result.prompts.append(
                {
                    "id": f"synth-{len(result.prompts) + 1:04d}",
                    "prompt": text,
                    "category": kind,
                    "model": backend.model_id,
                    **source,
                }
            )
        if on_attempt:
            on_attempt(result)
    return result


# -- candidate responses ----------------------------------------------------------------------
@dataclass(frozen=True)
class Response:
    """One sampled response and whether it was cut off at the token limit."""

    text: str
    #: True: cut off at ``max_tokens``; False: the model ended it; None: unknown
    truncated: bool | None


def response_requests(
    prompt: str | list[dict],
    n: int = 1,
    *,
    seed: int = 0,
    temperature: float = 0.8,
    max_tokens: int = 256,
) -> list[GenerateRequest]:
    """The ``n`` generation requests of a policy's responses to one prompt (seed ``seed + i``)."""
    messages = templates.policy_messages(prompt)
    return [
        GenerateRequest(messages, max_tokens=max_tokens, temperature=temperature, seed=seed + i)
        for i in range(n)
    ]


def sample_responses(
    backend: Backend,
    prompt: str | list[dict],
    n: int = 1,
    *,
    seed: int = 0,
    temperature: float = 0.8,
    max_tokens: int = 256,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> list[Response]:
    """``n`` sampled responses of a policy to one prompt, each with its truncation flag.

    Response i uses seed ``seed + i``, so the same call returns the same responses. They are
    handed to the backend ``batch_size`` at a time (1: one call after the other).
    """
    requests = response_requests(
        prompt, n, seed=seed, temperature=temperature, max_tokens=max_tokens
    )
    return to_responses(generate_in_groups(backend, requests, batch_size))


def to_responses(generations: list) -> list[Response]:
    """Responses (stripped text, truncation flag) of generations."""
    return [Response(gen.text.strip(), gen.truncated) for gen in generations]


def generate(
    backend: Backend,
    prompt: str | list[dict],
    n: int = 1,
    *,
    seed: int = 0,
    temperature: float = 0.8,
    max_tokens: int = 256,
) -> list[str]:
    """``n`` sampled responses of a policy to one prompt (text or chat messages): the texts of
    :func:`sample_responses`. Response i uses seed ``seed + i``."""
    sampled = sample_responses(
        backend, prompt, n, seed=seed, temperature=temperature, max_tokens=max_tokens
    )
    return [r.text for r in sampled]


def truncation_summary(counts: dict | None) -> str:
    """One line from a run's ``truncated`` counts: "2 of 64 responses; 5 of 60 revisions".

    ``counts`` maps a kind of text to ``{"truncated", "total", "unknown"}``; None: "-".
    """
    if not counts:
        return "-"
    parts = []
    for kind, c in counts.items():
        unknown = f", {c['unknown']} unknown" if c.get("unknown") else ""
        parts.append(f"{c['truncated']} of {c['total']} {kind}{unknown}")
    return "; ".join(parts)
