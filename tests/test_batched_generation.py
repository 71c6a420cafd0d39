"""Batched generation: the llama.cpp backend's ``generate_many`` on the real embedded model, the
store's answers to batched calls, grouped revisions, and ``rlaif run --batch-size``.

The property everything rests on: a batched reply equals the single-stream reply of the same
request, whatever else shares the batch. Reruns are then byte-identical, and the store keeps
one key for a call whichever path made it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlaif import templates
from rlaif.backends.base import Backend, ChoiceScores, GenerateRequest, Generation
from rlaif.backends.cached import CachedBackend
from rlaif.critique import revise, revise_many
from rlaif.store import Store

RLAIF = [sys.executable, "-m", "rlaif"]
DATA_FILES = ("preferences.jsonl", "low_margin.jsonl", "unreadable.jsonl", "sft.jsonl")


def _requests() -> list[GenerateRequest]:
    """Two sampled responses of one prompt, one of another, and a greedy critique-length call."""
    rain = templates.policy_messages("Write two sentences about rain.")
    sleep = templates.policy_messages("Give one tip for sleeping better.")
    return [
        GenerateRequest(rain, max_tokens=24, temperature=0.8, seed=0),
        GenerateRequest(rain, max_tokens=24, temperature=0.8, seed=1),
        GenerateRequest(sleep, max_tokens=24, temperature=0.8, seed=0),
        GenerateRequest(sleep, max_tokens=24, temperature=0.0),
    ]


@pytest.mark.slow
def test_batched_replies_equal_single_stream_and_reruns(smollm2):
    requests = _requests()
    single = [
        smollm2.generate(
            r.messages, max_tokens=r.max_tokens, temperature=r.temperature, seed=r.seed
        )
        for r in requests
    ]
    batched = smollm2.generate_many(requests)
    assert batched == single  # text, token counts and finish reason
    # the head the two prompts share (the chat template's system turn) is evaluated once
    distinct = {tuple(smollm2.prompt_tokens(r.messages)) for r in requests}
    head = len(os.path.commonprefix([list(p) for p in distinct]))
    assert head > 10
    assert smollm2._batcher.evaluated == sum(len(p) for p in distinct) - head
    assert smollm2.generate_many(requests) == batched  # a rerun is byte-identical
    # other members, another order: each reply still depends on its own request alone
    assert smollm2.generate_many(requests[::-1])[::-1] == batched
    assert smollm2.generate_many(requests[1:3]) == batched[1:3]
    assert {g.finish_reason for g in batched} <= {"stop", "length"}


@pytest.mark.slow
def test_a_prompt_that_extends_another_evaluates_its_own_tail_only(smollm2):
    rain = templates.policy_messages("Write two sentences about rain.")
    sleep = templates.policy_messages("Give one tip for sleeping better.")
    follow = [
        *rain,
        {"role": "assistant", "content": "Rain falls. It is wet."},
        {"role": "user", "content": "Now in one sentence."},
    ]
    requests = [
        GenerateRequest(m, max_tokens=16, temperature=0.8, seed=2) for m in (rain, sleep, follow)
    ]
    single = [
        smollm2.generate(r.messages, max_tokens=16, temperature=0.8, seed=2) for r in requests
    ]
    batched = smollm2.generate_many(requests)
    assert batched == single
    rain_ids, sleep_ids, follow_ids = (smollm2.prompt_tokens(r.messages) for r in requests)
    system = len(os.path.commonprefix([rain_ids, sleep_ids]))
    assert follow_ids[: len(rain_ids)] == rain_ids  # the conversation goes on from rain's prompt
    # rain whole; sleep after the system turn it shares with rain; the follow-up after rain's
    # whole prompt, the longest head it shares with a prompt evaluated before it
    expected = len(rain_ids) + len(sleep_ids) - system + len(follow_ids) - len(rain_ids)
    assert smollm2._batcher.evaluated == expected


@pytest.mark.slow
def test_one_request_takes_the_single_stream_path(smollm2, monkeypatch):
    request = _requests()[3]

    def no_batch(requests):
        raise AssertionError("one request must not be batched")

    monkeypatch.setattr(smollm2, "_decode_batch", no_batch)
    (gen,) = smollm2.generate_many([request])
    assert gen == smollm2.generate(request.messages, max_tokens=request.max_tokens)


class _Scripted(Backend):
    """A deterministic stand-in model: its reply is a hash of the messages; it logs calls."""

    model_id = "scripted"

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def _reply(self, messages, max_tokens: int, seed: int) -> Generation:
        digest = hashlib.sha256(repr((messages, seed)).encode()).hexdigest()[:12]
        return Generation(f"Improved response: {digest}", 10, 3, "stop")

    def generate(self, messages, *, max_tokens=256, temperature=0.0, seed=0) -> Generation:
        self.calls.append(("generate", 1))
        return self._reply(messages, max_tokens, seed)

    def generate_many(self, requests) -> list[Generation]:
        self.calls.append(("generate_many", len(requests)))
        return [self._reply(r.messages, r.max_tokens, r.seed) for r in requests]

    def choice_logprobs(self, messages, choices) -> ChoiceScores:
        raise NotImplementedError


def test_store_answers_stored_requests_and_batches_only_the_missing(tmp_path):
    inner = _Scripted()
    cached = CachedBackend(inner, Store(tmp_path / "store.sqlite"))
    requests = _requests()
    first = cached.generate(requests[1].messages, max_tokens=24, temperature=0.8, seed=1)
    assert inner.calls == [("generate", 1)]
    out = cached.generate_many(requests)
    assert inner.calls[1:] == [("generate_many", 3)]  # the stored one is not asked again
    assert out[1] == first
    assert cached.generate_many(requests) == out  # all stored now: no model call
    assert len(inner.calls) == 2
    assert (cached.model_calls, cached.cached_calls) == (4, 0)


def test_revise_many_makes_the_revisions_of_revise(constitution):
    items = [("Say hi.", "hi", None), ("Say bye.", "bye", True), ("Say hi.", "hello", False)]
    model = _Scripted()
    grouped = revise_many(model, constitution, items, rounds=2, seed=3, batch_size=8)
    one_by_one = [
        revise(model, constitution, p, r, rounds=2, seed=3, response_truncated=t)
        for p, r, t in items
    ]
    assert [g.to_dict() for g in grouped] == [o.to_dict() for o in one_by_one]
    # each round: one group of critiques, one of rewrites
    assert model.calls[:4] == [("generate_many", 3)] * 4


@pytest.mark.slow
def test_run_with_batches_writes_the_files_of_the_sequential_run(tmp_path):
    # A rule judge and no revisions: critiques (128 tokens each) made this test take 11-17 min
    # on a busy 2-core machine; revise_many's grouping is tested above against revise, and the
    # replies themselves against single-stream decoding.
    args = ["--limit", "2", "--n-responses", "2", "--revisions", "0", "--max-tokens", "16"]
    args += ["--judge", "rule:max_words=20"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    outputs = {}
    for size in ("1", "8"):
        out = tmp_path / f"batch-{size}"
        proc = subprocess.run(
            [*RLAIF, "run", *args, "--batch-size", size, "--out", str(out), "--quiet"],
            capture_output=True,
            text=True,
            timeout=900,
            env=env,
        )
        assert proc.returncode == 0, proc.stderr
        outputs[size] = {
            name: (out / name).read_bytes() for name in (*DATA_FILES, "revisions.jsonl")
        }
    assert outputs["8"] == outputs["1"]
    assert outputs["8"]["preferences.jsonl"] or outputs["8"]["low_margin.jsonl"]


def test_batch_size_option_is_documented_and_checked(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    help_text = subprocess.run(
        [*RLAIF, "run", "--help"], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert "--batch-size" in help_text
    bad = subprocess.run(
        [*RLAIF, "run", "--batch-size", "0", "--out", str(tmp_path / "x"), "--quiet"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert bad.returncode != 0
    assert not Path(tmp_path / "x" / "run.json").exists()
