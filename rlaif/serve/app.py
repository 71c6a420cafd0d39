"""The HTTP routes of ``rlaif serve`` (Starlette): rewards, group rewards, health, metrics.

=======================  ======================================================================
``POST /get_reward``     OpenRLHF's remote reward model: ``{"query", "prompts", "labels"}`` (or
                         rlaif's ``{"prompts", "responses"}``), optionally ``"truncated"``, in;
                         ``{"rewards", "scores", "failed", "sources"}`` out, ``rewards`` and
                         ``scores`` the same list
``POST /group_reward``   ``{"prompt", "responses": [G texts]}`` (optionally ``"truncated"``) in;
                         each response's mean probability of beating the others
                         (:mod:`rlaif.rewards`), plus ``"pairs"`` (pairs judged),
                         ``"failed_pairs"`` (how many gave no readable verdict) and
                         ``"failed_pair_indices"`` (those pairs, ``[i, j]``)
``GET /health``          ``{"status": "ok"}``; needs no token and says nothing else
``GET /metrics``         the counters (requests, items, failed items, group pairs judged and
                         failed, model calls, cache hits, latency percentiles)
=======================  ======================================================================

A failed item (the judge's reply unreadable, the judge raised, the deadline passed, or the
query could not be split) is listed by index in ``failed``; its reward is the server's
``--failed-reward`` (default ``null``), never a silent number.

With a token, every route but ``/health`` needs it, as ``Authorization: Bearer TOKEN`` or the
query parameter ``?token=TOKEN`` (OpenRLHF's client sets no headers), compared in constant
time; without it the reply is 401 and names no token. A body above ``max_body`` bytes gets 413
before it is read whole.
"""

from __future__ import annotations

import hmac
import json
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from rlaif.rewards import GroupReward, ItemReward
from rlaif.serve.openrlhf import RequestError, read_group, read_items
from rlaif.serve.service import JudgeService


class BodyTooLarge(Exception):
    """The request body is larger than the server accepts."""


def _authorized(request: Request, token: bytes | None) -> bool:
    if token is None:
        return True
    given = request.query_params.get("token", "")
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        given = header[7:].strip()
    return hmac.compare_digest(given.encode(), token)


async def _body(request: Request, limit: int) -> object:
    """The JSON body, refused (BodyTooLarge) as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except ValueError as e:
        raise RequestError(f"the body is not JSON ({e})") from None


def _reply(scored: list[ItemReward] | GroupReward, failed_reward: float | None) -> dict:
    results = scored.items if isinstance(scored, GroupReward) else scored
    failed = [i for i, r in enumerate(results) if r.failed]
    rewards = [failed_reward if r.failed else r.reward for r in results]
    reply = {"rewards": rewards, "scores": rewards, "failed": failed}
    reply["sources"] = [r.source for r in results]
    errors = {str(i): results[i].error for i in failed if results[i].error}
    if errors:
        reply["errors"] = errors
    if isinstance(scored, GroupReward):
        reply["pairs"] = len(scored.pairs)
        reply["failed_pairs"] = len(scored.failed_pairs)
        reply["failed_pair_indices"] = [list(pair) for pair in scored.failed_pairs]
    return reply


def create_app(service: JudgeService, token: str | None = None) -> Starlette:
    """The ASGI app serving ``service``; ``token`` (None: no token) guards every route but
    ``/health``."""
    secret = token.encode() if token else None
    settings = service.settings

    async def guarded(request: Request, score) -> JSONResponse:
        if not _authorized(request, secret):
            service.counters.reject()
            return JSONResponse({"error": "missing or wrong token"}, status_code=401)
        started = time.monotonic()
        try:
            body = await _body(request, settings.max_body)
            scored = await score(body)
        except BodyTooLarge:
            service.counters.reject()
            return JSONResponse(
                {"error": f"request body above {settings.max_body} bytes"}, status_code=413
            )
        except RequestError as e:
            service.counters.reject()
            return JSONResponse({"error": str(e)}, status_code=400)
        reply = _reply(scored, settings.failed_reward)
        service.counters.record(
            len(reply["rewards"]),
            len(reply["failed"]),
            time.monotonic() - started,
            pairs=reply.get("pairs", 0),
            failed_pairs=reply.get("failed_pairs", 0),
        )
        return JSONResponse(reply)

    async def get_reward(request: Request) -> JSONResponse:
        return await guarded(request, lambda body: service.score_items(read_items(body)))

    async def group_reward(request: Request) -> JSONResponse:
        async def score(body: object) -> GroupReward:
            prompt, responses, truncated = read_group(body)
            return await service.score_group(prompt, responses, truncated)

        return await guarded(request, score)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def metrics(request: Request) -> JSONResponse:
        if not _authorized(request, secret):
            service.counters.reject()
            return JSONResponse({"error": "missing or wrong token"}, status_code=401)
        return JSONResponse(service.metrics())

    return Starlette(
        routes=[
            Route("/get_reward", get_reward, methods=["POST"]),
            Route("/group_reward", group_reward, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ]
    )
