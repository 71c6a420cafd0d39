"""How fast a trained policy generates: through transformers (``hf:DIR``) or its GGUF export.

One run measures three ways of generating the same answers (the first ``--prompts`` built-in
prompts, ``--max-tokens`` each, greedy, through the policy chat template a run uses):

(a) the embedded model (SmolLM2-135M-Instruct, Q4_1 GGUF) through llama.cpp: ``smollm2``;
(b) a checkpoint through transformers, one prompt at a time: ``hf:DIR``;
(c) the same checkpoint exported to a float16 GGUF and run by llama.cpp: ``gguf:DIR``.

The checkpoint is by default a copy (under ``--work``) of the embedded model's converted
checkpoint, the one every rlaif training run starts from; ``--checkpoint DIR`` names another.
The three take turns prompt by prompt (who goes first rotates), so load from other processes
hits all alike; the table gives each one's generated tokens per second of wall time over all
rounds (prompt evaluation included, as in a run), the range of its rounds, and its ratio to
(a); then the one-time export and how many of (b)'s and (c)'s answers are identical.

    RLAIF_N_THREADS=1 .venv/bin/python benchmarks/policy_generation.py --rounds 3
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import time
from pathlib import Path


def main() -> None:
    """Measure the three ways, interleaved, and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--work", type=Path, default=Path("/tmp/rlaif-policy-generation"))
    args = parser.parse_args()

    from rlaif.backends import load_backend
    from rlaif.backends.checkpoints import resolve_checkpoint
    from rlaif.backends.gguf_export import export_gguf, gguf_path
    from rlaif.backends.llamacpp import _default_threads
    from rlaif.prompts import load_prompts

    checkpoint = args.checkpoint
    if checkpoint is None:
        checkpoint = args.work / "checkpoint"
        if not checkpoint.is_dir():
            shutil.copytree(resolve_checkpoint("smollm2"), checkpoint)
    export = gguf_path(checkpoint)
    export.unlink(missing_ok=True)  # time the export too
    t = time.perf_counter()
    export_gguf(checkpoint)
    export_s = time.perf_counter() - t

    specs = {
        "(a) embedded, llama.cpp": "smollm2",
        "(b) checkpoint, transformers": f"hf:{checkpoint}",
        "(c) checkpoint's GGUF, llama.cpp": f"gguf:{checkpoint}",
    }
    backends = {name: load_backend(spec) for name, spec in specs.items()}
    messages = [p.chat() for p in load_prompts(limit=args.prompts)]
    for backend in backends.values():  # warm up: weights paged in, first-call costs paid
        backend.generate(messages[0], max_tokens=8, temperature=0.0)

    names = list(backends)
    tokens = {name: [0] * args.rounds for name in names}
    seconds = {name: [0.0] * args.rounds for name in names}
    texts: dict[str, list[str]] = {name: [] for name in names}
    for i in range(args.rounds):
        for j, m in enumerate(messages):
            k = (i * len(messages) + j) % len(names)  # rotate who goes first, prompt by prompt
            for name in names[k:] + names[:k]:
                t = time.perf_counter()
                gen = backends[name].generate(m, max_tokens=args.max_tokens, temperature=0.0)
                seconds[name][i] += time.perf_counter() - t
                tokens[name][i] += gen.completion_tokens
                if i == 0:
                    texts[name].append(gen.text.strip())
        print(
            f"round {i + 1}: "
            + ", ".join(f"{n} {tokens[n][i] / seconds[n][i]:.1f} tok/s" for n in names),
            file=sys.stderr,
        )
    rate = {n: sum(tokens[n]) / sum(seconds[n]) for n in names}
    spread = {n: [t / s for t, s in zip(tokens[n], seconds[n], strict=True)] for n in names}
    same = sum(a == b for a, b in zip(texts[names[1]], texts[names[2]], strict=True))
    threads = os.environ.get("RLAIF_N_THREADS")
    print(
        f"\n{args.prompts} prompts x {args.max_tokens} tokens, greedy, "
        f"{_default_threads()} threads ({'RLAIF_N_THREADS' if threads else 'every core'}), "
        f"{os.cpu_count()} cores, {platform.machine()}, {args.rounds} rounds interleaved "
        f"prompt by prompt; checkpoint {checkpoint}\n"
    )
    print("| model | tokens | seconds | tok/s | rounds' tok/s | vs (a) |")
    print("|---|---|---|---|---|---|")
    for n in names:
        print(
            f"| {n} | {sum(tokens[n])} | {sum(seconds[n]):.1f} | {rate[n]:.1f} | "
            f"{min(spread[n]):.1f}-{max(spread[n]):.1f} | {rate[n] / rate[names[0]]:.2f} |"
        )
    print(
        f"\nexport to {export.name}: {export_s:.1f} s, once; {export.stat().st_size / 1e6:.0f} MB. "
        f"Answers identical between (b) and (c): {same} of {len(messages)}."
    )
    for backend in backends.values():
        backend.close()


if __name__ == "__main__":
    main()
