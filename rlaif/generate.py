"""Sample responses from a policy model."""

from __future__ import annotations

from rlaif import templates
from rlaif.backends.base import Backend


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
    messages = templates.policy_messages(prompt)
    return [
        backend.generate(
            messages, max_tokens=max_tokens, temperature=temperature, seed=seed + i
        ).text.strip()
        for i in range(n)
    ]
