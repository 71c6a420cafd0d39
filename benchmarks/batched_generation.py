"""Batched generation on the embedded model: aggregate tokens/s at 1, 2, 4 and 8 sequences
against single-stream, and `rlaif run` with batches against the sequential path, in one run.

Part 0 times llama.cpp's decode step alone at each N (no sampling, no Python around it).
Part 1 opens the llama.cpp backend in this process. For each N it takes the first N built-in
prompts (one sampled response each), generates them one after the other (`generate`, the
single-stream path) and then together (`generate_many`, one llama.cpp batch), alternating the
two `--repeats` times so that a busy machine slows both alike; it checks that both give the
same replies and reports completion tokens per second of wall time (prompt evaluation
included) and the ratio. Part 2 runs the real CLI on the first `--limit` built-in prompts with
the run's defaults, `--batch-size 1` (sequential) and the default (batched), each in a fresh
run directory, alternating `--repeats` times, and reports the stage times and whether the
data files are byte-identical.

    .venv/bin/python benchmarks/batched_generation.py --limit 4 --repeats 1
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

RLAIF = [sys.executable, "-m", "rlaif"]
DATA_FILES = ("preferences.jsonl", "low_margin.jsonl", "sft.jsonl", "revisions.jsonl")


def generation_rows(backend, sizes: list[int], max_tokens: int, repeats: int) -> list[dict]:
    """Part 1: single-stream and batched tokens/s for each number of sequences."""
    from rlaif.backends.base import GenerateRequest
    from rlaif.prompts import builtin_prompts_path, load_prompts
    from rlaif.templates import policy_messages

    prompts = load_prompts(builtin_prompts_path())
    rows = []
    # warm-up: the first calls page the weights in; later ones find the context made
    warm = GenerateRequest(policy_messages(prompts[0].chat()), 8, 0.8, seed=0)
    backend.generate(warm.messages, max_tokens=8, temperature=0.8)
    backend.generate_many([warm] * max(sizes))  # the batch context at its largest
    for n in sizes:
        requests = [
            GenerateRequest(policy_messages(p.chat()), max_tokens, 0.8, seed=0) for p in prompts[:n]
        ]
        times = {"single": 0.0, "batched": 0.0}
        for _ in range(repeats):
            t = time.perf_counter()
            single = [
                backend.generate(r.messages, max_tokens=r.max_tokens, temperature=0.8)
                for r in requests
            ]
            times["single"] += time.perf_counter() - t
            t = time.perf_counter()
            batched = backend.generate_many(requests)
            times["batched"] += time.perf_counter() - t
        tokens = sum(g.completion_tokens for g in batched) * repeats
        rows.append(
            {
                "sequences": n,
                "tokens": tokens,
                "single_tok_s": tokens / times["single"],
                "batched_tok_s": tokens / times["batched"],
                "ratio": times["single"] / times["batched"],
                "identical": batched == single,
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def decode_step_rows(backend, sizes: list[int], steps: int = 10) -> list[dict]:
    """Part 0: llama.cpp alone, no Python sampling: milliseconds per ``llama_decode`` of one
    token in each of N sequences (200-token prompts), the engine's own ceiling for batching."""
    rows = []
    decoder = backend._decoder(max(sizes), 1024)
    pos = [200] * max(sizes)
    for s in range(max(sizes)):
        decoder._prefill(s, list(range(100, 300)))
    for n in [*sizes, sizes[0]]:  # the first size again: how much the machine drifted
        t = time.perf_counter()
        for k in range(steps):
            decoder._decode([(500 + k, pos[s], s, True) for s in range(n)])
            pos[:n] = [p + 1 for p in pos[:n]]
        ms = 1000 * (time.perf_counter() - t) / steps
        rows.append({"sequences": n, "ms_per_step": ms, "tok_s": 1000 * n / ms})
    return rows


