"""Throughput of preference labels on the embedded judge, against the naive free-text verdict.

One run measures, on the first N real pairs of LLMBar-Natural (with human labels):

* three soft-label strategies of ``rlaif.compare.Judge``: one order, both orders (the
  default) and pointwise; for each, seconds per pair, judge tokens actually evaluated per
  label (not reused from the KV cache), the cache hit rate, and the share of readable labels;
* the backend's raw prompt-evaluation rate over exactly the tokens each strategy evaluated:
  every ``llm.eval`` call a strategy made is replayed on a separate llama.cpp context, from a
  reset cache, with nothing around it, so ``strategy rate / raw rate`` is the share of the
  llama.cpp limit that the code around it reaches;
* the naive way of the original seed: generate a short free-text verdict and parse a letter.

The machine may be shared, so nothing is measured in long separate phases: each strategy
has its own backend (its own KV cache, kept across pairs as in a real run), and the pairs
are labelled round-robin, every strategy on pair 1, then on pair 2, ..., each label followed
at once by its replay. Load that comes and goes then hits every strategy and its replay alike.

Agreement with the human label is a side column; nothing here is tuned to it.

    .venv/bin/python benchmarks/compare_throughput.py --pairs 50 --out /tmp/throughput.md
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rlaif import templates
from rlaif.backends import parse_model_spec
from rlaif.compare import Judge, parse_verdict
from rlaif.constitution import default_constitution

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DATA = SHARED / "data" / "preferences" / "llmbar-natural.json"

NAIVE_QUESTION = (
    "Which response is better? Explain briefly and end with 'Answer: A' or 'Answer: B'."
)
NAIVE_MAX_TOKENS = 64
ANSWER = re.compile(r"Answer\s*[:\-]?\s*\**\s*\(?([AB])\b")

Call = tuple[list[int], list[int]]  # (tokens already in the cache, tokens evaluated)


class EvalRecorder:
    """Wraps ``Llama.eval`` of one instance and records every call's cached prefix and tokens."""

    def __init__(self, llm) -> None:
        self.llm = llm
        self.calls: list[Call] = []
        self.tokens = 0
        self.seconds = 0.0
        original = type(llm).eval

        def eval_and_record(tokens):
            self.calls.append((llm.input_ids[: llm.n_tokens].tolist(), list(tokens)))
            self.tokens += len(tokens)
            start = time.perf_counter()
            original(llm, tokens)
            self.seconds += time.perf_counter() - start

        llm.eval = eval_and_record  # an instance attribute shadows the method

    def take(self) -> list[Call]:
        """The calls recorded since the last take."""
        calls, self.calls = self.calls, []
        return calls


def replay(llm, calls: list[Call]) -> float:
    """Seconds llama.cpp takes for the same eval calls on a reset context, with nothing around
    them but setting the cache position (as the backend does) and ``eval``.

    The prefix the first call found in the cache (from an earlier pair) is evaluated first,
    untimed, so that every timed call attends over the same cache as in the strategy.
    """
    if not calls:
        return 0.0
    llm.reset()
    if calls[0][0]:
        llm.eval(calls[0][0])
    start = time.perf_counter()
    for prefix, tokens in calls:
        llm.n_tokens = len(prefix)
        llm.eval(tokens)
    seconds = time.perf_counter() - start
    prefix, tokens = calls[-1]
    if llm.input_ids[: llm.n_tokens].tolist() != prefix + tokens:
        raise RuntimeError("replay diverged from the recorded cache state")
    return seconds


@dataclass
class Strategy:
    """One way to label a pair, its own backend, and what it cost and gave so far."""

    name: str
    backend: object
    label: Callable[[dict], tuple[float | None, int]]  # pair -> (p_a, tokens sent)
    soft: bool = True
    recorder: EvalRecorder | None = None
    seconds: float = 0.0
    raw_seconds: float = 0.0
    labels: int = 0
    readable: int = 0
    agree: int = 0
    tokens_sent: int = 0
    evaluated: int = 0
    reused: int = 0
    unreadable_texts: list[str] = field(default_factory=list)

    @property
    def per_pair(self) -> float:
        return self.seconds / self.labels

    @property
    def rate(self) -> float:
        return self.evaluated / self.seconds

    @property
    def raw_rate(self) -> float:
        return self.evaluated / self.raw_seconds


