"""A backend wrapper that answers repeated calls from the run store."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict

from rlaif.backends.base import Backend, ChoiceScores, GenerateRequest, Generation, Messages
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

    To count each call once, the keys of the calls made are kept in memory: all of them by
    default (a run's totals exact), or with ``seen_limit`` only that many, the least recently
    used forgotten first, for a process that runs without end (``rlaif serve``). Beyond the
    limit, a call asked again after its key was forgotten is counted again; it is still
    answered from the store, which keeps every call whatever the limit.
    """

    def __init__(self, inner: Backend, store: Store, *, seen_limit: int | None = None) -> None:
        self.inner = inner
        self.store = store
        self.model_id = inner.model_id
        self.price_per_million = inner.price_per_million
        self.model_calls = 0
        self.cached_calls = 0
        #: tokens of every result returned, stored or fresh: what the run's data cost to make
        self.prompt_tokens_total = 0
        self.completion_tokens_total = 0
        #: prompt tokens of the choice scores the model made in this process (stored results
        #: cost nothing) that it evaluated, and that it took from its KV cache
        self.evaluated_tokens = 0
        self.reused_tokens = 0
        if seen_limit is not None and seen_limit < 1:
            raise ValueError(f"seen_limit must be >= 1 or None, not {seen_limit}")
        self.seen_limit = seen_limit
        #: the keys of the calls counted, least recently used first
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def _count(self, key: str, prompt_tokens: int, completion_tokens: int, cached: bool) -> None:
        with self._lock:
            if key in self._seen:
                self._seen.move_to_end(key)
                return
            self._seen[key] = None
            if self.seen_limit is not None and len(self._seen) > self.seen_limit:
                self._seen.popitem(last=False)
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

    def _generate_key(self, r: GenerateRequest) -> str:
        """The store key of a generation: its messages and the parameters that shape it."""
        params = {"max_tokens": r.max_tokens, "temperature": r.temperature}
        if r.temperature > 0:
            params["seed"] = r.seed  # greedy decoding does not depend on the seed
        payload = {"messages": r.messages, **params}
        return call_key(self.model_id, "generate", CACHE_KEY_VERSION, payload)

    def generate(
        self, messages: Messages, *, max_tokens: int = 256, temperature: float = 0.0, seed: int = 0
    ) -> Generation:
        """Generate, or return the stored generation for the same messages and parameters."""
        return self.generate_many([GenerateRequest(messages, max_tokens, temperature, seed)])[0]

    def generate_many(self, requests: Sequence[GenerateRequest]) -> list[Generation]:
        """The stored generation of each request found in the store; the others made in one
        call to the wrapped backend's ``generate_many`` (one at a time for a single request).

        The key does not say whether a generation was batched: the llama.cpp backend's batched
        replies equal its single-stream ones (tested), so either path answers the other.
        """
        keys = [self._generate_key(r) for r in requests]
        out: list[Generation | None] = []
        for key in keys:
            hit = self.store.get(key)
            gen = None if hit is None else _generation(hit)
            if gen is not None:
                self._count(key, gen.prompt_tokens, gen.completion_tokens, cached=True)
            out.append(gen)
        missing = [i for i, gen in enumerate(out) if gen is None]
        if len(missing) == 1:
            r = requests[missing[0]]
            made = [
                self.inner.generate(
                    r.messages, max_tokens=r.max_tokens, temperature=r.temperature, seed=r.seed
                )
            ]
        else:
            made = self.inner.generate_many([requests[i] for i in missing]) if missing else []
        for i, gen in zip(missing, made, strict=True):
            stored, fresh = self._put(keys[i], "generate", asdict(gen))
            out[i] = _generation(stored)
            self._count(keys[i], out[i].prompt_tokens, out[i].completion_tokens, cached=not fresh)
        return [gen for gen in out if gen is not None]

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
        with self._lock:
            self.evaluated_tokens += scores.prompt_tokens - scores.cached_tokens
            self.reused_tokens += scores.cached_tokens
        stored, fresh = self._put(key, "choice_logprobs", asdict(scores))
        if not fresh:
            scores = ChoiceScores(**{**stored, "cached_tokens": 0})
        self._count(key, scores.prompt_tokens, scores.completion_tokens, cached=not fresh)
        return scores

    def reuse_order(self, questions: Sequence[Messages]) -> list[int]:
        """The wrapped backend's order for reuse."""
        return self.inner.reuse_order(questions)

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
