"""The logic of `rlaif review` on a run directory written by the run's own record writer:
queue order, decisions in a real SQLite store, the live numbers, the merged export.
(The browser and the real CLI on a real run are in test_review.py.)"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from pathlib import Path

import pytest

from rlaif.compare import Preference
from rlaif.constitution import load_constitution
from rlaif.errors import InputError, RunError
from rlaif.pipeline.outputs import preference_record
from rlaif.prompts import Prompt
from rlaif.review.app import ReviewSession, create_app
from rlaif.review.decisions import DecisionLog, winner_of
from rlaif.review.export import export_preferences
from rlaif.review.queue import as_text, load_items, make_item_id
from rlaif.review.stats import review_stats
from rlaif.stats import wilson_interval
from rlaif.store import MIGRATIONS, Store
from rlaif.train.data import read_preferences
from rlaif.train.dpo import oriented

MIN_MARGIN = 0.01
RATIONALES = ["Gamma <answers> directly.", "Delta hedges."]
HASH = load_constitution("default").hash


def _pref(p_ab: float | None, p_ba: float | None, rationales: list[str]) -> Preference:
    readable = p_ab is not None and p_ba is not None
    return Preference(
        p_a=(p_ab + p_ba) / 2 if readable else None,
        p_a_order_ab=p_ab,
        p_a_order_ba=p_ba,
        position_consistent=((p_ab >= 0.5) == (p_ba >= 0.5)) if readable else None,
        principle_id="helpful",
        constitution_hash=HASH,
        judge="smollm2",
        method="logprobs",
        mode="pairwise",
        cot=bool(rationales),
        rationales=rationales,
    )


# name: (prompt, a, b, p(A better) with A first, p(A better) with B first)
PAIRS = {
    "P1": (Prompt("p1", "q1"), "alpha", "beta", 0.9, 0.8),  # 0.85, consistent
    "P2": (Prompt("p2", "q2"), "gamma", "delta", 0.7, 0.44),  # 0.57, inconsistent
    "P3": (Prompt("p3", "q3"), "eps", "zeta", 0.35, 0.43),  # 0.39, consistent: zeta chosen
    "P4": (Prompt("p4", "q4"), "eta", "theta", 0.503, 0.5),  # 0.5015: low margin
    "P5": (Prompt("p5", "q5"), "iota", "kappa", None, None),  # unreadable
    "P6": (  # chat prompt, 0.42, inconsistent
        Prompt("p6", "q6", messages=(("system", "Be brief."), ("user", "q6"))),
        "lambda",
        "mu",
        0.6,
        0.24,
    ),
}


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A finished run directory with the six pairs above, written as `rlaif run` writes them."""
    out = tmp_path / "run"
    out.mkdir()
    files: dict[str, list[str]] = {}
    for prompt, a, b, p_ab, p_ba in PAIRS.values():
        rationales = RATIONALES if prompt.id == "p2" else []
        name, record = preference_record(
            prompt, a, b, _pref(p_ab, p_ba, rationales), policy="smollm2", pair_type="responses"
        )
        if name == "preferences.jsonl" and abs(record["p_chosen"] - 0.5) < MIN_MARGIN:
            name = "low_margin.jsonl"
        files.setdefault(name, []).append(json.dumps(record))
    for name in ("preferences.jsonl", "low_margin.jsonl", "unreadable.jsonl"):
        (out / name).write_text("".join(line + "\n" for line in files.get(name, [])))
    (out / "run.json").write_text(json.dumps({"constitution": {"source": "default", "hash": HASH}}))
    Store(out / "store.sqlite").close()
    return out


def _ids() -> dict[str, str]:
    return {
        name: make_item_id(prompt.for_record(), _resp(prompt, a), _resp(prompt, b))
        for name, (prompt, a, b, *_) in PAIRS.items()
    }


def _resp(prompt: Prompt, text: str):
    return [{"role": "assistant", "content": text}] if prompt.is_chat else text


