"""Faults between the client and a real llama.cpp server (``tests/fault_proxy.py``): each fault is
retried to the right answer; a whole ``rlaif run`` through a proxy that fails 45% of requests
ends with the same files as a fault-free run; 401 and 400 stop the run and keep its work.

The policy is the embedded model in the run's process: a llama.cpp server's *sampled* text
depends on what it evaluated before (its KV cache), so only the judge's greedy log-probabilities
are compared across runs whose requests reach the server in different orders."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest
from fault_proxy import FAULTS, FaultProxy

from rlaif import templates
from rlaif.backends.openai_compat import OpenAIBackend
from rlaif.backends.ratelimit import RequestPolicy
from rlaif.errors import BackendError
from rlaif.pipeline.outputs import OUTPUT_FILES

PROMPTS = ["Give one tip for sleeping better."]
#: the client's timeout in a run through faults (the proxy hangs until the client gives up):
#: long enough for real replies of a busy 2-core machine, two requests queued at the server
RUN_TIMEOUT_S = 10
FAULT_RATE = 0.45
#: with this seed the first 10 requests hold 7 faults (every kind) and no prefix of 8 or more
#: requests holds fewer than 34% faults, however requests interleave
FAULT_SEED = 4
#: the failed attempt each fault causes, as the backend counts it
REASON = {
    "rate_limit": "HTTP 429",
    "server_error": "HTTP 500",
    "hang": "timeout",
    "malformed": "malformed reply",
    "cut": "connection",
}


@pytest.fixture(scope="module")
def proxy(llama_server):
    proxy = FaultProxy(llama_server).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def calm_proxy(proxy):
    """The proxy with no faults and no refusal."""
    proxy.reset(rate=0.0)
    proxy.refuse = None
    yield proxy
    proxy.reset(rate=0.0)
    proxy.refuse = None


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("faults") / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    return path


def rlaif_run(prompts_file, out, judge_url: str, *extra: str) -> subprocess.CompletedProcess:
    """``rlaif run`` in a subprocess: the embedded policy, the judge behind ``judge_url``."""
    cmd = [sys.executable, "-m", "rlaif", "run", "--prompts", str(prompts_file)]
    cmd += ["--policy", "smollm2", "--judge", f"openai:smollm2@{judge_url}"]
    cmd += ["--n-responses", "3", "--revisions", "0", "--max-tokens", "16"]
    cmd += ["--out", str(out), "--quiet", *extra]
    env = {**os.environ, "RLAIF_N_THREADS": os.environ.get("RLAIF_N_THREADS", "1")}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)


def stored_keys(run_dir) -> list[str]:
    with sqlite3.connect(run_dir / "store.sqlite") as db:
        return sorted(r[0] for r in db.execute("SELECT key FROM calls"))


@pytest.fixture(scope="module")
def baseline(proxy, prompts_file, tmp_path_factory):
    """A fault-free run through the proxy, one request at a time."""
    proxy.reset(rate=0.0)
    out = tmp_path_factory.mktemp("faults") / "baseline"
    result = rlaif_run(prompts_file, out, proxy.url, "--concurrency", "1")
    assert result.returncode == 0, result.stderr
    assert proxy.faulted == 0
    return out


def assert_same_outputs(run_dir, baseline_dir) -> None:
    for name in OUTPUT_FILES:
        got = (run_dir / name).read_bytes()
        assert got == (baseline_dir / name).read_bytes(), name
    prefs = (run_dir / "preferences.jsonl").read_text().splitlines()
    prefs += (run_dir / "low_margin.jsonl").read_text().splitlines()
    assert len(prefs) == 3  # the pairs of the prompt's 3 responses
    pairs = [
        (r["prompt_id"], json.dumps(r["chosen"]), json.dumps(r["rejected"]))
        for r in map(json.loads, prefs)
    ]
    assert len(set(pairs)) == len(pairs)


# -- each fault, one request ------------------------------------------------------------------
@pytest.mark.parametrize("kind", FAULTS)
def test_each_fault_is_retried_to_the_fault_free_answer(calm_proxy, llama_server, kind):
    policy = RequestPolicy(timeout=RUN_TIMEOUT_S, max_retries=10)
    messages = [{"role": "user", "content": f"Answer A or B. Which letter comes first? ({kind})"}]
    direct = OpenAIBackend("smollm2", llama_server).choice_logprobs(messages, templates.CHOICES)
    backend = OpenAIBackend("smollm2", calm_proxy.url, policy=policy)
    waits: list[float] = []
    backend._sleep = waits.append  # record the backoff instead of sleeping through it
    calm_proxy.fail_next(kind)
    scores = backend.choice_logprobs(messages, templates.CHOICES)
    assert scores == direct
    assert calm_proxy.counts[kind] == 1
    assert backend.retries[REASON[kind]] >= 1
    if kind == "rate_limit":
        assert 1.0 in waits  # the proxy's Retry-After: 1, honoured as it is
    else:
        assert all(0 < w <= policy.backoff_max for w in waits)


def test_retries_exhausted_stop_with_a_clear_error(calm_proxy):
    backend = OpenAIBackend("smollm2", calm_proxy.url, policy=RequestPolicy(max_retries=2))
    backend._sleep = lambda s: None
    for _ in range(3):
        calm_proxy.fail_next("server_error")
    with pytest.raises(BackendError, match="no usable reply after 3 attempts") as info:
        backend.generate([{"role": "user", "content": "Hi"}], max_tokens=4)
    assert "HTTP 500" in str(info.value) and "--max-retries" in str(info.value)
    assert calm_proxy.forwarded == 0


# -- whole runs ---------------------------------------------------------------------------------
def test_run_through_faults_matches_the_fault_free_run(proxy, baseline, prompts_file, tmp_path):
    proxy.reset(rate=FAULT_RATE, seed=FAULT_SEED)
    out = tmp_path / "faulty"
    result = rlaif_run(
        prompts_file,
        out,
        proxy.url,
        *("--concurrency", "2", "--timeout", str(RUN_TIMEOUT_S), "--max-retries", "30"),
    )
    counts = dict(proxy.counts)
    proxy.reset(rate=0.0)
    assert result.returncode == 0, result.stderr
    total = sum(counts.values())
    assert sum(counts.get(k, 0) for k in FAULTS) / total >= 0.3, counts
    assert all(counts.get(k, 0) >= 1 for k in FAULTS), counts
    # the same records, byte for byte; every call stored once, none lost, none added
    assert_same_outputs(out, baseline)
    assert stored_keys(out) == stored_keys(baseline)
    info = json.loads((out / "run.json").read_text())
    base_info = json.loads((baseline / "run.json").read_text())
    assert info["model_calls"] == base_info["model_calls"]
    assert info["labels"] == base_info["labels"] == 3
    retries = info["requests"]["retries"]
    assert sum(retries.values()) >= sum(counts.get(k, 0) for k in FAULTS), (retries, counts)
    assert base_info["requests"]["retries"] == {}


def test_refused_key_and_bad_request_stop_the_run_and_keep_its_work(
    calm_proxy, baseline, prompts_file, tmp_path
):
    out = tmp_path / "refused"
    calm_proxy.refuse, calm_proxy.refuse_after = 401, 3
    result = rlaif_run(prompts_file, out, calm_proxy.url, "--concurrency", "2")
    assert result.returncode == 1
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: ") and "401" in error and "OPENAI_API_KEY" in error, error
    assert "store.sqlite" in error and "rerun the same command" in error
    assert not (out / "run.json").exists() and not (out / "preferences.jsonl").exists()
    assert not list(out.glob("*.tmp"))
    kept = stored_keys(out)
    assert len(kept) == 3 + 3  # the policy's 3 responses, the 3 judge calls answered before 401

    calm_proxy.refuse, calm_proxy.refuse_after = 400, 0
    result = rlaif_run(prompts_file, out, calm_proxy.url)
    assert result.returncode == 1
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: ") and "refused the request" in error, error
    assert stored_keys(out) == kept

    calm_proxy.refuse = None
    result = rlaif_run(prompts_file, out, calm_proxy.url)
    assert result.returncode == 0, result.stderr
    assert_same_outputs(out, baseline)
    assert stored_keys(out) == stored_keys(baseline)
    info = json.loads((out / "run.json").read_text())
    assert info["model_calls"] == len(stored_keys(baseline)) - len(kept)
