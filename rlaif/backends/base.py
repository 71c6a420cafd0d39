"""The interface every backend implements: generate text, and score candidate next tokens."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from rlaif.errors import BackendError

Messages = list[dict]

#: sequences handed to a backend's ``generate_many`` at once by the library's callers
DEFAULT_BATCH_SIZE = 8


@dataclass(frozen=True)
class Generation:
    """Text a model generated for chat messages, with its token counts and why it stopped.

    ``finish_reason`` is the backend's word for why generation ended: ``"stop"`` (the model
    ended its reply), ``"length"`` (cut off at ``max_tokens``), or ``None`` when unknown (a
    stored result without one, a server that does not say).
    """

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None = None

    @property
    def truncated(self) -> bool | None:
        """True if the reply was cut off at the token limit; None if the reason is unknown."""
        return None if self.finish_reason is None else self.finish_reason == "length"


@dataclass(frozen=True)
class GenerateRequest:
    """The arguments of one :meth:`Backend.generate` call, for :meth:`Backend.generate_many`."""

    messages: Messages
    max_tokens: int = 256
    temperature: float = 0.0
    seed: int = 0


@dataclass(frozen=True)
class ChoiceScores:
    """What a backend says about the next token after chat messages.

    With ``method == "logprobs"``, ``logprobs`` maps each candidate to its log-probability
    (``None`` where the server did not return it). With ``method == "verdict"`` the backend
    could not give probabilities; it generated ``text`` instead, and the caller parses it.
    """

    method: Literal["logprobs", "verdict"]
    logprobs: dict[str, float | None] = field(default_factory=dict)
    text: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    #: smallest log-probability the server returned: an upper bound for a missing choice
    floor: float | None = None


class Backend(ABC):
    """A model that can (a) generate text for chat messages and (b) score next-token choices."""

    #: the model string this backend was opened from, stored on every record
    model_id: str
    #: dollars per million input and output tokens (zero for local models)
    price_per_million: tuple[float, float] = (0.0, 0.0)

    @abstractmethod
    def generate(
        self, messages: Messages, *, max_tokens: int = 256, temperature: float = 0.0, seed: int = 0
    ) -> Generation:
        """Generate an assistant reply for chat messages."""

    def generate_many(self, requests: Sequence[GenerateRequest]) -> list[Generation]:
        """One generation per request, in order; backends that can decode several sequences
        at once (llama.cpp) override this. The default calls :meth:`generate` for each."""
        return [
            self.generate(
                r.messages, max_tokens=r.max_tokens, temperature=r.temperature, seed=r.seed
            )
            for r in requests
        ]

    @abstractmethod
    def choice_logprobs(self, messages: Messages, choices: Sequence[str]) -> ChoiceScores:
        """Log-probabilities of each candidate being the reply's first token."""

    def reuse_order(self, questions: Sequence[Messages]) -> list[int]:
        """The order in which to score ``questions`` (indices into it) so that consecutive
        calls share what the backend can reuse; a backend that keeps the prefix of its last
        call (llama.cpp) overrides this. The default keeps the given order."""
        return list(range(len(questions)))

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the backend holds (model weights, connections)."""


def generate_in_groups(
    backend: Backend, requests: Sequence[GenerateRequest], batch_size: int
) -> list[Generation]:
    """One generation per request, in order, handed to ``backend`` in groups of ``batch_size``.

    ``batch_size <= 1`` calls :meth:`Backend.generate` once per request (the sequential path);
    otherwise each group goes to :meth:`Backend.generate_many`. Groups are consecutive runs of
    ``requests``, so which requests share a group is a fixed function of the inputs.
    """
    if batch_size <= 1:
        return [
            backend.generate(
                r.messages, max_tokens=r.max_tokens, temperature=r.temperature, seed=r.seed
            )
            for r in requests
        ]
    out: list[Generation] = []
    for start in range(0, len(requests), batch_size):
        out.extend(backend.generate_many(requests[start : start + batch_size]))
    return out


def single_token_ids(model_id: str, choice: str, tokenize: Callable[[str], list[int]]) -> list[int]:
    """Single-token spellings of a choice (``"A"`` and ``" A"``) under ``tokenize``.

    BackendError when neither spelling is one token: the choice's probability cannot be read.
    """
    ids: list[int] = []
    for text in (choice, " " + choice):
        toks = tokenize(text)
        if len(toks) == 1 and toks[0] not in ids:
            ids.append(toks[0])
    if not ids:
        raise BackendError(f"{model_id}: choice {choice!r} is not a single token for this model")
    return ids
