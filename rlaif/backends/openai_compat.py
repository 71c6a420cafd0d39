"""Any OpenAI-compatible ``/v1`` chat-completions server (vLLM, llama.cpp server, Ollama, OpenAI).

Choice log-probabilities come from ``logprobs``/``top_logprobs`` of the first generated token.
A server that refuses or ignores ``logprobs`` is asked for a short generated verdict instead, and
the result says so (``method == "verdict"``).

Requests are paced and retried here, not by the ``openai`` client (made with ``max_retries=0``),
so that one loop with one policy (:class:`~rlaif.backends.ratelimit.RequestPolicy`) covers
every failure that may pass, including replies the client does not count as errors:

==========================  ===================================================================
retried (backoff, jitter)   429 (waiting exactly ``Retry-After`` when the server sends one),
                            408, 409, 5xx, no reply within the timeout, connection refused or
                            cut, a reply that is not the JSON of a chat completion
stops the run at once       401/403 (the key), 404 (model or URL), 400 and other 4xx (the
                            request itself is wrong; a refused ``logprobs`` request first falls
                            back to a verdict), and any failure after ``max_retries`` retries
==========================  ===================================================================

A server that refuses connections before it has ever answered is reported at once (a wrong
URL, a server not started); once it has answered, a refused connection is retried (a restart).
The backend is safe to call from several threads at once.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Sequence

from rlaif.backends.base import Backend, ChoiceScores, Generation, Messages
from rlaif.backends.ratelimit import RateLimiter, RequestPolicy, parse_retry_after, retry_delay
from rlaif.errors import BackendError, ModelSpecError

TOP_LOGPROBS = 20
#: HTTP statuses worth retrying besides 429 and 5xx
RETRY_STATUSES = {408, 409, 425}

log = logging.getLogger(__name__)


class _Retryable(Exception):
    """A failed attempt that may succeed if made again."""

    def __init__(self, reason: str, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.retry_after = retry_after


class OpenAIBackend(Backend):
    """A chat model behind an OpenAI-compatible server, through the official ``openai`` client."""

    #: calls may be made from several threads at once (the run's thread pool)
    thread_safe = True

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        model_id: str | None = None,
        timeout: float = 120.0,
        policy: RequestPolicy | None = None,
    ) -> None:
        try:
            import openai
        except ImportError as e:  # pragma: no cover - openai is a core dependency
            raise ModelSpecError("the openai backend needs `pip install openai`") from e
        base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        if not base_url:
            raise ModelSpecError(
                f"openai:{model} has no server: write openai:{model}@https://host/v1 "
                "or set OPENAI_BASE_URL"
            )
        # Local servers (llama.cpp, vLLM, Ollama) accept any key; OpenAI itself needs a real one.
        api_key = api_key or os.environ.get("OPENAI_API_KEY") or "not-needed"
        self.model = model
        self.base_url = base_url
        self.model_id = model_id or f"openai:{model}@{base_url}"
        self._openai = openai
        # max_retries=0: every retry is made by _create, under this backend's policy
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0)
        self._logprobs_supported: bool | None = None
        self.set_request_policy(policy or RequestPolicy(timeout=timeout))
        #: failed attempts that were retried, by reason ("HTTP 429", "timeout", ...)
        self.retries: Counter[str] = Counter()
        self._retries_lock = threading.Lock()
        self._answered = False
        self._sleep = time.sleep
        self._rng = random.Random()

    def set_request_policy(self, policy: RequestPolicy) -> None:
        """Use this timeout, retry count and rate limits for the requests from now on."""
        self.policy = policy
        self.limiter = RateLimiter(policy.rpm, policy.tpm)

    def _create(self, **kwargs):
        """One chat completion, retried under the request policy; see the module docstring."""
        estimate = _estimate_tokens(kwargs.get("messages", []), kwargs.get("max_tokens", 0))
        attempt = 0
        while True:
            self.limiter.acquire(estimate)
            try:
                resp = self._attempt(kwargs)
            except _Retryable as failure:
                if attempt >= self.policy.max_retries:
                    raise BackendError(
                        f"{self.model_id}: no usable reply after {attempt + 1} attempts (last: "
                        f"{failure.detail}); check the server, or raise --timeout or "
                        "--max-retries"
                    ) from failure
                delay = retry_delay(attempt, self.policy, failure.retry_after, self._rng)
                with self._retries_lock:
                    self.retries[failure.reason] += 1
                log.info(
                    "%s: %s; retry %d in %.1f s", self.model_id, failure.detail, attempt + 1, delay
                )
                self._sleep(delay)
                attempt += 1
                continue
            self._answered = True
            usage = resp.usage
            if usage is not None:
                self.limiter.settle(
                    estimate, (usage.prompt_tokens or 0) + (usage.completion_tokens or 0)
                )
            return resp

    def _attempt(self, kwargs: dict):
        """Make one request: its reply, _Retryable, BackendError, or BadRequestError for the
        caller (a refused ``logprobs`` request falls back to a verdict)."""
        openai = self._openai
        try:
            resp = self._client.chat.completions.create(
                model=self.model, timeout=self.policy.timeout, **kwargs
            )
        except openai.APITimeoutError as e:
            raise _Retryable("timeout", f"no reply within {self.policy.timeout:g} s") from e
        except openai.APIConnectionError as e:
            cause = e.__cause__
            if not self._answered and type(cause).__name__ == "ConnectError":
                raise BackendError(f"{self.model_id}: cannot reach the server ({cause})") from e
            raise _Retryable("connection", f"connection failed ({_reason(cause or e)})") from e
        except openai.BadRequestError:
            raise
        except openai.AuthenticationError as e:
            raise BackendError(
                f"{self.model_id}: the server refused the API key (HTTP {e.status_code}); "
                "set OPENAI_API_KEY to a valid key"
            ) from e
        except openai.PermissionDeniedError as e:
            raise BackendError(
                f"{self.model_id}: the server denied access (HTTP 403: {_reason(e)}); check that "
                "the API key may use this model"
            ) from e
        except openai.NotFoundError as e:
            raise BackendError(
                f"{self.model_id}: the server has no such model or endpoint (HTTP 404: "
                f"{_reason(e)}); check the model name and that the URL ends in /v1"
            ) from e
        except openai.APIStatusError as e:
            status = e.status_code
            if status == 429 or status >= 500 or status in RETRY_STATUSES:
                raise _Retryable(
                    f"HTTP {status}",
                    f"HTTP {status} ({_reason(e)})",
                    parse_retry_after(e.response.headers),
                ) from e
            raise BackendError(
                f"{self.model_id}: the server answered HTTP {status} ({_reason(e)})"
            ) from e
        except (json.JSONDecodeError, openai.APIResponseValidationError) as e:
            raise _Retryable("malformed reply", f"unreadable reply ({_reason(e)})") from e
        choices = getattr(resp, "choices", None)
        if (
            not isinstance(choices, list)
            or not choices
            or getattr(choices[0], "message", None) is None
        ):
            raise _Retryable("malformed reply", "a reply without a chat completion in it")
        return resp

    def generate(
        self, messages: Messages, *, max_tokens: int = 256, temperature: float = 0.0, seed: int = 0
    ) -> Generation:
        """Generate a reply with the server's chat-completions endpoint."""
        try:
            resp = self._create(
                messages=messages, max_tokens=max_tokens, temperature=temperature, seed=seed
            )
        except self._openai.BadRequestError as e:
            reason = _reason(e)
            raise BackendError(f"{self.model_id}: the server refused the request ({reason})") from e
        choice = resp.choices[0]
        usage = resp.usage
        return Generation(
            text=choice.message.content or "",
            prompt_tokens=(usage.prompt_tokens or 0) if usage else 0,
            completion_tokens=(usage.completion_tokens or 0) if usage else 0,
            finish_reason=choice.finish_reason or None,  # "length": cut at max_tokens
        )

    def choice_logprobs(self, messages: Messages, choices: Sequence[str]) -> ChoiceScores:
        """Log-probabilities of the choices from ``top_logprobs``, or a generated verdict."""
        refused = False
        if self._logprobs_supported is not False:
            try:
                resp = self._create(
                    messages=messages,
                    max_tokens=1,
                    temperature=0.0,
                    logprobs=True,
                    top_logprobs=TOP_LOGPROBS,
                )
            except self._openai.BadRequestError:
                # The server refuses either logprobs or this request (too long for its context...):
                # the verdict request below tells which, before logprobs are given up for good.
                refused = True
            else:
                content = resp.choices[0].logprobs and resp.choices[0].logprobs.content
                if content and content[0].top_logprobs:
                    self._logprobs_supported = True
                    usage = resp.usage
                    return ChoiceScores(
                        method="logprobs",
                        logprobs=_match_choices(content[0].top_logprobs, choices),
                        floor=min(t.logprob for t in content[0].top_logprobs),
                        prompt_tokens=(usage.prompt_tokens or 0) if usage else 0,
                        completion_tokens=(usage.completion_tokens or 0) if usage else 0,
                    )
                if self._logprobs_supported is None:
                    # only a server that never gave log-probabilities is switched to verdicts
                    # for good; one odd reply from a server that did gets a verdict this time
                    self._logprobs_supported = False
        gen = self.generate(messages, max_tokens=8, temperature=0.0)  # BackendError if refused too
        if refused and self._logprobs_supported is None:
            self._logprobs_supported = False
        return ChoiceScores(
            method="verdict",
            text=gen.text,
            prompt_tokens=gen.prompt_tokens,
            completion_tokens=gen.completion_tokens,
        )


def _reason(error: Exception) -> str:
    """The server's error message on one line."""
    return " ".join(str(getattr(error, "message", None) or error).split())


def _match_choices(top_logprobs: list, choices: Sequence[str]) -> dict[str, float | None]:
    """Sum the probability of the tokens that spell each choice (``"A"``, ``" A"``).

    A choice absent from the returned top tokens is ``None``: its probability is unknown, only
    bounded by the smallest one returned, which the caller may use as a conservative value.
    """
    out: dict[str, float | None] = {}
    for choice in choices:
        values = [t.logprob for t in top_logprobs if t.token.strip() == choice]
        out[choice] = math.log(sum(math.exp(v) for v in values)) if values else None
    return out


def _estimate_tokens(messages: Messages, max_tokens: int) -> int:
    """A rough count of a request's tokens for the tokens-per-minute limit (4 characters a
    token, plus the reply's ``max_tokens``); corrected by the server's count afterwards."""
    chars = sum(len(str(m.get("content") or "")) for m in messages)
    return chars // 4 + 4 * len(messages) + (max_tokens or 0)
