"""How `rlaif run --executor ray` scales from one Ray node to two (same machine, one CPU each).

For each size, starts a cluster of that many nodes (``tests/ray_cluster.py``: 127.0.0.1, one
CPU per node, token authentication, workers at nice 0), runs the real CLI with ``RAY_ADDRESS``
set in a fresh run directory, and tears the cluster down. Prints wall time per size, the ratio
(one node's time / two nodes'), and the share of the wall time spent outside model calls:
``1 - (seconds the workers spent on items, summed / workers) / wall``, which is start-up, model
loads, the driver's own work and workers left idle by uneven items. The goal is a ratio of
1.7 or more; both nodes share this machine's cores with whatever else runs on it, so say what
else was running when quoting a number (``uptime`` before and after is printed).

    PYTHONPATH=. .venv/bin/python benchmarks/ray_scaling.py --prompts 4
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from ray_cluster import start_head  # noqa: E402 - the cluster written for the tests

PROMPTS = [
    "Give one tip for sleeping better.",
    "Name a fruit that is yellow.",
    "How do I boil an egg?",
    "Suggest a name for a cat.",
    "What is a good way to learn a new word?",
    "Write one sentence about the sea.",
    "How can I keep a plant alive?",
    "Give a reason to drink water.",
]


def measure(nodes: int, prompts: Path, out: Path, args: argparse.Namespace) -> dict:
    """One run on a fresh cluster of ``nodes`` nodes: wall time and the workers' busy time."""
    cluster = start_head()
    try:
        for _ in range(nodes - 1):
            cluster.add_node()
        assert cluster.alive_nodes() == nodes
        cmd = [sys.executable, "-m", "rlaif", "run", "--prompts", str(prompts), "--out", str(out)]
        cmd += ["--n-responses", str(args.n_responses), "--revisions", str(args.revisions)]
        cmd += ["--max-tokens", str(args.max_tokens), "--executor", "ray", "--quiet"]
        env = {**cluster.env, "RAY_ADDRESS": cluster.address}
        started = time.perf_counter()
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
        wall = time.perf_counter() - started
    finally:
        cluster.stop()
    if result.returncode != 0:
        raise SystemExit(f"{nodes} node(s): rlaif run failed:\n{result.stderr[-3000:]}")
    info = json.loads((out / "run.json").read_text())
    ray = info["requests"]["ray"]
    busy_per_worker = ray["worker_busy_s"] / max(1, ray["workers"])
    return {
        "nodes": nodes,
        "wall_s": round(wall, 1),
        "workers": ray["workers"],
        "nodes_used": ray["nodes"],
        "labels": info["labels"],
        "model_calls": info["model_calls"],
        "worker_busy_s": ray["worker_busy_s"],
        "outside_model_calls": round(1 - busy_per_worker / wall, 3),
        "timings_s": info["timings_s"],
    }


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=4, help="prompts per run (at most 8)")
    parser.add_argument("--n-responses", type=int, default=2)
    parser.add_argument("--revisions", type=int, default=1)
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()
    os.environ.setdefault("RLAIF_N_THREADS", "1")  # one core per node: one llama.cpp thread
    with tempfile.TemporaryDirectory(prefix="ray-scaling-") as tmp:
        prompts = Path(tmp) / "prompts.jsonl"
        prompts.write_text(
            "".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS[: args.prompts])
        )
        print(f"before: {_uptime()}")
        rows = [measure(n, prompts, Path(tmp) / f"run-{n}", args) for n in (1, 2)]
        print(f"after:  {_uptime()}")
        same = all(
            (Path(tmp) / "run-1" / f).read_bytes() == (Path(tmp) / "run-2" / f).read_bytes()
            for f in ("preferences.jsonl", "sft.jsonl", "revisions.jsonl")
        )
    print("| nodes | wall s | workers | nodes used | labels | worker busy s | outside calls |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['nodes']} | {r['wall_s']} | {r['workers']} | {r['nodes_used']} | "
            f"{r['labels']} | {r['worker_busy_s']} | {r['outside_model_calls']:.0%} |"
        )
    ratio = rows[0]["wall_s"] / rows[1]["wall_s"]
    print(f"ratio (1 node / 2 nodes): {ratio:.2f}x (goal >= 1.7x); same outputs: {same}")
    for r in rows:
        print(f"stage timings, {r['nodes']} node(s): {r['timings_s']}")


if __name__ == "__main__":
    main()
