"""Pacing requests to a server: rate limits, and the wait before a retry.

A :class:`RequestPolicy` says how a client talks to a server (timeout per attempt, how many
retries, requests and tokens per minute). :class:`RateLimiter` holds requests back so that
they stay under the limits, shared by every thread that uses one backend. :func:`retry_delay`
is the wait before retrying a failed request: exponential backoff with jitter, or exactly what
the server asked for in ``Retry-After``.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from email.utils import parsedate_to_datetime

#: seconds of traffic a rate limit lets through at once after a quiet spell
BURST_SECONDS = 10.0


@dataclass(frozen=True)
class RequestPolicy:
    """How a client talks to a server: timeout, retries and rate limits."""

    #: seconds to wait for a reply to one attempt before giving it up as hung
    timeout: float = 120.0
    #: retries of one request after a failure that may pass (429, 5xx, timeout, dropped or
    #: damaged reply); the request fails after ``max_retries + 1`` attempts
    max_retries: int = 8
    #: requests per minute (None: no limit)
    rpm: float | None = None
    #: tokens (prompt + completion) per minute (None: no limit)
    tpm: float | None = None
    #: first backoff in seconds; doubles with every retry up to ``backoff_max``
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    #: longest ``Retry-After`` honoured as it is; longer requests wait this long
    retry_after_max: float = 600.0

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, not {self.timeout}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, not {self.max_retries}")
        for name in ("rpm", "tpm"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0 (or unset for no limit), not {value}")
        if not 0 <= self.backoff_base <= self.backoff_max:
            raise ValueError("backoff_base must be in [0, backoff_max]")

    def shared_by(self, workers: int) -> RequestPolicy:
        """This policy for one of ``workers`` clients that together keep to its rate limits."""
        return replace(
            self,
            rpm=None if self.rpm is None else self.rpm / workers,
            tpm=None if self.tpm is None else self.tpm / workers,
        )


class _Bucket:
    """A token bucket refilled at ``per_minute / 60`` per second, holding ``BURST_SECONDS``."""

    def __init__(self, per_minute: float, now: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * BURST_SECONDS)
        self.level = self.capacity
        self.updated = now

    def take(self, amount: float, now: float) -> float:
        """Reserve ``amount``; returns the seconds to wait before using it."""
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now
        self.level -= amount
        return max(0.0, -self.level / self.rate)


class RateLimiter:
    """Keeps requests under requests-per-minute and tokens-per-minute limits, across threads.

    Each request reserves its share at once (one request, its estimated tokens) and waits until
    the reservation is covered, so concurrent callers queue in arrival order. The token estimate
    is corrected with the server's count once the reply is in (:meth:`settle`).
    """

    def __init__(
        self,
        rpm: float | None = None,
        tpm: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        now = clock()
        self._requests = _Bucket(rpm, now) if rpm else None
        self._tokens = _Bucket(tpm, now) if tpm else None

    @property
    def active(self) -> bool:
        """Whether any limit is set."""
        return self._requests is not None or self._tokens is not None

    def acquire(self, tokens: int = 0) -> float:
        """Wait until one request of about ``tokens`` tokens may go; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            wait = 0.0
            if self._requests is not None:
                wait = max(wait, self._requests.take(1, now))
            if self._tokens is not None:
                wait = max(wait, self._tokens.take(tokens, now))
        if wait > 0:
            self._sleep(wait)
        return wait

    def settle(self, estimated: int, actual: int) -> None:
        """Correct a request's token reservation with the count the server reported."""
        if self._tokens is not None and actual > 0:
            with self._lock:
                self._tokens.level += estimated - actual


def parse_retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds the server asked to wait (``retry-after-ms``, or ``Retry-After`` as seconds or as
    an HTTP date), or None when it did not say or said something unreadable."""
    if not headers:
        return None
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            seconds = float(value) / 1000.0
        except ValueError:
            seconds = math.nan
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
        return max(0.0, seconds)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def retry_delay(
    attempt: int,
    policy: RequestPolicy,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before retry number ``attempt`` (0 for the first retry).

    The server's ``Retry-After`` is honoured as it is (up to ``retry_after_max``). Otherwise the
    wait is ``backoff_base * 2**attempt`` capped at ``backoff_max``, of which a random half is
    dropped ("equal jitter"), so clients that failed together do not retry together.
    """
    if retry_after is not None:
        return min(retry_after, policy.retry_after_max)
    ceiling = min(policy.backoff_max, policy.backoff_base * 2.0 ** min(attempt, 62))
    return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)