def open_backend(spec: str):
    """A new llama.cpp backend for a model string (not the shared one load_backend keeps)."""
    from rlaif.backends.llamacpp import LlamaCppBackend, embedded_model_path

    kind, arg = parse_model_spec(spec)
    if kind != "llamacpp":
        raise SystemExit(
            f"{spec}: this benchmark needs a llama.cpp judge (smollm2 or llamacpp:PATH)"
        )
    path = embedded_model_path() if arg == "smollm2" else Path(arg)
    return LlamaCppBackend(path, model_id=spec)


def naive_messages(prompt: str, a: str, b: str) -> list[dict]:
    """The seed's way: ask for a short free-text verdict (rlaif.templates style)."""
    user = (
        f"[User request]\n{prompt}\n[End of User request]\n\n"
        f"[Response A]\n{a}\n[End of Response A]\n\n"
        f"[Response B]\n{b}\n[End of Response B]\n\n"
        f"{NAIVE_QUESTION}"
    )
    return [
        {"role": "system", "content": templates.JUDGE_SYSTEM},
        {"role": "user", "content": user},
    ]


def parse_naive(text: str) -> float | None:
    """1.0 for A, 0.0 for B: the last 'Answer: X', else a reply naming exactly one letter."""
    found = ANSWER.findall(text)
    if found:
        return 1.0 if found[-1] == "A" else 0.0
    return parse_verdict(text, templates.CHOICES)


def soft_strategy(name: str, spec: str, constitution, **judge_args) -> Strategy:
    backend = open_backend(spec)
    judge = Judge(backend, constitution, **judge_args)

    def label(pair: dict) -> tuple[float | None, int]:
        pref = judge.compare(pair["input"], pair["output_1"], pair["output_2"])
        return pref.p_a, pref.prompt_tokens

    return Strategy(name, backend, label)


def naive_strategy(spec: str) -> Strategy:
    backend = open_backend(spec)
    strategy = Strategy(
        f"naive: free-text verdict (≤{NAIVE_MAX_TOKENS} tokens), one order",
        backend,
        label=lambda pair: (None, 0),
        soft=False,
    )

    def label(pair: dict) -> tuple[float | None, int]:
        messages = naive_messages(pair["input"], pair["output_1"], pair["output_2"])
        before = len(strategy.recorder.calls)
        gen = backend.generate(messages, max_tokens=NAIVE_MAX_TOKENS, temperature=0.0)
        calls = strategy.recorder.calls[before:]
        # llama-cpp-python's generate() keeps the longest common prefix with the last call:
        # what its first eval did not evaluate of the prompt was reused.
        strategy.reused += gen.prompt_tokens - (len(calls[0][1]) if calls else 0)
        p = parse_naive(gen.text)
        if p is None:
            strategy.unreadable_texts.append(gen.text)
        return p, gen.prompt_tokens + gen.completion_tokens

    strategy.label = label
    return strategy


def agrees(p_a: float, label: int) -> bool:
    """The judge prefers output_1 (p_a > 0.5) exactly when the human label is 1."""
    return (p_a > 0.5) == (label == 1)


def run(strategies: list[Strategy], replay_llm, pairs: list[dict]) -> None:
    """Label every pair with every strategy, round-robin, each label followed by its replay."""
    for i, pair in enumerate(pairs):
        k = i % len(strategies)  # rotate who goes first, so that no strategy always follows another
        for s in strategies[k:] + strategies[:k]:
            start = time.perf_counter()
            p_a, sent = s.label(pair)
            s.seconds += time.perf_counter() - start
            s.raw_seconds += replay(replay_llm, s.recorder.take())
            s.labels += 1
            s.tokens_sent += sent
            if p_a is not None:
                s.readable += 1
                s.agree += agrees(p_a, pair["label"])
        if (i + 1) % 10 == 0 or i + 1 == len(pairs):
            print(f"  {i + 1}/{len(pairs)} pairs", flush=True)
    for s in strategies:
        s.evaluated = s.recorder.tokens
        if s.soft:
            s.reused = s.backend.reused_tokens
            if s.backend.evaluated_tokens != s.recorder.tokens:
                print(
                    f"warning: {s.name}: llama.cpp evaluated {s.recorder.tokens} tokens but "
                    f"the backend counted {s.backend.evaluated_tokens}"
                )


def pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def table(strategies: list[Strategy]) -> str:
    naive = next(s for s in strategies if not s.soft)
    cols = [
        "strategy",
        "s/pair",
        "labels/s",
        "tokens/label",
        "evaluated tok/label",
        "KV hit rate",
        "evaluated tok/s",
        "raw tok/s (replay)",
        "rate ÷ raw",
        "in llama eval",
        "readable",
        "naive s/pair ÷ this",
        "agreement with humans (n)",
    ]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for s in strategies:
        hit = s.reused / (s.reused + s.evaluated)
        agreement = f"{s.agree / s.readable:.2f} ({s.readable})" if s.readable else "— (0)"
        row = [
            s.name,
            f"{s.per_pair:.2f}",
            f"{s.labels / s.seconds:.2f}",
            f"{s.tokens_sent / s.labels:.0f}",
            f"{s.evaluated / s.labels:.0f}",
            f"{100 * hit:.1f}%",
            f"{s.rate:.0f}",
            f"{s.raw_rate:.0f}",
            f"{s.rate / s.raw_rate:.2f}",
            pct(s.recorder.seconds / s.seconds),
            pct(s.readable / s.labels),
            "—" if s is naive else f"{naive.per_pair / s.per_pair:.2f}x",
            agreement,
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


NOTES = """
- tokens/label: prompt tokens sent to the judge per label (naive: prompt + generated).
- evaluated: tokens llama.cpp actually evaluated, i.e. not reused from the KV cache (naive:
  the prompt suffix plus the generated tokens, one eval call each).
- KV hit rate: reused / (reused + evaluated), from the backend's counters (naive: from the
  prefix llama-cpp-python's generate() kept).
- raw tok/s: the same eval calls replayed on a separate context from a reset cache, nothing
  around them; rate ÷ raw is evaluated tok/s over it (1.00 = no overhead at all).
- in llama eval: share of the strategy's wall time spent inside llama.cpp's eval.
- naive s/pair ÷ this: how many times faster than the naive way each soft label is.
- agreement: readable pairs whose preference (p_a > 0.5) matches the human label == 1.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=50, help="pairs to label (default 50)")
    parser.add_argument("--judge", default="smollm2", help="judge: smollm2 or llamacpp:PATH")
    parser.add_argument("--out", type=Path, help="also write the markdown table to this file")
    args = parser.parse_args(argv)
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    if not DATA.is_file():
        print(f"nothing to measure: {DATA} is missing (the shared data folder next to the repo)")
        return 0
    all_pairs = json.loads(DATA.read_text())
    pairs = all_pairs[: args.pairs]
    if len(pairs) < args.pairs:
        print(f"note: {DATA.name} holds only {len(pairs)} pairs; using all of them")

    constitution = default_constitution()
    strategies = [
        soft_strategy("soft label, one order", args.judge, constitution, both_orders=False),
        soft_strategy("soft label, both orders (default)", args.judge, constitution),
        soft_strategy("soft label, pointwise", args.judge, constitution, mode="pointwise"),
        naive_strategy(args.judge),
    ]
    replay_llm = open_backend(args.judge).llm

    # Warm up (page the weights in, build the choice-token tables) on the last pair of the
    # file, then start every strategy from a cold cache and zeroed counters.
    for s in strategies:
        s.recorder = EvalRecorder(s.backend.llm)
        s.label(all_pairs[-1])
        replay(replay_llm, s.recorder.take())
        s.backend.llm.reset()
        s.recorder.tokens, s.recorder.seconds = 0, 0.0
        s.backend.evaluated_tokens = s.backend.reused_tokens = 0
        s.reused = 0
        s.unreadable_texts.clear()

    print(f"labelling {len(pairs)} pairs with {len(strategies)} strategies ...", flush=True)
    run(strategies, replay_llm, pairs)

    llm = strategies[0].backend.llm
    header = (
        f"Judge `{args.judge}`, first {len(pairs)} pairs of LLMBar-Natural, {llm.n_threads} "
        f"threads, {platform.machine()}, {time.strftime('%Y-%m-%d %H:%M')}.\n"
    )
    output = header + "\n" + table(strategies) + "\n" + NOTES
    naive = strategies[-1]
    if naive.unreadable_texts:
        output += f"\nAn unreadable naive reply, for illustration: {naive.unreadable_texts[0]!r}\n"
    print()
    print(output)
    if args.out:
        args.out.write_text(output)
    return 0 if all(s.readable == s.labels for s in strategies if s.soft) else 1


if __name__ == "__main__":
    sys.exit(main())
