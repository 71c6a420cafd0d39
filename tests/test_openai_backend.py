"""The ``openai`` backend: against a real llama.cpp OpenAI-compatible server running the embedded
model (it must label as the in-process backend does), and its verdict fallback against a fake
transport (no server)."""

from __future__ import annotations

import json
import math

import openai
import pytest

from rlaif import templates
from rlaif.backends import load_backend
from rlaif.backends.openai_compat import OpenAIBackend
from rlaif.compare import Judge
from rlaif.errors import BackendError, RlaifError

try:  # the HTTP library the installed openai client is built on
    import httpx2 as httpx
except ImportError:  # pragma: no cover - older openai releases
    import httpx

PROMPT = "What is the capital of France?"
GOOD = "The capital of France is Paris."
ABSURD = "France has no capital; the moon is made of cheese."
TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def served(llama_server):
    return load_backend("openai:smollm2@" + llama_server)


# -- against the real server ------------------------------------------------------------------
def test_server_labels_like_the_direct_backend(served, smollm2, constitution):
    via_server = Judge(served, constitution).compare(PROMPT, GOOD, ABSURD)
    direct = Judge(smollm2, constitution).compare(PROMPT, GOOD, ABSURD)
    assert via_server.method == "logprobs"
    assert via_server.judge == served.model_id
    assert via_server.principle_id == direct.principle_id
    assert via_server.position_consistent == direct.position_consistent
    for field in ("p_a", "p_a_order_ab", "p_a_order_ba"):
        got, want = getattr(via_server, field), getattr(direct, field)
        assert abs(got - want) < TOLERANCE, (field, got, want)
    # and both are real soft labels, not the 0.5 of unread logits
    assert abs(via_server.p_a_order_ab - 0.5) > 0.01


def test_server_pointwise_matches_the_direct_backend(served, smollm2, constitution):
    via_server = Judge(served, constitution, mode="pointwise").compare(PROMPT, GOOD, ABSURD)
    direct = Judge(smollm2, constitution, mode="pointwise").compare(PROMPT, GOOD, ABSURD)
    assert via_server.method == "logprobs"
    assert abs(via_server.p_a - direct.p_a) < TOLERANCE, (via_server.p_a, direct.p_a)


def test_server_choice_logprobs_match_the_direct_backend(served, smollm2, constitution):
    messages = templates.compare_messages(PROMPT, GOOD, ABSURD, constitution.get("helpful"))
    via_server = served.choice_logprobs(messages, templates.CHOICES)
    direct = smollm2.choice_logprobs(messages, templates.CHOICES)
    assert via_server.method == "logprobs"
    # same chat template and tokenizer: the server evaluates the same prompt tokens
    assert via_server.prompt_tokens == direct.prompt_tokens
    assert via_server.floor is not None
    for choice in templates.CHOICES:
        got, want = via_server.logprobs[choice], direct.logprobs[choice]
        assert got is not None and via_server.floor <= got
        assert abs(got - want) < TOLERANCE, (choice, got, want)


def test_server_generation(served, smollm2):
    messages = [{"role": "user", "content": "Say hello."}]
    gen = served.generate(messages, max_tokens=8)
    assert gen.text.strip()
    assert gen.prompt_tokens > 0
    assert 0 < gen.completion_tokens <= 8
    # greedy decoding of the same model: the same text as in-process
    assert gen.text == smollm2.generate(messages, max_tokens=8).text


def test_request_the_server_refuses_raises_and_keeps_logprobs(served):
    too_long = [{"role": "user", "content": "word " * 5000}]  # over the 4096-token context
    with pytest.raises(BackendError, match="refused") as info:
        served.choice_logprobs(too_long, templates.CHOICES)
    assert isinstance(info.value, RlaifError)
    assert "\n" not in str(info.value)
    # one bad request must not switch the backend to generated verdicts for good
    scores = served.choice_logprobs([{"role": "user", "content": "A or B?"}], templates.CHOICES)
    assert scores.method == "logprobs"


# -- against a fake transport -----------------------------------------------------------------
def _completion(text: str, top: list[tuple[str, float]] | None = None) -> dict:
    logprobs = None
    if top is not None:
        entries = [{"token": t, "logprob": lp, "bytes": None} for t, lp in top]
        logprobs = {"content": [{**entries[0], "top_logprobs": entries}]}
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": "fake",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
                "logprobs": logprobs,
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13},
    }


