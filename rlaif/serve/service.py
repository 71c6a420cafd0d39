"""The judge behind the server: scoring on a bounded thread pool, through the run store, with
a per-request deadline and counters.

Every model call goes through the run store (:class:`rlaif.backends.cached.CachedBackend`,
``store.sqlite`` in the server's ``--out`` directory): a repeated request makes no model call,
and a restarted server answers what it answered before from the file; in memory the wrapper keeps
only the last :data:`SEEN_LIMIT` call keys, so a long-running server does not grow. Items are
scored on
``concurrency`` threads; a model run in this process (llama.cpp, transformers) takes one call at
a time, so its calls are serialized while store hits go on in parallel. An item not scored by
the request's deadline is failed in that reply; its work finishes in the background and lands
in the store, so the client's retry is answered from it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from rlaif.backends.base import Backend, ChoiceScores, Generation, Messages
from rlaif.constitution import Constitution
from rlaif.rewards import GroupReward, ItemReward, RewardJudge, group_pairs
from rlaif.rules import is_programmatic
from rlaif.serve.openrlhf import Item
from rlaif.store import STORE_FILE, Store

#: backends whose model runs in this process, one call at a time
IN_PROCESS = ("smollm2", "llamacpp:", "hf:", "gguf:")
#: call keys the run store's wrapper remembers in memory (the store itself keeps every call)
SEEN_LIMIT = 10_000


@dataclass
class ServeSettings:
    """What ``rlaif serve`` serves and how."""

    judge: str = "smollm2"
    constitution: str = "default"
    #: the directory of the run store (``store.sqlite``)
    out: Path | str = "rlaif-serve"
    seed: int = 0
    #: items scored at once (threads); model calls of an in-process model are serialized
    concurrency: int = 4
    #: seconds a request may take; items not scored by then are failed in the reply
    timeout: float = 120.0
    #: the reward a failed item gets in ``rewards`` (None: null); it is listed in ``failed``
    failed_reward: float | None = None
    #: largest request body accepted, in bytes (larger: HTTP 413)
    max_body: int = 8 * 1024 * 1024
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, not {self.concurrency}")
        if not self.timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, not {self.timeout}")
        if self.max_body < 1024:
            raise ValueError(f"max_body must be >= 1024 bytes, not {self.max_body}")


class _Meter(Backend):
    """Counts the calls that pass through it; with ``serial``, lets one through at a time."""

    def __init__(self, inner: Backend, *, serial: bool = False) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.price_per_million = inner.price_per_million
        self.calls = 0
        self._count_lock = threading.Lock()
        self._serial = threading.Lock() if serial else None

    def _counted(self, call):
        with self._count_lock:
            self.calls += 1
        if self._serial is None:
            return call()
        with self._serial:
            return call()

    def generate(
        self, messages: Messages, *, max_tokens: int = 256, temperature: float = 0.0, seed: int = 0
    ) -> Generation:
        """Generate through the wrapped backend."""
        return self._counted(
            lambda: self.inner.generate(
                messages, max_tokens=max_tokens, temperature=temperature, seed=seed
            )
        )

    def choice_logprobs(self, messages: Messages, choices: Sequence[str]) -> ChoiceScores:
        """Score choices through the wrapped backend."""
        return self._counted(lambda: self.inner.choice_logprobs(messages, choices))

    def close(self) -> None:
        """Close the wrapped backend."""
        self.inner.close()


class Counters:
    """What the server has done since it started (``GET /metrics``)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.items = 0
        self.failed_items = 0
        self.pairs = 0
        self.failed_pairs = 0
        self.rejected = 0
        self.latencies: deque[float] = deque(maxlen=1000)

    def record(
        self, items: int, failed: int, seconds: float, pairs: int = 0, failed_pairs: int = 0
    ) -> None:
        """Count one answered request (a group's with the pairs judged and those failed)."""
        with self.lock:
            self.requests += 1
            self.items += items
            self.failed_items += failed
            self.pairs += pairs
            self.failed_pairs += failed_pairs
            self.latencies.append(seconds)

    def reject(self) -> None:
        """Count one refused request (401, 400, 413)."""
        with self.lock:
            self.rejected += 1

    def percentiles(self) -> dict[str, float | None]:
        """Latency percentiles (ms) over the last 1000 answered requests."""
        with self.lock:
            values = sorted(self.latencies)
        if not values:
            return {"p50_ms": None, "p90_ms": None, "p99_ms": None}
        pick = lambda q: round(1000 * values[min(len(values) - 1, int(q * len(values)))], 1)  # noqa: E731
        return {"p50_ms": pick(0.5), "p90_ms": pick(0.9), "p99_ms": pick(0.99)}


