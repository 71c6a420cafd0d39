"""Labels per second through an OpenAI-compatible server, by concurrency, and the cost of faults.

One run starts ``python -m llama_cpp.server`` on the embedded model (127.0.0.1, a free port)
and labels the same N pairs (both orders: 2N requests) several ways:

* **the server alone**: the exact request bodies rlaif sends, posted by bare HTTP
  (``http.client``, no openai client, no rlaif), from 1 thread and from 8; the faster of the two
  is the server's maximum. llama-cpp-python's server evaluates one request at a time, and it
  reuses the KV cache of the prompt prefix the previous request shared (both orders of a pair
  share the instructions and the user request), so requests arriving in pair order can beat
  requests arriving from many threads at once;
* **rlaif, concurrency 1, 2, 4, 8**: ``Judge`` over the ``openai`` backend and the run store (a
  fresh SQLite file per row), pairs spread over the thread pool of ``rlaif run``;
* **through the fault proxy** (``tests/fault_proxy.py``) at the same concurrency as the last
  rlaif row: once with no faults (the proxy's own cost) and once failing ``--fault-rate`` of the
  requests (429 + Retry-After: 1, 500, a hang until the client's ``--timeout``, malformed JSON,
  a cut connection), which shows what the retries cost.

Every row must give the same labels as concurrency 1; the table says so. Rows run one after the
other, so load from other processes on a shared machine lands unevenly: compare rows of one run,
and rerun with ``--rounds 2`` or more to see the spread.

    RLAIF_N_THREADS=2 .venv/bin/python benchmarks/api_throughput.py --pairs 12 --out /tmp/api.md
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

from rlaif import templates
from rlaif.backends.cached import CachedBackend
from rlaif.backends.llamacpp import embedded_model_path
from rlaif.backends.openai_compat import TOP_LOGPROBS, OpenAIBackend
from rlaif.backends.ratelimit import RequestPolicy
from rlaif.compare import Judge
from rlaif.constitution import default_constitution
from rlaif.pipeline.executor import compare_pairs
from rlaif.prompts import builtin_prompts_path, load_prompts
from rlaif.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fault_proxy import FAULTS, FaultProxy  # noqa: E402 - the proxy written for the tests

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
LLMBAR = SHARED / "data" / "preferences" / "llmbar-natural.json"


def load_pairs(n: int) -> tuple[list[tuple[str, str, str]], str]:
    """N real pairs of LLMBar-Natural, or pairs of short built-in answers when it is absent."""
    if LLMBAR.exists():
        rows = json.loads(LLMBAR.read_text())[:n]
        return [(r["input"], r["output_1"], r["output_2"]) for r in rows], "LLMBar-Natural"
    prompts = load_prompts(builtin_prompts_path())[:n]
    pairs = [(p.text, "I can help with that.", "I do not know.") for p in prompts]
    return pairs, "built-in prompts, two fixed answers"


def start_server(threads: int) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_model_path())]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--logits_all", "True"]
    cmd += ["--n_ctx", "4096", "--n_threads", str(threads), "--n_threads_batch", str(threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(240):
        try:
            with urllib.request.urlopen(url + "/models", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.25)
    proc.kill()
    raise SystemExit("llama_cpp.server did not start within 60 s")


def request_bodies(pairs, judge: Judge) -> list[bytes]:
    """The chat-completion bodies the openai backend posts for both orders of every pair."""
    bodies = []
    for prompt, a, b in pairs:
        principle = judge.principle_for_pair(prompt, a, b)
        for first, second in ((a, b), (b, a)):
            messages = templates.compare_messages(prompt, first, second, principle)
            body = {
                "model": "smollm2",
                "messages": messages,
                "max_tokens": 1,
                "temperature": 0.0,
                "logprobs": True,
                "top_logprobs": TOP_LOGPROBS,
            }
            bodies.append(json.dumps(body).encode())
    return bodies


def server_maximum(url: str, bodies: list[bytes], threads: int = 8) -> float:
    """Seconds for bare HTTP threads to get every body answered."""
    parts = urlsplit(url)

    def post(body: bytes) -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
        try:
            conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise SystemExit(f"the server answered HTTP {resp.status}")
        finally:
            conn.close()

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(post, bodies))
    return time.perf_counter() - start


def label(url: str, pairs, concurrency: int, policy: RequestPolicy) -> tuple[float, list, dict]:
    """Seconds, preferences and retries for labelling every pair through rlaif."""
    backend = OpenAIBackend("smollm2", url, policy=policy)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "store.sqlite")
        judge = Judge(CachedBackend(backend, store), default_constitution())
        start = time.perf_counter()
        prefs = list(compare_pairs(judge, pairs, concurrency=concurrency))
        seconds = time.perf_counter() - start
        store.close()
    return seconds, prefs, dict(backend.retries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=12, help="pairs labelled per row")
    parser.add_argument("--rounds", type=int, default=1, help="repeat every row; report medians")
    parser.add_argument("--fault-rate", type=float, default=0.3)
    parser.add_argument("--fault-seed", type=int, default=4)
    parser.add_argument("--fault-concurrency", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=30.0, help="client timeout (s)")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = parser.parse_args()

    threads = int(os.environ.get("RLAIF_N_THREADS", "2"))
    pairs, source = load_pairs(args.pairs)
    policy = RequestPolicy(timeout=args.timeout, max_retries=30)
    proc, url = start_server(threads)
    proxy = FaultProxy(url).start()
    rows: dict[str, list[float]] = {}
    notes: dict[str, str] = {}
    try:
        bodies = request_bodies(pairs, Judge(OpenAIBackend("smollm2", url), default_constitution()))
        server_maximum(url, bodies[:2])  # warm-up: load the weights into the page cache
        reference = None
        for _ in range(args.rounds):
            for n in (1, 8):
                seconds = server_maximum(url, bodies, threads=n)
                name = f"server alone (bare HTTP, {n} thread{'s' if n > 1 else ''})"
                rows.setdefault(name, []).append(seconds)
                print(f"{name}: {seconds:.1f} s", file=sys.stderr, flush=True)
            for c in (1, 2, 4, 8):
                seconds, prefs, _ = label(url, pairs, c, policy)
                reference = reference or prefs
                name = f"rlaif, concurrency {c}"
                rows.setdefault(name, []).append(seconds)
                print(f"{name}: {seconds:.1f} s", file=sys.stderr, flush=True)
                notes[name] = (
                    "reference"
                    if prefs is reference
                    else "same"
                    if prefs == reference
                    else "DIFFERENT"
                )
            c = args.fault_concurrency
            for rate in (0.0, args.fault_rate):
                proxy.reset(rate=rate, seed=args.fault_seed)
                seconds, prefs, retries = label(proxy.url, pairs, c, policy)
                kind = "no faults" if rate == 0 else f"{rate:.0%} faults"
                name = f"rlaif via proxy, {kind}, concurrency {c}"
                rows.setdefault(name, []).append(seconds)
                print(f"{name}: {seconds:.1f} s", file=sys.stderr, flush=True)
                same = "same" if _labels(prefs) == _labels(reference) else "DIFFERENT"
                counts = dict(proxy.counts)
                faulted = sum(counts.get(k, 0) for k in FAULTS)
                total = sum(counts.values())
                detail = ", ".join(f"{k} {counts[k]}" for k in FAULTS if counts.get(k))
                notes[name] = f"{same}; {total} requests, {faulted} faulted" + (
                    f" ({detail}); retries {sum(retries.values())}" if faulted else ""
                )
    finally:
        proxy.stop()
        proc.terminate()
        proc.wait()

    labels = len(pairs)
    best = min(statistics.median(t) for n, t in rows.items() if n.startswith("server alone"))
    lines = [
        f"# API labelling throughput ({labels} pairs of {source}, {2 * labels} requests a row)",
        "",
        f"llama_cpp.server on the embedded SmolLM2-135M Q4_1, {threads} threads; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
        f"client timeout {args.timeout:g} s; median of {args.rounds} round(s).",
        "",
        "| how | seconds | labels/s | of server maximum | labels vs concurrency 1 |",
        "|---|---:|---:|---:|---|",
    ]
    for name, times in rows.items():
        t = statistics.median(times)
        note = notes.get(name, "-")
        lines.append(f"| {name} | {t:.1f} | {labels / t:.2f} | {best / t:.2f} | {note} |")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        args.out.write_text(table)


def _labels(prefs) -> list:
    """What must not change through the proxy (the judge's URL does)."""
    return [(p.p_a, p.p_a_order_ab, p.p_a_order_ba, p.principle_id) for p in prefs]


if __name__ == "__main__":
    main()
