"""Critique a response against a principle, and revise it from the critique (k rounds)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from rlaif import templates
from rlaif.backends.base import (
    DEFAULT_BATCH_SIZE,
    Backend,
    GenerateRequest,
    Generation,
    generate_in_groups,
)
from rlaif.constitution import Constitution, Principle

CRITIQUE_MAX_TOKENS = 128
REVISION_MAX_TOKENS = 192


@dataclass
class Critique:
    """What a critic said about a response under one principle."""

    principle_id: str
    text: str
    problems: str
    suggestions: str
    constitution_hash: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def to_dict(self) -> dict:
        """A JSON-ready dict of every field."""
        return asdict(self)


@dataclass
class RevisionRound:
    """One critique-revise round: the critique of ``response`` and the rewrite it led to."""

    response: str
    critique: Critique
    revision: str
    changed: bool
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: whether ``revision`` was cut off at the token limit (None: unknown)
    truncated: bool | None = None


@dataclass
class Revision:
    """The outcome of k critique-revise rounds on one response."""

    original: str
    rounds: list[RevisionRound] = field(default_factory=list)
    #: whether the original response was cut off at the token limit (None: unknown)
    original_truncated: bool | None = None

    @property
    def final(self) -> str:
        """The last revision (the original when there were no rounds)."""
        return self.rounds[-1].revision if self.rounds else self.original

    @property
    def truncated(self) -> bool | None:
        """Whether :attr:`final` was cut off at the token limit (None: unknown)."""
        return self.rounds[-1].truncated if self.rounds else self.original_truncated

    def to_dict(self) -> dict:
        """A JSON-ready dict; the top-level fields are those of the last round."""
        last = self.rounds[-1] if self.rounds else None
        return {
            "principle_id": last.critique.principle_id if last else None,
            "critique": last.critique.text if last else None,
            "revision": self.final,
            "truncated": self.truncated,
            "original": self.original,
            "original_truncated": self.original_truncated,
            "rounds": [
                {
                    "principle_id": r.critique.principle_id,
                    "critique": r.critique.text,
                    "revision": r.revision,
                    "changed": r.changed,
                    "truncated": r.truncated,
                }
                for r in self.rounds
            ],
        }


def parse_critique(text: str) -> tuple[str, str]:
    """Split a critique into (problems, suggestions); all text is 'problems' without markers."""
    match = re.search(r"suggestions?\s*:", text, flags=re.IGNORECASE)
    if not match:
        problems, suggestions = text, ""
    else:
        problems, suggestions = text[: match.start()], text[match.end() :]
    problems = re.sub(r"^\s*problems?\s*:", "", problems.strip(), flags=re.IGNORECASE)
    return problems.strip(), suggestions.strip()


def critique(
    backend: Backend,
    constitution: Constitution,
    prompt: str,
    response: str,
    *,
    seed: int = 0,
    principle: Principle | None = None,
    max_tokens: int = CRITIQUE_MAX_TOKENS,
) -> Critique:
    """Critique ``response`` to ``prompt`` under one (seeded, sampled) principle."""
    principle = principle or constitution.sample(seed, "critique", prompt, response)
    messages = templates.critique_messages(prompt, response, principle)
    gen = backend.generate(messages, max_tokens=max_tokens)
    return _critique_of(gen, principle, constitution, backend.model_id)


def _critique_of(
    gen: Generation, principle: Principle, constitution: Constitution, model_id: str
) -> Critique:
    """The :class:`Critique` a critic's generation under ``principle`` says."""
    text = gen.text.strip()
    problems, suggestions = parse_critique(text)
    return Critique(
        principle_id=principle.id,
        text=text,
        problems=problems,
        suggestions=suggestions,
        constitution_hash=constitution.hash,
        model=model_id,
        prompt_tokens=gen.prompt_tokens,
        completion_tokens=gen.completion_tokens,
    )


def _clean_revision(text: str) -> str:
    text = text.strip()
    text = re.sub(r"^\[(improved )?response\]\s*", "", text, flags=re.IGNORECASE)
    text = re.sub(r"\s*\[end of (improved )?response\]$", "", text, flags=re.IGNORECASE)
    text = re.sub(r"^(improved|revised) response\s*:\s*", "", text, flags=re.IGNORECASE)
    return text.strip()