class JudgeService:
    """A judge string, a constitution and a run store, scoring items for the HTTP routes."""

    def __init__(self, settings: ServeSettings, constitution: Constitution) -> None:
        self.settings = settings
        self.counters = Counters()
        self.store: Store | None = None
        self.outer: _Meter | None = None
        self.model: _Meter | None = None
        if is_programmatic(settings.judge):
            self.judge = RewardJudge(settings.judge, constitution, seed=settings.seed)
        else:
            from rlaif.backends import load_backend
            from rlaif.backends.cached import CachedBackend

            settings.out.mkdir(parents=True, exist_ok=True)
            self.store = Store(settings.out / STORE_FILE)
            serial = settings.judge.strip().startswith(IN_PROCESS)
            self.model = _Meter(load_backend(settings.judge), serial=serial)
            cached = CachedBackend(self.model, self.store, seen_limit=SEEN_LIMIT)
            self.outer = _Meter(cached)
            self.judge = RewardJudge(
                settings.judge, constitution, seed=settings.seed, backend=self.outer
            )
        self.pool = ThreadPoolExecutor(settings.concurrency, thread_name_prefix="rlaif-serve")

    def _safe_item(self, item: Item) -> ItemReward:
        try:
            return self.judge.score_item(item.prompt, item.response, item.truncated)
        except Exception as e:  # a judge failure is a failed item, never a number
            return ItemReward(None, "error", error=f"{type(e).__name__}: {e}"[:300])

    def _failed_group(self, prompt: str, n: int, source: str, error: str) -> GroupReward:
        """A group none of whose pairs was read: every response failed with ``error``."""
        pairs = group_pairs(n, self.judge.seed, prompt)
        return GroupReward([ItemReward(None, source, error=error)] * n, pairs, pairs)

    def _safe_group(
        self, prompt: str, responses: list[str], truncated: list[bool | None]
    ) -> GroupReward:
        try:
            return self.judge.judge_group(prompt, responses, truncated)
        except Exception as e:
            error = f"{type(e).__name__}: {e}"[:300]
            return self._failed_group(prompt, len(responses), "error", error)

    async def _wait(self, futures: list[Future], started: float) -> None:
        """Wait for the futures until the request's deadline (those still running are failed)."""
        left = self.settings.timeout - (time.monotonic() - started)
        waiting = [asyncio.wrap_future(f) for f in futures]
        if waiting:
            await asyncio.wait(waiting, timeout=max(left, 0.0))

    async def score_items(self, items: list[Item]) -> list[ItemReward]:
        """Every item's reward; unreadable, erroring or late items are failed (reward None)."""
        started = time.monotonic()
        futures: list[Future | None] = [
            None if item.error else self.pool.submit(self._safe_item, item) for item in items
        ]
        await self._wait([f for f in futures if f is not None], started)
        results = []
        for item, future in zip(items, futures, strict=True):
            if future is None:
                results.append(ItemReward(None, "request", error=item.error))
            elif not future.done():
                results.append(ItemReward(None, "timeout", error="judge timed out"))
            else:
                results.append(future.result())
        return results

    async def score_group(
        self, prompt: str, responses: list[str], truncated: list[bool | None] | None = None
    ) -> GroupReward:
        """Each response's group-relative reward and the pairs that could not be read; all
        failed (every pair with them) when the judge raised or the deadline passed first.

        ``truncated``: one flag per response (None: unknown), for the rules and checks.
        """
        started = time.monotonic()
        flags = truncated if truncated is not None else [None] * len(responses)
        future = self.pool.submit(self._safe_group, prompt, responses, flags)
        await self._wait([future], started)
        if not future.done():
            return self._failed_group(prompt, len(responses), "timeout", "judge timed out")
        return future.result()

    def metrics(self) -> dict:
        """The counters: requests, items, failed items, group pairs judged and failed, model
        calls, cache hits, latency."""
        c = self.counters
        calls = self.outer.calls if self.outer else 0
        model_calls = self.model.calls if self.model else 0
        with c.lock:
            counts = {
                "requests": c.requests,
                "items": c.items,
                "failed_items": c.failed_items,
                "pairs": c.pairs,
                "failed_pairs": c.failed_pairs,
                "rejected_requests": c.rejected,
            }
        return {
            "judge": self.judge.model_id,
            **counts,
            "judge_calls": calls,
            "model_calls": model_calls,
            "cache_hits": calls - model_calls,
            **c.percentiles(),
        }

    def close(self) -> None:
        """Stop the threads (waiting for calls in flight) and close the store."""
        self.pool.shutdown(wait=True, cancel_futures=True)
        if self.store is not None:
            self.store.close()
