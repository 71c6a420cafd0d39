"""Any OpenAI-compatible ``/v1`` chat-completions server (vLLM, llama.cpp server, Ollama, OpenAI).

Choice log-probabilities come from ``logprobs``/``top_logprobs`` of the first generated token.
A server that refuses or ignores ``logprobs`` is asked for a short generated verdict instead, and
the result says so (``method == "verdict"``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

from rlaif.backends.base import Backend, ChoiceScores, Generation, Messages
from rlaif.errors import BackendError, ModelSpecError

TOP_LOGPROBS = 20


class OpenAIBackend(Backend):
    """A chat model behind an OpenAI-compatible server, through the official ``openai`` client."""

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        model_id: str | None = None,
        timeout: float = 120.0,
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
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout)
        self._logprobs_supported: bool | None = None

    def _create(self, **kwargs):
        try:
            return self._client.chat.completions.create(model=self.model, **kwargs)
        except self._openai.APIConnectionError as e:
            raise BackendError(f"{self.model_id}: cannot reach the server ({e})") from e
        except self._openai.AuthenticationError as e:
            raise BackendError(
                f"{self.model_id}: the server refused the API key; set OPENAI_API_KEY"
            ) from e
        except self._openai.BadRequestError:
            raise  # the callers decide: a refused logprobs request falls back to a verdict
        except self._openai.APIStatusError as e:
            raise BackendError(
                f"{self.model_id}: the server answered HTTP {e.status_code} ({_reason(e)})"
            ) from e

    def generate(
        self,
        messages: Messages,
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        seed: int = 0,
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
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            finish_reason=choice.finish_reason or "stop",
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
                        prompt_tokens=usage.prompt_tokens if usage else 0,
                        completion_tokens=usage.completion_tokens if usage else 0,
                    )
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