def test_queue_order_least_certain_first(run_dir):
    items = load_items(run_dir)
    ids = _ids()
    # unreadable, then inconsistent by |p - 0.5| (0.07, 0.08), then consistent (0.0015, 0.11, 0.35)
    assert [i.item_id for i in items] == [ids[n] for n in ("P5", "P2", "P6", "P4", "P3", "P1")]
    assert [i.source for i in items] == [
        "unreadable",
        "preferences",
        "preferences",
        "low_margin",
        "preferences",
        "preferences",
    ]


def test_item_sides_are_canonical_and_probabilities_follow_them(run_dir):
    items = {i.item_id: i for i in load_items(run_dir)}
    p3 = items[_ids()["P3"]]
    # the run chose zeta; the canonical first response is eps (sorted), whatever the label
    assert as_text(p3.record["chosen"]) == "zeta"  # one assistant message
    assert (as_text(p3.first), as_text(p3.second)) == ("eps", "zeta")
    assert p3.p_first == pytest.approx(0.39)
    assert p3.ai_winner == "second"
    assert p3.p_first_shown_first == pytest.approx(0.35)  # eps shown first
    assert p3.p_first_shown_second == pytest.approx(0.43)
    p6 = items[_ids()["P6"]]
    assert as_text(p6.prompt) == "system: Be brief.\n\nuser: q6"
    assert {as_text(p6.first), as_text(p6.second)} == {"lambda", "mu"}
    assert items[_ids()["P5"]].p_first is None and items[_ids()["P5"]].ai_winner is None
    assert make_item_id("q", "x", "y") == make_item_id("q", "y", "x")
    assert make_item_id("q", "x", "y") != make_item_id("q2", "x", "y")