class FakeServer:
    """An OpenAI-compatible endpoint in a MockTransport; ``reply(body)`` answers each request."""

    def __init__(self, reply) -> None:
        self.reply = reply
        self.requests: list[dict] = []

    def handle(self, request):
        body = json.loads(request.content)
        self.requests.append(body)
        status, payload = self.reply(body)
        return httpx.Response(status, json=payload)

    def backend(self) -> OpenAIBackend:
        backend = OpenAIBackend("fake", "http://fake.invalid/v1", api_key="k")
        backend._client = openai.OpenAI(
            base_url="http://fake.invalid/v1",
            api_key="k",
            max_retries=0,
            http_client=httpx.Client(transport=httpx.MockTransport(self.handle)),
        )
        return backend


REFUSAL = {"error": {"message": "logprobs are not supported", "type": "invalid_request_error"}}


def _refusing_server(verdicts: list[str]) -> FakeServer:
    def reply(body):
        if body.get("logprobs"):
            return 400, REFUSAL
        return 200, _completion(verdicts.pop(0))

    return FakeServer(reply)


def test_refused_logprobs_fall_back_to_a_verdict(constitution):
    server = _refusing_server(["A", "B"])  # A shown first: A; B shown first: B
    pref = Judge(server.backend(), constitution).compare(PROMPT, GOOD, ABSURD)
    assert pref.method == "verdict"
    assert pref.p_a_order_ab == 1.0 and pref.p_a_order_ba == 1.0 and pref.p_a == 1.0
    assert pref.position_consistent is True
    # logprobs are asked once; once refused, the backend goes straight to verdicts
    assert [bool(r.get("logprobs")) for r in server.requests] == [True, False, False]


@pytest.mark.parametrize("verdicts", [["I cannot tell.", "B"], ["A", "Both A and B."]])
def test_unparsable_verdict_is_no_preference(constitution, verdicts):
    server = _refusing_server(verdicts)
    pref = Judge(server.backend(), constitution).compare(PROMPT, GOOD, ABSURD)
    assert pref.method == "verdict"
    assert pref.p_a is None
    assert pref.position_consistent is None
    assert not pref.readable


def test_ignored_logprobs_fall_back_to_a_verdict():
    # a server that accepts the parameter but returns no logprobs
    server = FakeServer(lambda body: (200, _completion("B")))
    scores = server.backend().choice_logprobs([{"role": "user", "content": "?"}], ("A", "B"))
    assert scores.method == "verdict" and scores.text == "B"


def test_top_logprobs_are_matched_to_choices():
    top = [("A", -0.2), (" B", -2.0), ("B", -2.5), ("The", -4.0)]
    server = FakeServer(lambda body: (200, _completion("A", top)))
    scores = server.backend().choice_logprobs([{"role": "user", "content": "?"}], ("A", "B", "C"))
    assert scores.method == "logprobs"
    assert scores.logprobs["A"] == pytest.approx(-0.2)
    # "B" and " B" are both spellings of B: their probabilities add up
    assert scores.logprobs["B"] == pytest.approx(math.log(math.exp(-2.0) + math.exp(-2.5)))
    assert scores.logprobs["C"] is None
    assert scores.floor == -4.0
    assert server.requests[0]["top_logprobs"] > 0 and server.requests[0]["max_tokens"] == 1


def test_refusal_for_another_reason_raises_and_keeps_logprobs():
    def reply(body):
        if "TOO LONG" in body["messages"][-1]["content"]:
            return 400, {"error": {"message": "context\nlength exceeded", "type": "bad"}}
        return 200, _completion("A", [("A", -0.1), ("B", -2.4)])

    backend = FakeServer(reply).backend()
    with pytest.raises(BackendError, match="context length exceeded"):
        backend.choice_logprobs([{"role": "user", "content": "TOO LONG"}], ("A", "B"))
    scores = backend.choice_logprobs([{"role": "user", "content": "ok"}], ("A", "B"))
    assert scores.method == "logprobs"


def test_one_reply_without_logprobs_does_not_switch_a_server_to_verdicts():
    replies = [
        (200, _completion("A", [("A", -0.1), ("B", -2.4)])),
        (200, _completion("B")),  # an odd reply: no log-probabilities this time
        (200, _completion("B")),  # the verdict asked for instead
        (200, _completion("A", [("A", -0.3), ("B", -1.4)])),
    ]
    server = FakeServer(lambda body: replies.pop(0))
    backend = server.backend()
    ask = [{"role": "user", "content": "?"}]
    assert backend.choice_logprobs(ask, ("A", "B")).method == "logprobs"
    odd = backend.choice_logprobs(ask, ("A", "B"))
    assert odd.method == "verdict" and odd.text == "B"
    again = backend.choice_logprobs(ask, ("A", "B"))
    assert again.method == "logprobs" and again.logprobs["A"] == pytest.approx(-0.3)
    assert [bool(r.get("logprobs")) for r in server.requests] == [True, True, False, True]
