"""Concurrent labelling: rate limits, retries and their waits, the ordered thread pool, a store
shared by threads, and labels through a real llama.cpp server from many threads at once."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import openai
import pytest
from fault_proxy import FaultProxy

from rlaif.backends import Backend, Generation, load_backend
from rlaif.backends.cached import CachedBackend
from rlaif.backends.openai_compat import OpenAIBackend
from rlaif.backends.ratelimit import RateLimiter, RequestPolicy, parse_retry_after, retry_delay
from rlaif.compare import Judge
from rlaif.errors import BackendError
from rlaif.pipeline.executor import compare_pairs, ordered_map
from rlaif.store import Store

try:  # the HTTP library the installed openai client is built on
    import httpx2 as httpx
except ImportError:  # pragma: no cover - older openai releases
    import httpx

KEY = "sk-test-secret-0123456789"


class FakeClock:
    """Time that passes only when someone sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


# -- rate limits --------------------------------------------------------------------------------
def test_requests_per_minute_are_kept_after_the_burst():
    clock = FakeClock()
    limiter = RateLimiter(rpm=60, clock=clock, sleep=clock.sleep)
    for _ in range(10):  # a burst of 10 seconds' worth goes at once
        assert limiter.acquire() == 0
    for _ in range(20):  # then one a second
        limiter.acquire()
    assert clock.now - 1000.0 == pytest.approx(20.0)
    assert clock.slept == pytest.approx([1.0] * 20)


def test_tokens_per_minute_are_settled_with_the_servers_count():
    clock = FakeClock()
    limiter = RateLimiter(tpm=600, clock=clock, sleep=clock.sleep)  # 10 a second, 100 at once
    assert limiter.acquire(50) == 0 and limiter.acquire(50) == 0
    assert limiter.acquire(50) == pytest.approx(5.0)  # 50 tokens short, 10 a second
    for _ in range(3):
        limiter.settle(50, 10)  # the three requests were smaller than estimated: 120 back
    assert limiter.acquire(100) == 0  # without the settling it would wait 10 s
    assert limiter.acquire(100) == pytest.approx(10.0)


def test_concurrent_callers_queue_for_the_rate():
    clock = FakeClock()
    lock = threading.Lock()

    def sleep(seconds: float) -> None:
        with lock:
            clock.slept.append(seconds)

    limiter = RateLimiter(rpm=6, clock=clock, sleep=sleep)  # 0.1 a second, burst of 1
    threads = [threading.Thread(target=limiter.acquire) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # each reservation waits behind the ones before it: 10 s apart
    assert sorted(clock.slept) == pytest.approx([10.0, 20.0, 30.0, 40.0])


def test_retry_after_in_seconds_milliseconds_and_http_dates():
    assert parse_retry_after({"retry-after": "7"}) == 7.0
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    when = datetime(2030, 1, 1, 12, 0, 30, tzinfo=UTC)
    now = (when - timedelta(seconds=30)).timestamp()
    assert parse_retry_after({"retry-after": format_datetime(when, usegmt=True)}, now) == 30.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({"retry-after": "-3"}) is None
    assert parse_retry_after({}) is None


def test_backoff_doubles_with_jitter_and_honours_retry_after():
    policy = RequestPolicy(backoff_base=0.5, backoff_max=4.0, retry_after_max=60)
    for attempt, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (9, 4.0)]:
        waits = [retry_delay(attempt, policy) for _ in range(200)]
        assert all(ceiling / 2 <= w <= ceiling for w in waits)
        assert len(set(waits)) > 100  # jittered, not one fixed value
    assert retry_delay(0, policy, retry_after=12.0) == 12.0
    assert retry_delay(5, policy, retry_after=3600.0) == 60.0


@pytest.mark.parametrize("bad", [{"timeout": 0}, {"max_retries": -1}, {"rpm": 0}, {"tpm": -5}])
def test_request_policy_rejects_nonsense(bad):
    with pytest.raises(ValueError):
        RequestPolicy(**bad)


# -- the retry loop of the openai backend, against a scripted transport --------------------------
def _completion(text: str = "A") -> dict:
    top = [{"token": "A", "logprob": -0.1, "bytes": None}, {"token": "B", "logprob": -2.4}]
    return {
        "id": "c",
        "object": "chat.completion",
        "created": 0,
        "model": "fake",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
                "logprobs": {"content": [{**top[0], "top_logprobs": top}]},
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13},
    }


