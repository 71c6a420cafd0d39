"""How `rlaif run` scales: time per label and peak memory at 1x, 4x and 16x prompts.

Runs the real CLI in a subprocess on the embedded default for each size, each in a fresh run
directory, and reads the child's peak RSS from the OS. Time per label should stay flat (cost
linear in work) and peak RSS bounded (outputs stream to disk; nothing holds the run in memory).

    .venv/bin/python benchmarks/run_scaling.py --base 1 --sizes 1,4,16
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

RLAIF = str(Path(sys.executable).with_name("rlaif"))


def measure(n_prompts: int, out: Path, args: argparse.Namespace) -> dict:
    """One run of n prompts: wall time, labels, time per label, the child's peak RSS."""
    cmd = [
        RLAIF,
        "run",
        "--limit",
        str(n_prompts),
        "--n-responses",
        str(args.n_responses),
        "--revisions",
        str(args.revisions),
        "--max-tokens",
        str(args.max_tokens),
        "--out",
        str(out),
        "--quiet",
    ]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own resource usage
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"rlaif run failed for {n_prompts} prompts")
    peak_kb = usage.ru_maxrss
    info = json.loads((out / "run.json").read_text())
    labels = info["labels"]
    return {
        "prompts": n_prompts,
        "labels": labels,
        "wall_s": wall,
        "s_per_label": wall / labels if labels else float("nan"),
        "label_stage_s_per_label": info["timings_s"]["label"] / labels if labels else float("nan"),
        "peak_rss_mb": peak_kb / 1024,
        "model_calls": info["model_calls"],
    }


def main() -> None:
    """Measure each size and print a markdown table with ratios to the smallest size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=int, default=1, help="prompts at 1x")
    parser.add_argument("--sizes", default="1,4,16", help="multiples of --base")
    parser.add_argument("--n-responses", type=int, default=2)
    parser.add_argument("--revisions", type=int, default=0)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mult in (int(s) for s in args.sizes.split(",")):
            rows.append(measure(args.base * mult, Path(tmp) / f"x{mult}", args))
            print(f"done {rows[-1]['prompts']} prompts", file=sys.stderr)
    first = rows[0]
    print(
        "| prompts | labels | wall s | s/label | label stage s/label | ratio to 1x | peak RSS MB |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['prompts']} | {r['labels']} | {r['wall_s']:.1f} | {r['s_per_label']:.2f} | "
            f"{r['label_stage_s_per_label']:.2f} | {r['s_per_label'] / first['s_per_label']:.2f} "
            f"| {r['peak_rss_mb']:.0f} |"
        )


if __name__ == "__main__":
    main()
