"""Items per second through ``rlaif serve`` against the in-process judge, in one run.

The same N items (prompt, response) are scored pointwise (:meth:`rlaif.rewards.RewardJudge.
score_item`, the reward ``/get_reward`` gives) five ways:

* in process (one fresh llama.cpp backend, no store) and through the server with one client
  (a fresh store), interleaved item by item, so load that comes and goes on a shared machine
  hits both alike: this pair gives the overhead ``ratio``;
* through the server, cold (a fresh store each) with 4 and 8 concurrent clients, each posting
  one item a request as OpenRLHF's client does (a separate phase: compare with care);
* through the server again with 8 clients on the store the last cold run filled (warm cache).

``ratio`` is seconds per item over the in-process seconds per item; the issue's goal for the
embedded model is <= 1.10 on the interleaved pair. The server runs in a
subprocess with the same ``RLAIF_N_THREADS`` as the in-process judge. Items come from
LLMBar-Natural (``../shared/data/preferences/``) when it is there, else from the built-in
prompts with short canned answers.

    PYTHONPATH=. .venv/bin/python benchmarks/serve_throughput.py --items 16 --out /tmp/serve.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: scored before the clock starts, in process and on each server, and not among the items
WARM_UP = ("Warm-up?", "Warm.")
LLMBAR = REPO.parent / "shared" / "data" / "preferences" / "llmbar-natural.json"


def load_items(n: int) -> tuple[list[tuple[str, str]], str]:
    """N distinct (prompt, response) items and where they came from."""
    if LLMBAR.is_file():
        rows = json.loads(LLMBAR.read_text())
        items = [(r["input"], r[key]) for r in rows for key in ("output_1", "output_2")]
        return items[:n], "LLMBar-Natural"
    from rlaif.prompts import load_prompts

    answers = ("I am not sure.", "Here is a short, direct answer to the question.")
    prompts = [p.text for p in load_prompts(str(REPO / "rlaif" / "data" / "prompts.jsonl"))]
    items = [(p, a) for p in prompts for a in answers]
    return items[:n], "built-in prompts, canned answers"


def in_process_judge():
    """A fresh in-process judge (its own llama.cpp backend, no store), warmed up."""
    from rlaif.backends.llamacpp import LlamaCppBackend, embedded_model_path
    from rlaif.constitution import load_constitution
    from rlaif.rewards import RewardJudge

    backend = LlamaCppBackend(embedded_model_path(), model_id="smollm2")
    judge = RewardJudge("smollm2", load_constitution("default"), backend=backend)
    judge.score_item(*WARM_UP)  # outside the clock, as the server's warm-up request
    return judge, backend


def interleaved(url: str, items: list[tuple[str, str]]) -> tuple[float, float, int]:
    """(in-process s/item, server s/item, failed): each item scored in process and then
    through the server (one client), item after item, so load that comes and goes hits both."""
    judge, backend = in_process_judge()
    local = served = 0.0
    failed = 0
    try:
        for prompt, response in items:
            started = time.perf_counter()
            judge.score_item(prompt, response)
            middle = time.perf_counter()
            reply = _post(url + "/get_reward", {"prompts": [prompt], "responses": [response]})
            local += middle - started
            served += time.perf_counter() - middle
            failed += len(reply["failed"])
    finally:
        backend.close()
    return local / len(items), served / len(items), failed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(store: Path, concurrency: int) -> tuple[subprocess.Popen, str]:
    """``rlaif serve --judge smollm2`` on a free port; (process, URL) once it answers."""
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rlaif",
            "serve",
            "--judge",
            "smollm2",
            "--out",
            str(store),
            "--port",
            str(port),
            "--concurrency",
            str(concurrency),
            "--timeout",
            "3600",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/health", timeout=2).read()
            return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not start in 120 s")


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=3600) as response:
        return json.loads(response.read())


def through_server(url: str, items: list[tuple[str, str]], clients: int) -> tuple[float, int]:
    """(seconds per item, failed items) with ``clients`` threads posting one item a request."""
    queue = list(enumerate(items))
    lock = threading.Lock()
    failed = [0]

    def client() -> None:
        while True:
            with lock:
                if not queue:
                    return
                _, (prompt, response) = queue.pop(0)
            reply = _post(url + "/get_reward", {"prompts": [prompt], "responses": [response]})
            with lock:
                failed[0] += len(reply["failed"])

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return (time.perf_counter() - started) / len(items), failed[0]


def _warm_up(url: str) -> None:
    """One request on an item outside the measured set, so the model is loaded and warm."""
    _post(url + "/get_reward", {"prompts": [WARM_UP[0]], "responses": [WARM_UP[1]]})


def main() -> None:
    """Run the five measurements and print (and optionally write) the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="RLAIF_N_THREADS for both")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    os.environ["RLAIF_N_THREADS"] = str(args.threads)
    items, source = load_items(args.items)
    rows: list[tuple[str, float, int | str]] = []
    with tempfile.TemporaryDirectory(prefix="rlaif-serve-bench-") as work:
        proc, url = start_server(Path(work) / "store-1", 1)
        try:
            _warm_up(url)
            local, served, failed = interleaved(url, items)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        rows += [
            ("in process", local, "-"),
            ("server, cold, 1 client (interleaved)", served, failed),
        ]
        for clients in (4, 8):
            proc, url = start_server(Path(work) / f"store-{clients}", clients)
            try:
                _warm_up(url)
                per_item, failed = through_server(url, items, clients)
                rows.append((f"server, cold, {clients} clients", per_item, failed))
                if clients == 8:
                    per_item, failed = through_server(url, items, clients)
                    rows.append(("server, warm store, 8 clients", per_item, failed))
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    base = local
    lines = [
        f"{len(items)} items ({source}), smollm2, RLAIF_N_THREADS={args.threads}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "",
        "| how | s / item | items / s | ratio to in-process | failed |",
        "|---|---|---|---|---|",
    ]
    for name, per_item, failed in rows:
        lines.append(
            f"| {name} | {per_item:.3f} | {1 / per_item:.2f} | {per_item / base:.2f} | {failed} |"
        )
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        args.out.write_text(table)


if __name__ == "__main__":
    main()