def test_bad_run_files_are_named(run_dir, tmp_path):
    path = run_dir / "preferences.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "{not json", *lines[1:]]) + "\n")
    with pytest.raises(InputError, match=r"preferences\.jsonl:2: not valid JSON"):
        load_items(run_dir)
    path.write_text(json.dumps({"prompt": "q", "chosen": "a", "p_chosen": 0.7}) + "\n")
    with pytest.raises(InputError, match=r"preferences\.jsonl:1: missing field 'rejected'"):
        load_items(run_dir)
    (run_dir / "run.json").unlink()
    with pytest.raises(RunError, match="not a finished rlaif run"):
        load_items(run_dir)
    with pytest.raises(RunError, match="no such directory"):
        load_items(tmp_path / "nowhere")


def test_winner_of_maps_screen_sides_to_canonical_ones():
    assert winner_of("left", "first") == "first"
    assert winner_of("left", "second") == "second"
    assert winner_of("right", "first") == "second"
    assert winner_of("right", "second") == "first"
    assert winner_of("tie", "second") == "tie"
    assert winner_of("skip", "first") is None
    with pytest.raises(ValueError, match="choice must be one of"):
        winner_of("up", "first")
    with pytest.raises(ValueError, match="left must be one of"):
        winner_of("left", "third")


def test_decisions_persist_append_only_and_latest_counts(run_dir):
    ids = _ids()
    log = DecisionLog.open(run_dir)
    log.record(ids["P1"], "ann", "skip", "first")
    log.record(ids["P1"], "ann", "right", "first", comment="second look", shown={"x": 1})
    log.close()
    log = DecisionLog.open(run_dir)  # a new connection: everything was committed
    try:
        assert [d.choice for d in log.all()] == ["skip", "right"]
        latest = log.latest()[ids["P1"]]
        assert (latest.reviewer, latest.winner, latest.comment) == ("ann", "second", "second look")
        assert latest.shown == {"left": "first", "x": 1}
    finally:
        log.close()


def test_an_older_store_gains_the_reviews_table(tmp_path):
    path = tmp_path / "store.sqlite"
    db = sqlite3.connect(path)
    MIGRATIONS[0](db)
    db.execute("INSERT INTO calls VALUES ('k', 'generate', 'm', '{}', 0)")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    store = Store(path)
    try:
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert store.get("k") == {}
        assert store.db.execute("SELECT COUNT(*) FROM reviews").fetchone()[0] == 0
    finally:
        store.close()


def test_wilson_interval():
    lo, hi = wilson_interval(8, 10)
    assert (round(lo, 3), round(hi, 3)) == (0.490, 0.943)
    assert wilson_interval(0, 0) is None
    lo, hi = wilson_interval(0, 5)
    assert lo == 0.0 and 0 < hi < 0.5


def _decide(run_dir: Path, choices: dict[str, str]) -> None:
    """Record, for each named pair, a human pick: 'ai' (the judge's side), 'other', 'tie',
    'skip', or 'first' (for unreadable pairs)."""
    items = {i.item_id: i for i in load_items(run_dir)}
    log = DecisionLog.open(run_dir)
    try:
        for name, pick in choices.items():
            item = items[_ids()[name]]
            if pick in ("tie", "skip"):
                log.record(item.item_id, "ann", pick, "first")
                continue
            side = {"ai": item.ai_winner, "first": "first"}.get(pick)
            if pick == "other":
                side = "first" if item.ai_winner == "second" else "second"
            # show the winner on the right, so the screen side differs from the canonical one
            left = "second" if side == "first" else "first"
            log.record(item.item_id, "ann", "right", left)
    finally:
        log.close()


def test_live_numbers(run_dir):
    _decide(run_dir, {"P2": "ai", "P3": "other", "P4": "ai", "P5": "first", "P1": "tie"})
    log = DecisionLog.open(run_dir)
    try:
        stats = review_stats(load_items(run_dir), log.latest())
    finally:
        log.close()
    assert (stats.items, stats.reviewed, stats.skipped, stats.ties) == (6, 5, 0, 1)
    assert (stats.compared, stats.agree) == (3, 2)  # P2, P3, P4 (P5 has no AI label)
    assert stats.agreement == pytest.approx(2 / 3)
    assert stats.agreement_ci == pytest.approx(wilson_interval(2, 3))
    assert (stats.dataset, stats.flips_observed, stats.added_by_humans) == (4, 1, 2)
    # dataset = P1 (tie: no flip), P2 (0), P3 (1), P6 unreviewed in P2's band (rate 0/1)
    assert stats.flip_share_estimate == pytest.approx(1 / 4)


def test_flip_estimate_borrows_from_the_nearest_reviewed_band(run_dir):
    _decide(run_dir, {"P3": "other"})  # only band 0.1-0.2 is reviewed: it flipped
    log = DecisionLog.open(run_dir)
    try:
        stats = review_stats(load_items(run_dir), log.latest())
    finally:
        log.close()
    assert stats.flips_observed == 1
    assert stats.flip_share_estimate == pytest.approx(1.0)
    assert review_stats(load_items(run_dir), {}).flip_share_estimate is None


def _texts(record: dict) -> dict:
    return {**record, **{k: as_text(record[k]) for k in ("chosen", "rejected")}}


def test_export_merges_human_decisions(run_dir, tmp_path):
    _decide(run_dir, {"P1": "tie", "P2": "ai", "P3": "other", "P4": "ai", "P5": "first"})
    out = tmp_path / "new" / "merged.jsonl"
    result = export_preferences(run_dir, out)
    assert result.counts == {"ai": 1, "human": 3, "ai+human agree": 1}
    assert (result.dropped_ties, result.left_out) == (1, 0)
    assert not out.with_name("merged.jsonl.tmp").exists()
    records = [json.loads(line) for line in out.read_text().splitlines()]
    # text prompts are written in the conversational form: look them up by their text
    by_prompt = {json.dumps(as_text(r["prompt"])): _texts(r) for r in records}
    assert json.dumps("q1") not in by_prompt  # the tie
    p2 = by_prompt[json.dumps("q2")]
    assert (p2["label_source"], p2["chosen"], p2["p_chosen"]) == ("ai+human agree", "gamma", 1.0)
    assert p2["p_chosen_ai"] == pytest.approx(0.57)
    p3 = by_prompt[json.dumps("q3")]
    assert (p3["label_source"], p3["chosen"], p3["rejected"]) == ("human", "eps", "zeta")
    assert p3["p_chosen"] == 1.0 and p3["p_chosen_ai"] == pytest.approx(0.39)
    assert p3["p_chosen_ai_shown_first"] == pytest.approx(0.35)
    assert p3["p_chosen_ai_shown_second"] == pytest.approx(0.43)
    assert p3["human"]["reviewer"] == "ann" and p3["principle_id"] == "helpful"
    p4 = by_prompt[json.dumps("q4")]
    # the reviewer took the low-margin label's side: still a human label, not an agreement
    assert (p4["label_source"], p4["ai_source_file"]) == ("human", "low_margin.jsonl")
    p5 = by_prompt[json.dumps("q5")]
    assert (p5["label_source"], p5["chosen"], p5["p_chosen"]) == ("human", "iota", 1.0)
    assert p5["p_chosen_ai"] is None
    assert "response_a" not in p5
    chat = [r for r in records if isinstance(r["prompt"], list) and len(r["prompt"]) > 1]
    assert len(chat) == 1 and chat[0]["label_source"] == "ai"
    # training reads the human's side as the label, at full confidence
    trained = {json.dumps(as_text(x.prompt)): x for x in map(oriented, read_preferences(out))}
    q3, q5 = trained[json.dumps("q3")], trained[json.dumps("q5")]
    assert (as_text(q3.chosen), q3.p_chosen) == ("eps", 1.0)
    assert as_text(q5.chosen) == "iota"
    original = json.loads((run_dir / "preferences.jsonl").read_text().splitlines()[-1])
    assert chat[0] == {**original, "label_source": "ai"}


def test_export_without_decisions_is_the_run_and_can_add_low_margin(run_dir, tmp_path):
    _decide(run_dir, {"P2": "skip", "P4": "skip"})  # a skip is no human label
    plain = export_preferences(run_dir, tmp_path / "a.jsonl")
    assert plain.counts == {"ai": 4, "human": 0, "ai+human agree": 0}
    assert plain.left_out == 2  # the unreviewed low-margin and unreadable pairs
    run_records = [json.loads(x) for x in (run_dir / "preferences.jsonl").read_text().splitlines()]
    exported = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert exported == [{**r, "label_source": "ai"} for r in run_records]
    wide = export_preferences(run_dir, tmp_path / "b.jsonl", include_low_margin=True)
    assert wide.counts["ai"] == 5 and wide.left_out == 1


def _asgi(app, method: str, path: str, query: str = "", body: bytes = b"") -> tuple[int, str]:
    """One HTTP request through an ASGI app in-process: (status, body text)."""
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": [(b"content-type", b"application/x-www-form-urlencoded")],
        "scheme": "http",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 1),
    }
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    text = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, text.decode()