def rewrite(
    backend: Backend,
    principle: Principle,
    prompt: str,
    response: str,
    critique_text: str,
    max_tokens: int = REVISION_MAX_TOKENS,
) -> tuple[str, Generation]:
    """One revision of ``response`` that answers ``critique_text`` under ``principle``.

    Returns the cleaned rewrite (empty if the model wrote nothing usable) and the generation.
    """
    messages = templates.revise_messages(prompt, response, critique_text, principle)
    gen = backend.generate(messages, max_tokens=max_tokens)
    return _clean_revision(gen.text), gen


def revise(
    backend: Backend,
    constitution: Constitution,
    prompt: str,
    response: str,
    *,
    rounds: int = 1,
    seed: int = 0,
    critic: Backend | None = None,
    max_tokens: int = REVISION_MAX_TOKENS,
    critique_max_tokens: int = CRITIQUE_MAX_TOKENS,
    response_truncated: bool | None = None,
) -> Revision:
    """``rounds`` critique-revise rounds: ``critic`` critiques, ``backend`` rewrites.

    Each round samples its own principle (seeded by the round and the text it critiques) and
    uses that principle for both the critique and the revision, as Constitutional AI does. An
    empty rewrite keeps the previous text and is marked ``changed=False``. Each round records
    whether its text was cut off at ``max_tokens``; ``response_truncated`` says it of
    ``response`` (kept by a round whose rewrite is empty).
    """
    return revise_many(
        backend,
        constitution,
        [(prompt, response, response_truncated)],
        rounds=rounds,
        seed=seed,
        critic=critic,
        max_tokens=max_tokens,
        critique_max_tokens=critique_max_tokens,
        batch_size=1,
    )[0]


def revise_many(
    backend: Backend,
    constitution: Constitution,
    items: Sequence[tuple[str, str, bool | None]],
    *,
    rounds: int = 1,
    seed: int = 0,
    critic: Backend | None = None,
    max_tokens: int = REVISION_MAX_TOKENS,
    critique_max_tokens: int = CRITIQUE_MAX_TOKENS,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> list[Revision]:
    """:func:`revise` of several ``(prompt, response, response truncated)`` items at once.

    Round by round, every item's critique is handed to ``critic`` and then every rewrite to
    ``backend``, ``batch_size`` requests at a time (1: one after the other). Each request is
    the one :func:`revise` makes for that item alone, so the revisions are the same.
    """
    if rounds < 0:
        raise ValueError(f"rounds must be >= 0, not {rounds}")
    critic = critic or backend
    results = [Revision(original=r, original_truncated=t) for _, r, t in items]
    for k in range(rounds):
        current = [res.final for res in results]
        prompts = [prompt for prompt, _, _ in items]
        principles = [
            constitution.sample(seed, "revise", str(k), p, text)
            for p, text in zip(prompts, current, strict=True)
        ]
        critique_gens = generate_in_groups(
            critic,
            [
                GenerateRequest(
                    templates.critique_messages(p, text, pr), max_tokens=critique_max_tokens
                )
                for p, text, pr in zip(prompts, current, principles, strict=True)
            ],
            batch_size,
        )
        crits = [
            _critique_of(gen, pr, constitution, critic.model_id)
            for gen, pr in zip(critique_gens, principles, strict=True)
        ]
        rewrites = generate_in_groups(
            backend,
            [
                GenerateRequest(
                    templates.revise_messages(p, text, c.text, pr), max_tokens=max_tokens
                )
                for p, text, c, pr in zip(prompts, current, crits, principles, strict=True)
            ],
            batch_size,
        )
        for res, text, crit, gen in zip(results, current, crits, rewrites, strict=True):
            _add_round(res, text, crit, gen)
    return results


def _add_round(result: Revision, current: str, crit: Critique, gen: Generation) -> None:
    """Append the round that critiqued ``current`` with ``crit`` and rewrote it as ``gen``."""
    rewritten = _clean_revision(gen.text)
    changed = bool(rewritten) and rewritten != current
    kept_truncated = result.truncated  # of ``current``, kept if the rewrite is empty
    result.rounds.append(
        RevisionRound(
            response=current,
            critique=crit,
            revision=rewritten if rewritten else current,
            changed=changed,
            prompt_tokens=gen.prompt_tokens,
            completion_tokens=gen.completion_tokens,
            truncated=gen.truncated if rewritten else kept_truncated,
        )
    )