class ScriptedServer:
    """Answers each request with the next step: an exception to raise or (status, body, headers)."""

    def __init__(self, steps: list) -> None:
        self.steps = list(steps)
        self.requests = 0

    def handle(self, request):
        self.requests += 1
        step = self.steps.pop(0) if self.steps else (200, _completion(), {})
        if isinstance(step, type) and issubclass(step, Exception):
            raise step("scripted failure", request=request)
        status, body, headers = step
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"content-type": "application/json", **headers}
        return httpx.Response(status, content=content, headers=headers)

    def backend(self, **policy) -> tuple[OpenAIBackend, list[float]]:
        backend = OpenAIBackend("fake", "http://fake.invalid/v1", policy=RequestPolicy(**policy))
        backend._client = openai.OpenAI(
            base_url="http://fake.invalid/v1",
            api_key=KEY,
            max_retries=0,
            http_client=httpx.Client(transport=httpx.MockTransport(self.handle)),
        )
        waits: list[float] = []
        backend._sleep = waits.append
        return backend, waits


MESSAGES = [{"role": "user", "content": "A or B?"}]


def test_every_failure_that_may_pass_is_retried():
    server = ScriptedServer(
        [
            (429, {"error": {"message": "slow down"}}, {"retry-after": "7"}),
            (503, {"error": {"message": "overloaded"}}, {}),
            (200, b'{"id": "c", "choices": [{"ind', {}),  # cut JSON
            (200, {"id": "c", "object": "chat.completion"}, {}),  # JSON without choices
            httpx.ReadTimeout,
            httpx.RemoteProtocolError,  # connection dropped mid-reply
        ]
    )
    backend, waits = server.backend(backoff_base=0.5, backoff_max=30)
    scores = backend.choice_logprobs(MESSAGES, ("A", "B"))
    assert scores.method == "logprobs" and scores.logprobs["A"] == pytest.approx(-0.1)
    assert server.requests == 7
    assert backend.retries == {
        "HTTP 429": 1,
        "HTTP 503": 1,
        "malformed reply": 2,
        "timeout": 1,
        "connection": 1,
    }
    assert waits[0] == 7.0  # Retry-After, as the server said
    for attempt, wait in enumerate(waits[1:], start=1):  # backoff with jitter
        ceiling = 0.5 * 2**attempt
        assert ceiling / 2 <= wait <= ceiling


def test_retries_run_out_with_a_clear_error():
    server = ScriptedServer([(500, {"error": {"message": "boom"}}, {})] * 3)
    backend, waits = server.backend(max_retries=2)
    with pytest.raises(BackendError, match="no usable reply after 3 attempts") as info:
        backend.generate(MESSAGES, max_tokens=4)
    assert "HTTP 500" in str(info.value) and "--max-retries" in str(info.value)
    assert server.requests == 3 and len(waits) == 2


@pytest.mark.parametrize(
    "status, message",
    [
        (401, "refused the API key"),
        (403, "denied access"),
        (404, "no such model"),
        (400, "refused the request"),
        (422, "HTTP 422"),
    ],
)
def test_errors_retrying_cannot_fix_stop_at_once(status, message):
    server = ScriptedServer([(status, {"error": {"message": f"no ({KEY[:6]}...)"}}, {})])
    backend, waits = server.backend()
    with pytest.raises(BackendError, match=message) as info:
        backend.generate(MESSAGES, max_tokens=4)
    assert server.requests == 1 and waits == []
    assert KEY not in str(info.value)


def test_unreachable_server_fails_at_once_but_a_restart_is_retried():
    server = ScriptedServer([httpx.ConnectError])
    backend, waits = server.backend()
    with pytest.raises(BackendError, match="cannot reach the server"):
        backend.generate(MESSAGES, max_tokens=4)
    assert server.requests == 1
    assert backend.generate(MESSAGES, max_tokens=4).text == "A"
    # once the server has answered, a refused connection is a restart: retried
    server.steps = [httpx.ConnectError, httpx.ConnectError]
    assert backend.generate(MESSAGES, max_tokens=4).text == "A"
    assert backend.retries["connection"] == 2


