"""The review web app (Starlette): one page per pair, decisions written to the run's store.

Every route, pages and API alike, needs the access token (query parameter ``token``, header
``X-Review-Token`` or the cookie set on the first visit) and answers 403 without it. The page is
plain HTML rendered on the server; a decision is an ordinary form post followed by a redirect,
so a reload or a closed browser never loses or repeats one. A few lines of JavaScript add the
keyboard shortcuts.
"""

from __future__ import annotations

import json
import secrets
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs

from jinja2 import Environment
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse
from starlette.routing import Route

from rlaif.constitution import load_constitution
from rlaif.errors import RlaifError
from rlaif.pipeline.outputs import RUN_JSON
from rlaif.review.decisions import CHOICES, SIDES, Decision, DecisionLog
from rlaif.review.queue import ReviewItem, as_text, load_items
from rlaif.review.stats import ReviewStats, review_stats

COOKIE = "rlaif_review_token"
MAX_COMMENT = 10_000


def _principle_texts(run_dir: Path) -> dict[str, str]:
    """Principle id -> comparison question, when the run's constitution can still be loaded."""
    try:
        info = json.loads((run_dir / RUN_JSON).read_text(encoding="utf-8"))
        meta = info["constitution"]
        constitution = load_constitution(meta["source"])
    except (OSError, ValueError, KeyError, TypeError, RlaifError):
        return {}
    if constitution.hash != meta.get("hash"):
        return {}  # the file changed since the run: its texts may not be what the judge saw
    return {p.id: p.comparison for p in constitution.principles}


class ReviewSession:
    """One review of a finished run: its items in queue order, the decision log, the reviewer."""

    def __init__(self, run_dir: str | Path, reviewer: str, *, blind: bool = False) -> None:
        self.run_dir = Path(run_dir)
        self.reviewer = reviewer
        self.blind = blind
        self.items = load_items(self.run_dir)
        self.by_id = {item.item_id: item for item in self.items}
        self.log = DecisionLog.open(self.run_dir)
        self.principles = _principle_texts(self.run_dir)

    def next_item(self) -> tuple[ReviewItem | None, int]:
        """The first item of the queue without a decision, and its 1-based position."""
        decided = self.log.latest()
        for position, item in enumerate(self.items, start=1):
            if item.item_id not in decided:
                return item, position
        return None, 0

    def stats(self) -> ReviewStats:
        """The live panel's numbers."""
        return review_stats(self.items, self.log.latest())

    def decide(
        self, item_id: str, choice: str, left: str, comment: str, ai_visible: bool
    ) -> Decision:
        """Record the reviewer's decision about one item, with what they were shown."""
        item = self.by_id[item_id]
        position = [i.item_id for i in self.items].index(item_id) + 1
        return self.log.record(
            item_id,
            self.reviewer,
            choice,
            left,
            comment=comment,
            shown={
                "ai_visible": ai_visible,
                "p_left": _p_left(item, left) if ai_visible else None,
                "source": item.source,
                "queue_position": position,
            },
        )

    def close(self) -> None:
        """Close the run's store."""
        self.log.close()


def _p_left(item: ReviewItem, left: str) -> float | None:
    if item.p_first is None:
        return None
    return item.p_first if left == "first" else 1.0 - item.p_first


def _p_left_orders(item: ReviewItem, left: str) -> tuple[str, str] | None:
    """p(left better) with left shown first / second, formatted (None when not asked)."""
    a, b = item.p_first_shown_first, item.p_first_shown_second
    if a is None or b is None:
        return None
    if left == "second":  # P(second better | second first) = 1 - P(first better | first second)
        a, b = 1.0 - b, 1.0 - a
    return f"{a:.3f}", f"{b:.3f}"


def _item_context(
    session: ReviewSession, item: ReviewItem, position: int, left: str, decided: Decision | None
) -> dict:
    """What the page shows of one item, its response ``left`` (first or second) on the left."""
    right = "second" if left == "first" else "first"
    consistent = item.position_consistent
    return dict(
        left=left,
        position=position,
        decided=decided,
        prompt_text=as_text(item.prompt),
        left_text=as_text(item.first if left == "first" else item.second),
        right_text=as_text(item.first if right == "first" else item.second),
        principle_id=item.record.get("principle_id", "?"),
        principle_text=session.principles.get(item.record.get("principle_id", "")),
        ai_visible=not session.blind,
        p_left=_p_left(item, left),
        p_left_orders=_p_left_orders(item, left),
        consistent={True: "yes", False: "no"}.get(consistent, "unknown"),
        rationales=item.rationales,
    )


def _template():
    env = Environment(autoescape=True)
    text = resources.files("rlaif.review").joinpath("review.html").read_text(encoding="utf-8")
    return env.from_string(text)


class TokenGate:
    """ASGI middleware: 403 for every HTTP request that does not carry the access token."""

    def __init__(self, app, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            request = Request(scope)
            given = (
                request.query_params.get("token")
                or request.headers.get("x-review-token")
                or request.cookies.get(COOKIE)
                or ""
            )
            if not secrets.compare_digest(given.encode(), self.token):
                response = PlainTextResponse(
                    "403 forbidden: open the URL that `rlaif review` printed; it carries the "
                    "access token\n",
                    status_code=403,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(session: ReviewSession, token: str) -> TokenGate:
    """The ASGI app of a review session, behind the token gate."""
    template = _template()

    def page(item: ReviewItem | None, position: int) -> HTMLResponse:
        left = secrets.choice(SIDES)  # which response is on the left: random, and recorded
        latest = session.log.latest()
        history = sorted(latest.values(), key=lambda d: d.created, reverse=True)[:8]
        context = {
            "run_name": session.run_dir.name,
            "run_dir": str(session.run_dir),
            "reviewer": session.reviewer,
            "token": token,
            "stats": session.stats(),
            "history": history,
            "item": item,
        }
        if item is not None:
            context.update(_item_context(session, item, position, left, latest.get(item.item_id)))
        response = HTMLResponse(template.render(**context))
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    async def index(request: Request) -> HTMLResponse:
        return page(*session.next_item())

    async def item_page(request: Request) -> HTMLResponse | PlainTextResponse:
        item_id = request.path_params["item_id"]
        if item_id not in session.by_id:
            return PlainTextResponse(f"no pair {item_id!r} in this run\n", status_code=404)
        return page(session.by_id[item_id], session.items.index(session.by_id[item_id]) + 1)

    async def decide(request: Request) -> RedirectResponse | PlainTextResponse:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))

        def field(name: str) -> str:
            return (form.get(name) or [""])[0]

        item_id, choice, left = field("item_id"), field("choice"), field("left")
        if item_id not in session.by_id:
            return PlainTextResponse(f"no pair {item_id!r} in this run\n", status_code=400)
        if choice not in CHOICES or left not in SIDES:
            return PlainTextResponse(
                f"choice must be one of {', '.join(CHOICES)} and left one of {', '.join(SIDES)}\n",
                status_code=400,
            )
        comment = field("comment").strip()[:MAX_COMMENT]
        session.decide(item_id, choice, left, comment, field("ai_visible") == "1")
        return RedirectResponse(f"/?token={token}", status_code=303)

    async def api_stats(request: Request) -> JSONResponse:
        return JSONResponse(session.stats().to_dict())

    async def api_decisions(request: Request) -> JSONResponse:
        return JSONResponse([d.__dict__ for d in session.log.all()])

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/item/{item_id}", item_page),
            Route("/decide", decide, methods=["POST"]),
            Route("/api/stats", api_stats),
            Route("/api/decisions", api_decisions),
        ]
    )
    return TokenGate(app, token)
