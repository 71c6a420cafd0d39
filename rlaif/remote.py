"""A served judge (``rlaif serve``) as a TRL reward function: :func:`remote_reward`.

The function posts each batch to the server and returns its rewards; a failed item (the
judge gave no number) comes back as ``None``, which TRL's GRPOTrainer leaves out as NaN, never
as a made-up score. Only the standard library is used, so the client runs wherever TRL does.

With ``max_completion_length`` (the trainer's) each request carries ``truncated``, one flag per
completion, worked out as in process (:class:`rlaif.rules.TrainingReward`): a completion of that
many tokens (``completion_ids``, which TRL passes) that does not end with ``eos_token_id`` was
cut at the limit, and fails a length rule or check on the server as it would in process.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

from rlaif.errors import RemoteJudgeError
from rlaif.rules import completion_text, cut_at_limit

#: environment variable read for the token when none is passed
TOKEN_ENV = "RLAIF_SERVE_TOKEN"


def is_url(spec: object) -> bool:
    """Whether a judge string is the URL of a served judge."""
    return isinstance(spec, str) and spec.strip().startswith(("http://", "https://"))


class RemoteReward:
    """A TRL reward function backed by ``rlaif serve`` (pointwise, or group-relative)."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        group: bool = False,
        timeout: float = 300,
        max_completion_length: int | None = None,
        eos_token_id: int | None = None,
    ) -> None:
        self.base = _base_url(url)
        self.token = token if token is not None else os.environ.get(TOKEN_ENV) or None
        self.group = group
        self.timeout = timeout
        self.max_completion_length = max_completion_length
        #: the policy's end-of-answer token (``rlaif train grpo`` sets it from the tokenizer)
        self.eos_token_id = eos_token_id
        #: TRL names the reward's logged metrics after this
        self.__name__ = "remote_group_judge" if group else "remote_judge"

    def __repr__(self) -> str:  # never show the token
        return f"RemoteReward({self.base!r}, group={self.group})"

    def post(self, path: str, body: dict) -> dict:
        """POST JSON to the server; RemoteJudgeError naming the status (never the token)."""
        request = urllib.request.Request(
            self.base + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as e:
            detail = e.read()[:200].decode(errors="replace").strip()
            raise RemoteJudgeError(f"{self.base}{path}: HTTP {e.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as e:
            raise RemoteJudgeError(f"{self.base}{path}: cannot reach the judge ({e})") from None

    def health(self) -> dict:
        """The server's ``GET /health``; RemoteJudgeError if it does not answer."""
        try:
            with urllib.request.urlopen(self.base + "/health", timeout=10) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise RemoteJudgeError(
                f"{self.base}/health: no rlaif serve there ({e}); start one with `rlaif serve`"
            ) from None

    def truncated(self, completion_ids: object, n: int) -> list[bool | None]:
        """Whether each of ``n`` completions (its token ids, as TRL passes them) was cut at the
        limit; all None (unknown) without ``max_completion_length`` or ids for each."""
        return cut_at_limit(completion_ids, n, self.max_completion_length, self.eos_token_id)

    def __call__(
        self, prompts: Sequence[object], completions: Sequence[object], **kwargs: object
    ) -> list[float | None]:
        """One reward per (prompt, completion), as TRL's GRPOTrainer calls a reward function."""
        texts = [completion_text(p) for p in prompts]
        responses = [completion_text(c).strip() for c in completions]
        cut = self.truncated(kwargs.get("completion_ids"), len(responses))
        flags = {"truncated": cut} if any(t is not None for t in cut) else {}
        if not self.group:
            body = {"prompts": texts, "responses": responses, **flags}
            return _rewards(self.post("/get_reward", body), len(responses))
        rewards: list[float | None] = [None] * len(responses)
        groups: dict[str, list[int]] = {}
        for index, text in enumerate(texts):
            groups.setdefault(text, []).append(index)
        for prompt, indices in groups.items():
            if len(indices) < 2:  # nothing to compare with: no group standing
                continue
            body = {"prompt": prompt, "responses": [responses[i] for i in indices]}
            if flags:
                body["truncated"] = [cut[i] for i in indices]
            reply = self.post("/group_reward", body)
            for i, reward in zip(indices, _rewards(reply, len(indices)), strict=True):
                rewards[i] = reward
        return rewards


def _rewards(reply: dict, n: int) -> list[float | None]:
    rewards = reply.get("rewards") if isinstance(reply, dict) else None
    if not isinstance(rewards, list) or len(rewards) != n:
        raise RemoteJudgeError(f"the judge answered {str(reply)[:200]!r}, not {n} rewards")
    failed = set(reply.get("failed") or [])
    return [None if i in failed or r is None else float(r) for i, r in enumerate(rewards)]


def _base_url(url: str) -> str:
    """The server's root URL from its root or any endpoint URL (``.../get_reward``)."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise RemoteJudgeError(f"{url!r} is not an http(s) URL of `rlaif serve`")
    path = parts.path.rstrip("/")
    for endpoint in ("/get_reward", "/group_reward"):
        path = path.removesuffix(endpoint)
    return f"{parts.scheme}://{parts.netloc}{path}"


def remote_reward(url: str, token: str | None = None, **options: Any) -> RemoteReward:
    """A TRL reward function that asks ``rlaif serve`` at ``url``.

    ``token`` (default: ``$RLAIF_SERVE_TOKEN``) is sent as a Bearer header. The keywords are
    :class:`RemoteReward`'s: ``group=True`` rewards each completion by its standing among the
    completions of the same prompt (``/group_reward``) instead of pointwise (``/get_reward``);
    with ``max_completion_length`` (the trainer's) and ``eos_token_id`` (the policy's
    end-of-answer token), a completion cut at the limit is flagged ``truncated`` to the server,
    as in process; ``timeout`` is in seconds.
    """
    return RemoteReward(url, token, **options)