def test_rate_limit_holds_requests_back():
    server = ScriptedServer([])
    backend, _ = server.backend()
    clock = FakeClock()
    backend.limiter = RateLimiter(rpm=60, clock=clock, sleep=clock.sleep)
    for _ in range(15):
        backend.generate(MESSAGES, max_tokens=4)
    assert server.requests == 15
    assert clock.slept == pytest.approx([1.0] * 5)  # 10 at once, then one a second


# -- the ordered thread pool and the shared store -----------------------------------------------
def test_results_come_in_input_order_whatever_finishes_first():
    n = 4
    finished_events = [threading.Event() for _ in range(n)]
    finished: list[int] = []

    def job(i: int) -> int:
        if i + 1 < n:  # each job ends only after the next one: completion order is reversed
            assert finished_events[i + 1].wait(timeout=60)
        finished.append(i)
        finished_events[i].set()
        return 10 * i

    assert list(ordered_map(job, range(n), n)) == [0, 10, 20, 30]
    assert finished == [3, 2, 1, 0]


def test_the_first_error_stops_new_work():
    started: list[int] = []

    def job(i: int) -> int:
        started.append(i)
        if i == 0:
            raise ValueError("boom")
        return i

    with pytest.raises(ValueError, match="boom"):
        list(ordered_map(job, range(100), 2))
    assert len(started) <= 4  # only the window submitted ahead of the failed result


class SlowFake(Backend):  # unit test of the cache's locking, no model needed
    """Every call waits until all threads are in, then answers with a fresh text."""

    model_id = "fake"

    def __init__(self, threads: int) -> None:
        self.barrier = threading.Barrier(threads)
        self.calls = 0
        self.lock = threading.Lock()

    def generate(self, messages, *, max_tokens=256, temperature=0.0, seed=0):
        self.barrier.wait(timeout=60)
        with self.lock:
            self.calls += 1
            return Generation(text=f"answer {self.calls}", prompt_tokens=3, completion_tokens=2)

    def choice_logprobs(self, messages, choices):  # pragma: no cover - unused
        raise NotImplementedError


def test_threads_making_the_same_call_store_it_once_and_agree(tmp_path):
    threads = 6
    inner = SlowFake(threads)
    cached = CachedBackend(inner, Store(tmp_path / "store.sqlite"))
    texts = list(
        ordered_map(lambda _: cached.generate(MESSAGES, max_tokens=4).text, range(threads), threads)
    )
    assert inner.calls == threads  # all were in flight at once
    assert len(set(texts)) == 1  # and all return the result stored first
    assert cached.store.count() == 1
    assert (cached.model_calls, cached.cached_calls) == (1, 0)
    assert cached.prompt_tokens_total == 3


# -- through a real server ----------------------------------------------------------------------
def test_labels_from_many_threads_equal_sequential_labels(llama_server, constitution):
    proxy = FaultProxy(llama_server).start()  # no faults: it counts requests at the server
    try:
        judge = Judge(load_backend("openai:smollm2@" + proxy.url), constitution)
        prompt = "Name a planet."
        answers = ["Mars.", "The Sun is a planet.", "Jupiter is the largest planet."]
        pairs = [(prompt, answers[i], answers[j]) for i, j in [(0, 1), (0, 2), (1, 2)]]
        sequential = [judge.compare(*p) for p in pairs]
        proxy.reset(rate=0.0)
        concurrent = list(compare_pairs(judge, pairs, concurrency=4))
        assert proxy.max_forwarding >= 2  # requests really were at the server together
        assert proxy.counts["ok"] == 2 * len(pairs)
    finally:
        proxy.stop()
    assert concurrent == sequential
    assert all(p.method == "logprobs" and p.p_a is not None for p in concurrent)


# -- the command line ---------------------------------------------------------------------------
def _rlaif(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rlaif", *args], capture_output=True, text=True, timeout=120
    )


def test_concurrency_with_in_process_models_only_is_refused(tmp_path):
    result = _rlaif("run", "--concurrency", "4", "--out", str(tmp_path / "r"))
    assert result.returncode == 2
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: ") and "--concurrency 4" in error
    assert "one llama.cpp call at a time" in error and "--executor ray" in error
    assert not (tmp_path / "r").exists()


def test_run_help_lists_the_concurrency_options():
    result = _rlaif("run", "--help")
    assert result.returncode == 0
    for option in ("--concurrency", "--executor", "--rpm", "--tpm", "--timeout", "--max-retries"):
        assert option in result.stdout