@pytest.mark.parametrize("blind", [False, True])
def test_page_shows_principle_probability_and_rationales_unless_blind(run_dir, blind):
    session = ReviewSession(run_dir, "ann", blind=blind)
    try:
        app = create_app(session, "tok")
        assert _asgi(app, "GET", "/item/" + _ids()["P2"])[0] == 403
        status, html = _asgi(app, "GET", "/item/" + _ids()["P2"], "token=tok")
        assert status == 200
        assert "Which response answers the user" in html  # the principle's question
        assert "<answers>" not in html  # the judge's text is escaped
        assert ("p(left better)" in html) is not blind
        assert ("Gamma &lt;answers&gt; directly." in html) is not blind
        assert ("Delta hedges." in html) is not blind
        left = re.search(r'data-left="(first|second)"', html).group(1)
        form = f"item_id={_ids()['P2']}&choice=left&left={left}&ai_visible={int(not blind)}"
        status, _ = _asgi(app, "POST", "/decide", "token=tok", form.encode())
        assert status == 303
        assert _asgi(app, "POST", "/decide", "token=tok", b"item_id=nope&choice=left")[0] == 400
        decision = session.log.latest()[_ids()["P2"]]
        assert decision.shown["ai_visible"] is not blind
        assert decision.shown["left"] == left
        assert (decision.shown["p_left"] is None) is blind
    finally:
        session.close()
