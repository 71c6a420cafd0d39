"""Sample responses from a policy model."""

from __future__ import annotations

from dataclasses import dataclass

from rlaif import templates
from rlaif.backends.base import Backend


@dataclass(frozen=True)
class Response:
    """One sampled response and whether it was cut off at the token limit."""

    text: str
    #: True: cut off at ``max_tokens``; False: the model ended it; None: unknown
    truncated: bool | None


def sample_responses(
    backend: Backend,
    prompt: str | list[dict],
    n: int = 1,
    *,
    seed: int = 0,
    temperature: float = 0.8,
    max_tokens: int = 256,
) -> list[Response]:
    """``n`` sampled responses of a policy to one prompt, each with its truncation flag.

    Response i uses seed ``seed + i``, so the same call returns the same responses.
    """
    messages = templates.policy_messages(prompt)
    out = []
    for i in range(n):
        gen = backend.generate(
            messages, max_tokens=max_tokens, temperature=temperature, seed=seed + i
        )
        out.append(Response(gen.text.strip(), gen.truncated))
    return out


def generate(
    backend: Backend,
    prompt: str | list[dict],
    n: int = 1,
    *,
    seed: int = 0,
    temperature: float = 0.8,
    max_tokens: int = 256,
) -> list[str]:
    """``n`` sampled responses of a policy to one prompt (text or chat messages).

    Response i uses seed ``seed + i``, so the same call returns the same responses.
    """
    return [
        r.text
        for r in sample_responses(
            backend, prompt, n, seed=seed, temperature=temperature, max_tokens=max_tokens
        )
    ]


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
