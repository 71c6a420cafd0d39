"""The run store on a real SQLite file, and the caching backend wrapper over it."""

from __future__ import annotations

import sqlite3

import pytest

from rlaif.backends.base import Backend, ChoiceScores, Generation
from rlaif.backends.cached import CachedBackend
from rlaif.errors import RunError
from rlaif.store import MIGRATIONS, Store, call_key


class Counting(Backend):
    """Deterministic answers that count calls (logic test; the pipeline tests use the model)."""

    model_id = "counting"

    def __init__(self) -> None:
        self.calls = 0

    def generate(self, messages, *, max_tokens=256, temperature=0.0, seed=0) -> Generation:
        self.calls += 1
        return Generation(f"reply to {messages[-1]['content']} #{seed}", 7, 3)

    def choice_logprobs(self, messages, choices) -> ChoiceScores:
        self.calls += 1
        return ChoiceScores("logprobs", {c: -1.0 - i for i, c in enumerate(choices)}, "", 11, 0, 5)


def test_store_round_trip_and_persistence(tmp_path):
    path = tmp_path / "store.sqlite"
    store = Store(path)
    key = call_key("m", "generate", "1", {"messages": [{"role": "user", "content": "hi"}]})
    assert store.get(key) is None
    store.put(key, "generate", "m", {"text": "hello"})
    store.put(key, "generate", "m", {"text": "ignored"})  # a key is written once
    store.set_meta("identity", "x")
    store.close()
    again = Store(path)
    assert again.get(key) == {"text": "hello"}
    assert again.get_meta("identity") == "x"
    assert again.count() == 1 and again.count("generate") == 1
    version = again.db.execute("PRAGMA user_version").fetchone()[0]
    assert version == len(MIGRATIONS)


def test_call_key_depends_on_every_part():
    base = {"messages": [{"role": "user", "content": "hi"}], "temperature": 0.0}
    keys = {
        call_key("m", "generate", "1", base),
        call_key("m2", "generate", "1", base),
        call_key("m", "choice_logprobs", "1", base),
        call_key("m", "generate", "2", base),
        call_key("m", "generate", "1", {**base, "temperature": 0.5}),
    }
    assert len(keys) == 5
    assert call_key("m", "generate", "1", dict(reversed(base.items()))) in keys


def test_foreign_and_newer_files_are_refused(tmp_path):
    foreign = tmp_path / "foreign.sqlite"
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    with pytest.raises(RunError, match="not an rlaif store"):
        Store(foreign)
    newer = tmp_path / "newer.sqlite"
    db = sqlite3.connect(newer)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(RunError, match="newer rlaif"):
        Store(newer)
    junk = tmp_path / "junk.sqlite"
    junk.write_text("this is not a database at all, just text" * 20)
    with pytest.raises(RunError, match="not a usable rlaif store"):
        Store(junk)


def test_cached_backend_counts_distinct_calls(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    inner = Counting()
    cached = CachedBackend(inner, store)
    msgs = [{"role": "user", "content": "q"}]
    first = cached.generate(msgs, temperature=0.8, seed=1)
    assert cached.generate(msgs, temperature=0.8, seed=1) == first
    cached.generate(msgs, temperature=0.8, seed=2)
    scores = cached.choice_logprobs(msgs, ("A", "B"))
    assert scores.cached_tokens == 5
    assert (inner.calls, cached.model_calls, cached.cached_calls) == (3, 3, 0)
    assert cached.prompt_tokens_total == 7 + 7 + 11

    # a new process (a new wrapper) over the same store makes no model call
    again = CachedBackend(Counting(), store)
    assert again.generate(msgs, temperature=0.8, seed=1) == first
    again.generate(msgs, temperature=0.8, seed=1)
    hit = again.choice_logprobs(msgs, ("A", "B"))
    assert hit.logprobs == scores.logprobs and hit.cached_tokens == 0
    assert (again.inner.calls, again.model_calls, again.cached_calls) == (0, 0, 2)
    # greedy decoding does not depend on the seed, so neither does its key
    cached.generate(msgs, temperature=0.0, seed=1)
    assert again.generate(msgs, temperature=0.0, seed=7).text.endswith("#1")
