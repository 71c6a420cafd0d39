"""Responses cut off at the token limit are marked, from every backend up to the run's records.

The embedded model through llama.cpp, the llama.cpp OpenAI-compatible server on 127.0.0.1, a
real SQLite store, and ``rlaif run`` in a subprocess; a fake transport only for a server that
does not say why it stopped.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from test_openai_backend import FakeServer, _completion
from tiny_model import tiny_checkpoint

from rlaif.backends import load_backend
from rlaif.backends.cached import CachedBackend
from rlaif.critique import revise
from rlaif.store import Store
from rlaif.synth import sample_responses

RLAIF = str(Path(sys.executable).with_name("rlaif"))
LONG = "Write a long, detailed essay on the history of the Roman Empire."
SHORT = "Reply with one word: what colour is the sky on a clear day?"
#: comfortably more than the embedded model writes for SHORT (about ten tokens)
ROOM = 200


def test_embedded_model_flags_a_cut_off_reply_and_not_a_finished_one(smollm2):
    [cut] = sample_responses(smollm2, LONG, 1, temperature=0.0, max_tokens=5)
    assert cut.text and cut.truncated is True
    gen = smollm2.generate([{"role": "user", "content": LONG}], max_tokens=5)
    assert gen.finish_reason == "length" and gen.completion_tokens == 5
    [whole] = sample_responses(smollm2, SHORT, 1, temperature=0.0, max_tokens=ROOM)
    assert whole.text and whole.truncated is False
    gen = smollm2.generate([{"role": "user", "content": SHORT}], max_tokens=ROOM)
    assert gen.finish_reason == "stop" and gen.completion_tokens < ROOM


def test_openai_server_reports_length(llama_server):
    served = load_backend("openai:smollm2@" + llama_server)
    messages = [{"role": "user", "content": LONG}]
    cut = served.generate(messages, max_tokens=5)
    assert cut.finish_reason == "length" and cut.truncated is True
    whole = served.generate([{"role": "user", "content": SHORT}], max_tokens=ROOM)
    assert whole.finish_reason == "stop" and whole.truncated is False
    [response] = sample_responses(served, LONG, 1, temperature=0.0, max_tokens=5)
    assert response.truncated is True


def test_a_server_that_does_not_say_why_it_stopped_is_unknown_not_stop():
    def reply(body):
        payload = _completion("Paris")
        payload["choices"][0]["finish_reason"] = None
        return 200, payload

    gen = FakeServer(reply).backend().generate([{"role": "user", "content": "Capital?"}])
    assert gen.finish_reason is None and gen.truncated is None


def test_transformers_backend_flags_a_cut_off_reply(tmp_path):
    backend = load_backend(f"hf:{tiny_checkpoint(tmp_path / 'tiny')}")
    # a random one-layer model does not pick its end-of-turn token among 49k in 6 tries
    gen = backend.generate([{"role": "user", "content": LONG}], max_tokens=6)
    assert gen.completion_tokens == 6
    assert gen.finish_reason == "length" and gen.truncated is True


def test_stored_generation_without_finish_reason_is_unknown_and_still_cached(smollm2, tmp_path):
    messages = [{"role": "user", "content": LONG}]
    store = Store(tmp_path / "store.sqlite")
    first = CachedBackend(smollm2, store).generate(messages, max_tokens=5)
    assert first.finish_reason == "length"
    store.close()
    # a result stored before finish reasons were recorded: the same row without the field
    db = sqlite3.connect(tmp_path / "store.sqlite")
    [(key, result)] = db.execute("SELECT key, result FROM calls").fetchall()
    old = json.loads(result)
    del old["finish_reason"]
    db.execute("UPDATE calls SET result = ? WHERE key = ?", (json.dumps(old), key))
    db.commit()
    db.close()
    store = Store(tmp_path / "store.sqlite")
    cached = CachedBackend(smollm2, store)
    again = cached.generate(messages, max_tokens=5)
    store.close()
    assert (cached.model_calls, cached.cached_calls) == (0, 1)  # same key: no model call
    assert again.text == first.text
    assert again.finish_reason is None and again.truncated is None


def test_revision_rounds_carry_the_truncation_of_their_text(smollm2, constitution):
    rev = revise(
        smollm2,
        constitution,
        LONG,
        "Rome was founded in 753 BC.",
        rounds=1,
        max_tokens=5,
        critique_max_tokens=16,
        response_truncated=False,
    )
    record = rev.to_dict()
    assert rev.rounds[0].changed  # 5 tokens of a rewrite of a one-line answer
    assert record["truncated"] is True and record["rounds"][0]["truncated"] is True
    assert record["original_truncated"] is False


def _text(value: str | list[dict]) -> str:
    """A record's response: text, or the content of one assistant message."""
    return value if isinstance(value, str) else value[-1]["content"]


def _env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}


@pytest.mark.slow
def test_run_records_and_counts_cut_off_responses(tmp_path):
    out = tmp_path / "run"
    args = ["--limit", "2", "--n-responses", "2", "--revisions", "1", "--max-tokens", "12"]
    proc = subprocess.run(
        [RLAIF, "run", *args, "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    info = json.loads((out / "run.json").read_text())
    revisions = [json.loads(line) for line in (out / "revisions.jsonl").read_text().splitlines()]
    sft = [json.loads(line) for line in (out / "sft.jsonl").read_text().splitlines()]
    prefs = [
        json.loads(line)
        for name in ("preferences.jsonl", "low_margin.jsonl")
        for line in (out / name).read_text().splitlines()
    ]
    # one revisions.jsonl record per distinct response: its original is that response
    originals = [r["original_truncated"] for r in revisions]
    assert all(isinstance(t, bool) for t in originals)
    counted = info["truncated"]["responses"]
    assert counted == {"truncated": sum(originals), "total": len(revisions), "unknown": 0}
    assert counted["truncated"] > 0  # 12 tokens cut off the embedded model's answers
    assert all(isinstance(r["truncated"], bool) for r in sft)
    assert info["truncated"]["revisions"] == {
        "truncated": sum(r["truncated"] for r in sft),
        "total": len(sft),
        "unknown": 0,
    }
    assert prefs
    for rec in prefs:
        assert isinstance(rec["chosen_truncated"], bool)
        assert isinstance(rec["rejected_truncated"], bool)
    # each pair's flags are those of its two texts: responses, or a response and its revision
    of_response = {r["original"]: r["original_truncated"] for r in revisions}
    for rec in prefs:
        chosen, rejected = _text(rec["chosen"]), _text(rec["rejected"])
        flags = of_response
        if rec["pair_type"] == "revision":
            [rev] = [r for r in revisions if {r["original"], r["revision"]} == {chosen, rejected}]
            flags = {rev["original"]: rev["original_truncated"], rev["revision"]: rev["truncated"]}
        assert rec["chosen_truncated"] == flags[chosen]
        assert rec["rejected_truncated"] == flags[rejected]
    line = next(x for x in proc.stdout.splitlines() if "cut off at --max-tokens" in x)
    assert f"{counted['truncated']} of {counted['total']} responses" in line