def run_once(batch_size: int, limit: int, workdir: Path, tag: str) -> dict:
    """Part 2: one `rlaif run` of the first ``limit`` built-in prompts; its timings and files."""
    out = workdir / tag
    cmd = [*RLAIF, "run", "--limit", str(limit), "--batch-size", str(batch_size)]
    t = time.perf_counter()
    subprocess.run(
        [*cmd, "--out", str(out), "--quiet"],
        check=True,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,  # the run's summary table; run.json has what is reported
    )
    wall = time.perf_counter() - t
    info = json.loads((out / "run.json").read_text())
    files = {name: (out / name).read_bytes() for name in DATA_FILES if (out / name).exists()}
    result = {"wall": wall, **info["timings_s"], "files": files}
    print(
        json.dumps({"batch_size": batch_size, "wall": wall, **info["timings_s"]}), file=sys.stderr
    )
    return result


def run_rows(limit: int, repeats: int) -> dict:
    """Part 2: sequential against batched `rlaif run`, alternated, summed over the repeats."""
    sums = {"sequential": {}, "batched": {}}
    identical = True
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            seq = run_once(1, limit, Path(tmp), f"seq-{i}")
            bat = run_once(8, limit, Path(tmp), f"bat-{i}")
            identical &= seq["files"] == bat["files"]
            for name, res in (("sequential", seq), ("batched", bat)):
                for k, v in res.items():
                    if k != "files":
                        sums[name][k] = sums[name].get(k, 0.0) + v
    return {**sums, "identical": identical}


def table(raw: list[dict], gen: list[dict], run: dict | None, limit: int) -> str:
    """The markdown tables of the three parts."""
    lines = ["| sequences | ms per llama_decode step | tok/s |", "|---:|---:|---:|"]
    lines += [f"| {r['sequences']} | {r['ms_per_step']:.1f} | {r['tok_s']:.1f} |" for r in raw]
    lines += [
        "",
        "| sequences | single-stream tok/s | batched tok/s | batched / single | same replies |",
        "|---:|---:|---:|---:|---|",
    ]
    for r in gen:
        lines.append(
            f"| {r['sequences']} | {r['single_tok_s']:.1f} | {r['batched_tok_s']:.1f} "
            f"| {r['ratio']:.2f}x | {'yes' if r['identical'] else 'NO'} |"
        )
    if run:
        s, b = run["sequential"], run["batched"]
        lines += [
            "",
            f"`rlaif run --limit {limit}` (defaults otherwise), seconds:",
            "",
            "| stage | --batch-size 1 | --batch-size 8 | speed-up |",
            "|---|---:|---:|---:|",
        ]
        for k in ("generate", "revise", "label", "total"):
            lines.append(f"| {k} | {s[k]:.1f} | {b[k]:.1f} | {s[k] / b[k]:.2f}x |")
        lines.append(f"\ndata files byte-identical: {'yes' if run['identical'] else 'NO'}")
    return "\n".join(lines)


def main() -> None:
    """Parse the options, measure, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,2,4,8", help="numbers of sequences")
    parser.add_argument("--max-tokens", type=int, default=64, help="tokens per reply (part 1)")
    parser.add_argument("--repeats", type=int, default=1, help="alternations of each pair")
    parser.add_argument("--limit", type=int, default=32, help="prompts of `rlaif run`")
    parser.add_argument("--skip-run", action="store_true", help="part 1 only")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    threads = os.environ.get("RLAIF_N_THREADS", "default")
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores, load {load:.1f}, RLAIF_N_THREADS={threads}")
    from rlaif.backends import load_backend

    backend = load_backend("smollm2")  # one model for parts 0 and 1: loads are shared
    try:
        raw = decode_step_rows(backend, sizes)
        gen = generation_rows(backend, sizes, args.max_tokens, args.repeats)
    finally:
        backend.close()
    run = None if args.skip_run else run_rows(args.limit, args.repeats)
    print(table(raw, gen, run, args.limit))
    print(f"load at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
