"""Judge tokens evaluated and reused: pair by pair against planned, on the same inputs.

The embedded policy samples ``--responses`` responses to each of the first ``--prompts``
built-in prompts (as ``rlaif run`` does), and every pair of distinct responses of a prompt is
labelled by the embedded judge in both orders two ways, each on its own fresh llama.cpp model:

* **pair by pair**: ``rlaif.pipeline.executor.label`` on each pair in turn (both orders of
  one pair, then the next pair), the order of the labelling stage before planning;
* **planned**: ``label_by_prompt``, all questions of one prompt asked in the backend's reuse
  order (sorted by token ids), what ``rlaif run`` does with a local judge.

The two are run prompt by prompt, alternating which goes first, so load from other processes
hits both alike. Token counts are exact and do not depend on load; wall time is reported, not
asserted. The labels of both ways are compared field by field (the KV-cache reuse aside) and
the script exits 1 if any differs.

    .venv/bin/python benchmarks/judge_prefix_reuse.py --prompts 8 --responses 4 --max-tokens 64
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

from rlaif.backends.llamacpp import LlamaCppBackend, embedded_model_path
from rlaif.compare import Judge, Preference
from rlaif.constitution import default_constitution
from rlaif.pipeline.config import RunConfig
from rlaif.pipeline.executor import label, label_by_prompt
from rlaif.pipeline.stages import distinct_responses, sample_group
from rlaif.prompts import builtin_prompts_path, load_prompts

ORDERS = ("pair by pair", "planned")


@dataclass
class Arm:
    """One way of ordering the judge calls, its own model, and what it cost so far."""

    name: str
    judge: Judge
    seconds: float = 0.0
    prefs: list[Preference] = field(default_factory=list)

    @property
    def backend(self) -> LlamaCppBackend:
        """This arm's model, with its evaluated and reused token counts."""
        return self.judge.backend

    def label(self, pairs: list[tuple[str, str, str]]) -> None:
        """Label one prompt's pairs in this arm's order."""
        start = time.perf_counter()
        if self.name == "planned":
            self.prefs.extend(label_by_prompt(self.judge, pairs))
        else:
            self.prefs.extend(label(self.judge, pair) for pair in pairs)
        self.seconds += time.perf_counter() - start


def open_model() -> LlamaCppBackend:
    """A fresh embedded model (its own KV cache and counts)."""
    return LlamaCppBackend(embedded_model_path(), model_id="smollm2")


def sample_pairs(n_prompts: int, n_responses: int, max_tokens: int) -> list[list[tuple]]:
    """Every pair of distinct sampled responses, per prompt, as ``rlaif run`` pairs them."""
    config = RunConfig(
        out=Path(os.devnull), n_responses=n_responses, max_tokens=max_tokens, revision_rounds=0
    )
    prompts = load_prompts(builtin_prompts_path(), limit=n_prompts)
    policy = open_model()
    try:
        sampled = sample_group(policy, prompts, config)
    finally:
        policy.close()
    return [
        [(p.text, a.text, b.text) for a, b in combinations(distinct_responses(rs), 2)]
        for p, rs in zip(prompts, sampled, strict=True)
    ]


def same_labels(a: list[Preference], b: list[Preference]) -> bool:
    """Whether two label lists agree in every field but the KV-cache reuse."""

    def fields(p: Preference) -> dict:
        return {k: v for k, v in p.to_dict().items() if k != "cached_tokens"}

    return len(a) == len(b) and all(fields(x) == fields(y) for x, y in zip(a, b, strict=True))


def table(arms: list[Arm]) -> str:
    """The markdown table of both arms, the ratios against pair by pair."""
    base = arms[0]
    cols = [
        "order",
        "labels",
        "prompt tokens",
        "evaluated",
        "reused",
        "reused share",
        "evaluated ÷ pair by pair",
        "label wall s",
    ]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for arm in arms:
        ev, re_ = arm.backend.evaluated_tokens, arm.backend.reused_tokens
        row = [
            arm.name,
            str(len(arm.prefs)),
            str(ev + re_),
            str(ev),
            str(re_),
            f"{re_ / (ev + re_):.1%}",
            f"{ev / base.backend.evaluated_tokens:.3f}",
            f"{arm.seconds:.1f}",
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def commit() -> str:
    """The checkout's commit, or "unknown"."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print (and with ``--out`` write) the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--responses", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--out", type=Path, help="also write the table to this markdown file")
    args = ap.parse_args(argv)

    start = time.perf_counter()
    per_prompt = sample_pairs(args.prompts, args.responses, args.max_tokens)
    print(f"sampled in {time.perf_counter() - start:.0f} s", flush=True)
    constitution = default_constitution()
    arms = [Arm(name, Judge(open_model(), constitution)) for name in ORDERS]
    try:
        for i, pairs in enumerate(per_prompt):
            for arm in arms[i % 2 :] + arms[: i % 2]:
                arm.label(pairs)
            print(f"  {i + 1}/{len(per_prompt)} prompts", flush=True)
        identical = same_labels(arms[0].prefs, arms[1].prefs)
        header = (
            f"{args.prompts} built-in prompts, {args.responses} responses each "
            f"(≤{args.max_tokens} tokens), all pairs, both orders; embedded judge "
            f"(SmolLM2-135M, llama.cpp); commit {commit()}, {platform.machine()}, "
            f"{os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M')}.\n"
        )
        planned, plain = (a.backend.evaluated_tokens for a in arms[::-1])
        text = (
            f"{header}\n{table(arms)}\n\nplanned evaluates {1 - planned / plain:.1%} fewer "
            f"judge tokens; labels identical: {'yes' if identical else 'NO'}\n"
        )
    finally:
        for arm in arms:
            arm.backend.close()
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
