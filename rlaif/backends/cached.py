"""A backend wrapper that answers repeated calls from the run store."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import asdict

from rlaif.backends.base import Backend, ChoiceScores, Generation, Messages
from rlaif.store import CACHE_KEY_VERSION, Store, call_key


class CachedBackend(Backend):
    """Wraps a backend: each call is looked up in the store first and stored once made.

    ``model_calls`` counts calls that reached the model, ``cached_calls`` distinct calls the
    store answered (a pipeline asks the same call again when a later stage re-derives an
    earlier stage's result; that is counted, and its tokens summed, once). A cached result
    is returned exactly as it was first stored, so a resumed or repeated run rebuilds
    identical records. ``cached_tokens`` (KV-cache reuse) depends on
    what the model evaluated before and is therefore reported as zero for a stored result.
    A stored generation without a ``finish_reason`` (a result stored without one) comes
    back with ``finish_reason=None``: unknown, never guessed. The key does not include it.

    Calls may come from several threads at once; when two make the same call, the result
    stored first is the one both return.
    """

    def __init__(self, inner: Backend, store: Store) -> None:
        self.inner = inner
        self.store = store
        self.model_id = inner.model_id
        self.price_per_million = inner.price_per_million
        self.model_calls = 0
        self.cached_calls = 0
        #: tokens of every result returned, stored or fresh: what the run's data cost to make
        self.prompt_tokens_total = 0
        self.completion_tokens_total = 0
        #: prompt tokens the model took from its KV cache in this process (fresh calls only)
        self.reused_tokens = 0
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def _count(self, key: str, prompt_tokens: int, completion_tokens: int, cached: bool) -> None:
        with self._lock:
            if key in self._seen:
                return
            self._seen.add(key)
            if cached:
                self.cached_calls += 1
            else:
                self.model_calls += 1
            self.prompt_tokens_total += prompt_tokens
            self.completion_tokens_total += completion_tokens

    def _put(self, key: str, kind: str, result: dict) -> tuple[dict, bool]:
        """Store a fresh result; (the result stored, whether it was this one)."""
        if self.store.put(key, kind, self.model_id, result):
            return result, True
        return self.store.get(key) or result, False  # another thread stored this call first

    def record(self, key: str, kind: str, result: dict) -> None:
        """Store and count a result made elsewhere (by a Ray worker) for this backend's model."""
        stored, fresh = self._put(key, kind, result)
        self._count(
            key, stored.get("prompt_tokens", 0), stored.get("completion_tokens", 0), not fresh
        )

    def generate(
        self, messages: Messages, *, max_tokens: int = 256, temperature: float = 0.0, seed: int = 0
    ) -> Generation:
        """Generate, or return the stored generation for the same messages and parameters."""
        params = {"max_tokens": max_tokens, "temperature": temperature}
        if temperature > 0:
            params["seed"] = seed  # greedy decoding does not depend on the seed
        key = call_key(
            self.model_id, "generate", CACHE_KEY_VERSION, {"messages": messages, **params}
        )
        hit = self.store.get(key)
        if hit is not None:
            gen = _generation(hit)
            self._count(key, gen.prompt_tokens, gen.completion_tokens, cached=True)
            return gen
        gen = self.inner.generate(
            messages, max_tokens=max_tokens, temperature=temperature, seed=seed
        )
        stored, fresh = self._put(key, "generate", asdict(gen))
        gen = _generation(stored)
        self._count(key, gen.prompt_tokens, gen.completion_tokens, cached=not fresh)
        return gen

    def choice_logprobs(self, messages: Messages, choices: Sequence[str]) -> ChoiceScores:
        """Score the choices, or return the stored scores for the same messages and choices."""
        payload = {"messages": messages, "choices": list(choices)}
        key = call_key(self.model_id, "choice_logprobs", CACHE_KEY_VERSION, payload)
        hit = self.store.get(key)
        if hit is not None:
            scores = ChoiceScores(**{**hit, "cached_tokens": 0})
            self._count(key, scores.prompt_tokens, scores.completion_tokens, cached=True)
            return scores
        scores = self.inner.choice_logprobs(messages, choices)
        stored, fresh = self._put(key, "choice_logprobs", asdict(scores))
        if not fresh:
            scores = ChoiceScores(**{**stored, "cached_tokens": 0})
        self._count(key, scores.prompt_tokens, scores.completion_tokens, cached=not fresh)
        with self._lock:
            self.reused_tokens += scores.cached_tokens
        return scores

    def close(self) -> None:
        """Close the wrapped backend."""
        self.inner.close()


def _generation(stored: dict) -> Generation:
    """A stored generation; one stored without ``finish_reason`` has an unknown (None) one."""
    return Generation(
        text=stored["text"],
        prompt_tokens=stored["prompt_tokens"],
        completion_tokens=stored["completion_tokens"],
        finish_reason=stored.get("finish_reason"),
    )
