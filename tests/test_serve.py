"""``rlaif serve``: the real CLI serving a judge on 127.0.0.1 in a subprocess.

OpenRLHF's request and response shapes as its client sends and reads them; rewards equal to
the in-process judge's (rule judge and the embedded model); a cut-off answer failing a length
rule or check over HTTP as in process; a group's unreadable pairs counted; tokens, 413,
deadlines and failed items; a bounded load test; kill -9 under load, then a restarted server
answering from its store, whose in-memory keys stay bounded; the TRL client inside a 2-step
GRPO run.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from test_openai_backend import _completion

import rlaif
from rlaif.backends.base import Backend, ChoiceScores, Generation
from rlaif.backends.cached import CachedBackend
from rlaif.compare import Judge, RuleJudge
from rlaif.constitution import load_constitution
from rlaif.rewards import RewardJudge, group_pairs
from rlaif.rules import TrainingReward, load_score_function
from rlaif.serve.openrlhf import split_query
from rlaif.serve.service import SEEN_LIMIT, JudgeService, ServeSettings
from rlaif.store import Store
from rlaif.train.judge_reward import GroupJudgeReward

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS), os.environ.get("PYTHONPATH", "")]),
    "RLAIF_N_THREADS": os.environ.get("RLAIF_N_THREADS", "1"),
}
START_TIMEOUT_S = 90.0
RULE = "rule:words=3-12"
CHATML = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
ITEMS = [
    ("What is the capital of France?", "The capital of France is Paris."),
    ("What is the capital of France?", "Paris"),
    ("Name a prime number.", "Seven is a prime number, and so is eleven, and so is thirteen."),
    ("Say hello.", "Hello! How can I help you today?"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running ``rlaif serve`` subprocess; its output goes to a file (read by ``log``)."""

    def __init__(self, args: list[str], out: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = out.with_suffix(".log")
        self.args = [*args, "--out", str(out), "--port", str(self.port)]
        self.proc: subprocess.Popen | None = None

    def start(self) -> Server:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "rlaif", "serve", *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=ENV,
                cwd=TESTS,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log()
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if json.loads(r.read()) == {"status": "ok"}:
                        return self
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"server did not answer in {START_TIMEOUT_S} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@contextmanager
def serving(tmp_path: Path, *args: str, name: str = "serve") -> Iterator[Server]:
    server = Server(list(args), tmp_path / name).start()
    try:
        yield server
    finally:
        server.stop()


def post(url: str, body: object, headers: dict | None = None, timeout: float = 60) -> tuple:
    """(status, JSON reply) of a POST sent as OpenRLHF's client sends it: JSON, no other header."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def openrlhf_body(items: list[tuple[str, str]]) -> dict:
    """What OpenRLHF's remote_rm_fn posts: templated prompt + response, the prompts, labels."""
    prompts = [CHATML.format(p) for p, _ in items]
    queries = [CHATML.format(p) + r + "<|im_end|>" for p, r in items]
    return {"query": queries, "prompts": prompts, "labels": [""] * len(items)}


def metrics(server: Server, **params: str) -> dict:
    query = "?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else ""
    with urllib.request.urlopen(server.url + "/metrics" + query, timeout=10) as r:
        return json.loads(r.read())


# -- request reading (no server) --------------------------------------------------------------
def test_a_query_is_split_from_its_prompt_or_at_the_assistant_turn():
    prompt = CHATML.format("Hi?")
    assert split_query("<s>" + prompt + "Hello.<|im_end|>", prompt).response == "Hello."
    padded = "<|endoftext|>" * 5 + prompt + "Hello.<|im_end|>\n" + "<|endoftext|>" * 3
    assert split_query(padded, prompt).response == "Hello."  # OpenRLHF's padded sequences
    assert split_query("Say: " + prompt + "Hello.", prompt).error  # text before the prompt
    item = split_query(prompt + "Hello.<|im_end|>", None)
    assert (item.prompt, item.response, item.error) == ("Hi?", "Hello.", "")
    assert split_query("something else entirely", prompt).error  # never guessed
    assert split_query("plain text, no template", None).error


def test_large_groups_meet_a_fixed_number_of_others():
    assert len(group_pairs(8)) == 28  # every pair up to 8
    pairs = group_pairs(20, seed=0, key="p")
    assert len(pairs) == 20 * 4 and len(set(pairs)) == len(pairs)
    meets = [sum(i in pair for pair in pairs) for i in range(20)]
    assert meets == [8] * 20


# -- the rule judge over HTTP -----------------------------------------------------------------
def test_openrlhf_shapes_and_rewards_equal_to_the_in_process_judge(tmp_path):
    rule = RuleJudge(RULE)
    expected = [rule.score(p, r).score for p, r in ITEMS]
    assert sorted(set(expected)) == [0.0, 1.0]  # the items separate, so equality means something
    with serving(tmp_path, "--judge", RULE) as server:
        status, reply = post(server.url + "/get_reward", openrlhf_body(ITEMS))
        assert status == 200
        assert reply["rewards"] == expected and reply["scores"] == expected
        assert reply["failed"] == []
        # an older client sends only the query; a query without its prompt is failed, not 0
        body = openrlhf_body(ITEMS)
        body["query"][1] = "unrelated text"
        status, reply = post(server.url + "/get_reward", {"query": body["query"]})
        assert status == 200 and reply["failed"] == [1] and reply["rewards"][1] is None
        assert [r for i, r in enumerate(reply["rewards"]) if i != 1] == [
            e for i, e in enumerate(expected) if i != 1
        ]
        # the group endpoint: mean probability of beating the others, from the same judge
        responses = [r for _, r in ITEMS]
        status, reply = post(server.url + "/group_reward", {"prompt": "Q?", "responses": responses})
        in_process = RewardJudge(RULE, load_constitution("default")).score_group("Q?", responses)
        assert status == 200 and reply["rewards"] == [r.reward for r in in_process]
        by_hand = [
            sum(rule.compare("Q?", a, b).p_a for j, b in enumerate(responses) if j != i) / 3
            for i, a in enumerate(responses)
        ]
        assert reply["rewards"] == pytest.approx(by_hand)
        status, reply = post(server.url + "/group_reward", {"prompt": "Q?", "responses": ["x"]})
        assert status == 400
        counted = metrics(server)
        assert counted["requests"] == 3 and counted["items"] == 12
        assert counted["failed_items"] == 1 and counted["rejected_requests"] == 1


def _chat(role: str, text: str) -> list[dict]:
    return [{"role": role, "content": text}]


def test_a_cut_off_answer_fails_a_length_rule_over_http_as_in_process(tmp_path):
    prompts = [_chat("user", "Hi")] * 2
    completions = [_chat("assistant", "one two three four")] * 2  # 4 words: within 3-12
    # the first stopped at the limit (4 tokens, no end token); the second ended (token 0)
    ids = [[5, 6, 7, 8], [5, 6, 0]]
    in_process = TrainingReward(load_score_function(RULE), max_completion_length=4, eos_token_id=0)
    assert in_process(prompts, completions, completion_ids=ids) == [0.0, 1.0]
    assert in_process(prompts, completions) == [1.0, 1.0]  # unknown: read as not cut
    in_group = GroupJudgeReward(RULE, load_constitution("default"), max_completion_length=4)
    in_group.eos_token_id = 0
    with serving(tmp_path, "--judge", RULE) as server:
        remote = rlaif.remote_reward(server.url, max_completion_length=4, eos_token_id=0)
        assert remote(prompts, completions, completion_ids=ids) == [0.0, 1.0]
        assert remote(prompts, completions) == [1.0, 1.0]  # no ids: nothing is sent
        group = rlaif.remote_reward(server.url, group=True, max_completion_length=4)
        group.eos_token_id = 0  # as rlaif train grpo sets it from the tokenizer
        served = group(prompts, completions, completion_ids=ids)
        assert served == in_group(prompts, completions, completion_ids=ids)
        assert served[0] < 0.5 < served[1]
        # OpenRLHF's form carries the flags too; absent or null, a flag is unknown
        body = {**openrlhf_body([ITEMS[0]] * 3), "truncated": [True, False, None]}
        status, reply = post(server.url + "/get_reward", body)
        assert status == 200 and reply["rewards"] == [0.0, 1.0, 1.0]
        for bad in ([True], ["yes", False, None], True):
            status, reply = post(server.url + "/get_reward", {**body, "truncated": bad})
            assert status == 400 and "truncated" in reply["error"]


class _FakeModel(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat endpoint: A/B log-probabilities, none readable for a message
    holding GARBLED."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = json.dumps(body["messages"])
        top = [("Hmm", -0.1)] if "GARBLED" in text else [("A", -0.4), ("B", -1.1)]
        reply = _completion(top[0][0], top)
        reply["choices"][0]["finish_reason"] = "length"
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def fake_model() -> Iterator[str]:
    """The judge string of a fake OpenAI-compatible model on 127.0.0.1."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _FakeModel)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"openai:fake@http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_group_reply_counts_the_pairs_it_could_not_read(tmp_path):
    responses = ["Paris.", "Lyon.", "GARBLED"]
    with fake_model() as judge, serving(tmp_path, "--judge", judge) as server:
        want = RewardJudge(judge, load_constitution("default")).judge_group("Q?", responses)
        assert want.failed_pairs == [(0, 2), (1, 2)]
        status, reply = post(server.url + "/group_reward", {"prompt": "Q?", "responses": responses})
        assert status == 200
        assert reply["rewards"] == [item.reward for item in want.items]
        assert reply["rewards"][2] is None and reply["failed"] == [2]
        assert reply["pairs"] == 3 and reply["failed_pairs"] == 2
        assert reply["failed_pair_indices"] == [[0, 2], [1, 2]]
        assert "no readable pair" in reply["errors"]["2"]
        post(server.url + "/group_reward", {"prompt": "Q?", "responses": responses[:2]})
        counted = metrics(server)
    assert counted["pairs"] == 4 and counted["failed_pairs"] == 2
    assert counted["failed_items"] == 1 and counted["model_calls"] == 6  # 3 pairs x 2 orders


class _Numbered(Backend):
    """A model that answers each message by its number, counting its calls."""

    model_id = "numbered"

    def __init__(self) -> None:
        self.calls = 0

    def generate(self, messages, *, max_tokens=256, temperature=0.0, seed=0) -> Generation:
        raise NotImplementedError

    def choice_logprobs(self, messages, choices: Sequence[str]) -> ChoiceScores:
        self.calls += 1
        return ChoiceScores("logprobs", {c: -float(k) for k, c in enumerate(choices)}, "", 3)


def test_the_store_wrapper_keeps_a_bounded_number_of_keys_and_every_call(tmp_path):
    asks = [[{"role": "user", "content": f"question {k}"}] for k in range(50)]
    model = _Numbered()
    cached = CachedBackend(model, Store(tmp_path / "store.sqlite"), seen_limit=8)
    first = [cached.choice_logprobs(m, ("Yes", "No")) for m in asks]
    assert model.calls == 50 and len(cached._seen) == 8
    assert [cached.choice_logprobs(m, ("Yes", "No")) for m in asks] == [
        ChoiceScores(**{**vars(s), "cached_tokens": 0}) for s in first
    ]
    assert model.calls == 50 and len(cached._seen) == 8  # a repeat costs no model call
    restarted = CachedBackend(_Numbered(), Store(tmp_path / "store.sqlite"), seen_limit=8)
    assert [restarted.choice_logprobs(m, ("Yes", "No")).logprobs for m in asks] == [
        s.logprobs for s in first
    ]
    assert restarted.inner.calls == 0 and restarted.model_calls == 0
    unbounded = CachedBackend(_Numbered(), Store(tmp_path / "store.sqlite"))
    for m in asks:
        unbounded.choice_logprobs(m, ("Yes", "No"))
    assert len(unbounded._seen) == 50 and unbounded.cached_calls == 50
    with pytest.raises(ValueError, match="seen_limit"):
        CachedBackend(_Numbered(), Store(tmp_path / "store.sqlite"), seen_limit=0)
    # the server's wrapper is the bounded one
    settings = ServeSettings(judge="openai:fake@http://127.0.0.1:9/v1", out=tmp_path / "serve")
    service = JudgeService(settings, load_constitution("default"))
    try:
        assert service.outer.inner.seen_limit == SEEN_LIMIT
    finally:
        service.close()


def test_token_off_loopback_401_and_413(tmp_path):
    token = "s3cret-token-for-the-test-0123456789"
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    refused = subprocess.run(
        [sys.executable, "-m", "rlaif", "serve", "--judge", RULE, "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )
    assert refused.returncode == 1 and "--token-file" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    args = ("--judge", RULE, "--token-file", str(token_file), "--max-body", "2048")
    with serving(tmp_path, *args) as server:
        url = server.url + "/get_reward"
        body = openrlhf_body(ITEMS[:1])
        assert post(url, body)[0] == 401
        assert post(url, body, {"Authorization": "Bearer wrong"})[0] == 401
        assert post(url + "?token=" + token[:-1], body)[0] == 401
        assert post(url, body, {"Authorization": f"Bearer {token}"})[0] == 200
        assert post(url + "?token=" + token, body)[0] == 200  # OpenRLHF sets no headers
        big = openrlhf_body([("Q?", "word " * 1000)])
        status, reply = post(url, big, {"Authorization": f"Bearer {token}"})
        assert status == 413 and "2048" in reply["error"]
        with pytest.raises(urllib.error.HTTPError) as e:
            metrics(server)
        assert e.value.code == 401
        assert metrics(server, token=token)["requests"] == 2
    assert token not in server.log()


def test_a_slow_or_broken_judge_fails_items_never_scores_them(tmp_path):
    judge = "python:serve_support:words_or_fail"
    items = [("Q?", "one two three"), ("Q?", "SLOW four words here"), ("Q?", "FAIL now")]
    with serving(tmp_path, "--judge", judge, "--timeout", "1") as server:
        started = time.monotonic()
        status, reply = post(server.url + "/get_reward", openrlhf_body(items))
        assert time.monotonic() - started < 2.5  # answered at the deadline, not after the judge
        assert status == 200
        assert reply["rewards"] == [3.0, None, None] and reply["failed"] == [1, 2]
        assert "judge broke on purpose" in reply["errors"]["2"]
        assert "timed out" in reply["errors"]["1"]
        assert metrics(server)["failed_items"] == 2
    args = ("--judge", judge, "--failed-reward", "-1", "--timeout", "1")
    with serving(tmp_path, *args, name="explicit") as server:
        status, reply = post(server.url + "/get_reward", openrlhf_body(items[::2]))
        assert reply["rewards"] == [3.0, -1.0] and reply["failed"] == [1]


def test_load_eight_clients_no_errors_every_reward_equal(tmp_path):
    rule = RuleJudge(RULE)
    batches = [ITEMS[k:] + ITEMS[:k] for k in range(len(ITEMS))]
    expected = [[rule.score(p, r).score for p, r in batch] for batch in batches]
    errors: list[str] = []
    answered = [0] * 8
    with serving(tmp_path, "--judge", RULE, "--concurrency", "4") as server:
        stop_at = time.monotonic() + 10

        def client(n: int) -> None:
            k = n
            while time.monotonic() < stop_at:
                batch = k % len(batches)
                try:
                    status, reply = post(server.url + "/get_reward", openrlhf_body(batches[batch]))
                    if status != 200 or reply["rewards"] != expected[batch] or reply["failed"]:
                        errors.append(f"{status} {reply}")
                except OSError as e:
                    errors.append(repr(e))
                answered[n] += 1
                k += 1

        threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        counted = metrics(server)
    assert errors == []
    assert all(a > 5 for a in answered), answered
    assert counted["requests"] == sum(answered) and counted["failed_items"] == 0
    assert counted["p99_ms"] is not None


# -- the embedded model --------------------------------------------------------------------------
@pytest.mark.slow
def test_embedded_judge_equals_in_process_and_survives_kill_9(tmp_path, smollm2):
    constitution = load_constitution("default")
    judge = Judge(smollm2, constitution, mode="pointwise")
    in_process = RewardJudge(smollm2.model_id, constitution, backend=smollm2)
    expected = {}
    for prompt, response in ITEMS:
        principle = in_process.principle_for(prompt)
        p_yes = judge.score(prompt, response, principle).p_first
        assert in_process.score_item(prompt, response).reward == p_yes
        expected[(prompt, response)] = p_yes
    server = Server(["--judge", "smollm2", "--concurrency", "3"], tmp_path / "store").start()
    got: dict[tuple[str, str], float] = {}
    errors: list[str] = []
    wrong: list[str] = []
    try:

        def client(n: int) -> None:
            for k in range(8):
                item = ITEMS[(n + k) % len(ITEMS)]
                try:
                    status, reply = post(server.url + "/get_reward", openrlhf_body([item]))
                except OSError as e:  # the server was killed: an error, never a number
                    errors.append(repr(e))
                    return
                if status != 200 or reply["failed"]:
                    wrong.append(f"{status} {reply}")
                else:
                    got[item] = reply["rewards"][0]

        threads = [threading.Thread(target=client, args=(n,)) for n in range(3)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 120
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        server.kill()
        for t in threads:
            t.join(timeout=60)
    finally:
        server.stop()
    assert wrong == []
    assert len(got) >= 2 and errors, (got, errors)  # the kill came under load
    for item, reward in got.items():
        assert reward == pytest.approx(expected[item], abs=1e-6)
    restarted = Server(["--judge", "smollm2"], tmp_path / "store").start()
    try:
        answered = list(got)
        status, reply = post(restarted.url + "/get_reward", openrlhf_body(answered))
        assert status == 200 and reply["failed"] == []
        assert reply["rewards"] == [got[item] for item in answered]
        counted = metrics(restarted)
        assert counted["model_calls"] == 0 and counted["cache_hits"] == len(answered)
        # a group: its pair judged in both orders through the model (no check separates them)
        responses = ["Paris.", "Lyon."]
        status, reply = post(
            restarted.url + "/group_reward", {"prompt": ITEMS[0][0], "responses": responses}
        )
        want = in_process.score_group(ITEMS[0][0], responses)
        assert reply["rewards"] == pytest.approx([w.reward for w in want], abs=1e-6)
        assert metrics(restarted)["model_calls"] == 2  # 1 pair x 2 orders
    finally:
        restarted.stop()


@pytest.mark.slow
def test_embedded_judge_fails_a_cut_off_answer_on_its_check_over_http(tmp_path, smollm2):
    principle = {
        "id": "length",
        "critique": "Say whether the response is too short or too long.",
        "revision": "Rewrite the response to a fitting length.",
        "comparison": "Which response has a more fitting length?",
        "check": "rule:words=3-12",
    }
    path = tmp_path / "constitution.json"
    path.write_text(json.dumps({"name": "length", "principles": [principle]}))
    in_process = RewardJudge(smollm2.model_id, load_constitution(str(path)), backend=smollm2)
    prompt, response = ITEMS[0]  # six words: the check passes it unless it was cut
    cut = in_process.score_item(prompt, response, truncated=True)
    whole = in_process.score_item(prompt, response)
    assert (cut.reward, cut.source) == (0.0, "rule") and whole.source == "ai"
    with serving(tmp_path, "--judge", "smollm2", "--constitution", str(path)) as server:
        remote = rlaif.remote_reward(server.url, max_completion_length=6, eos_token_id=0)
        rewards = remote(
            [_chat("user", prompt)] * 2,
            [_chat("assistant", response)] * 2,
            completion_ids=[[9] * 6, [9, 9, 0]],
        )
        assert rewards == [0.0, pytest.approx(whole.reward, abs=1e-6)]
        counted = metrics(server)
    assert counted["model_calls"] == 1  # the check decided the cut one without the model


# -- the TRL client -------------------------------------------------------------------------------
def test_trl_client_in_a_two_step_grpo_run(tmp_path):
    from test_train_grpo import _prompts
    from tiny_model import tiny_checkpoint

    from rlaif.train.grpo import GRPOSettings, make_reward, train_grpo

    with serving(tmp_path, "--judge", "rule:max_words=3") as server:
        reward = rlaif.remote_reward(server.url + "/get_reward")
        prompts = [[{"role": "user", "content": "Hi"}]] * 2
        completions = [[{"role": "assistant", "content": c}] for c in ("Hello.", "a b c d e")]
        assert reward(prompts, completions) == [1.0, 0.0]
        in_group = rlaif.remote_reward(server.url, group=True)(prompts, completions)
        assert in_group == [
            RuleJudge("rule:max_words=3").compare("Hi", "Hello.", "a b c d e").p_a,
            RuleJudge("rule:max_words=3").compare("Hi", "a b c d e", "Hello.").p_a,
        ]
        settings = GRPOSettings(
            data=str(_prompts(tmp_path)),
            out=tmp_path / "grpo",
            model=f"hf:{tiny_checkpoint(tmp_path / 'tiny')}",
            judge=server.url,
            max_steps=2,
            prompts_per_step=2,
            num_generations=4,
            max_completion_length=8,
            learning_rate=1e-2,
        )
        served = make_reward(settings)
        assert served.__name__ == "remote_judge"
        # the trainer's limit goes to the client, so a cut-off completion is flagged to the server
        assert served.max_completion_length == 8
        assert served.truncated([[5] * 8, [5, 6]], 2) == [True, False]
        info = train_grpo(settings, show_progress=False)
        counted = metrics(server)
    assert len(info["steps"]) == 2
    assert all(0.0 <= s["reward"] <= 1.0 for s in info["steps"])
    assert counted["requests"] >= 4 and counted["items"] >= 2 + 2 + 2 * 8
