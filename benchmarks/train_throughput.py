"""Training throughput on the embedded model: reward model and DPO, next to the raw rate.

One run measures, on the same preference pairs and the same model (SmolLM2-135M-Instruct,
converted once from the embedded GGUF, float32):

* **raw forward+backward**, twice: the causal LM with its language-modelling loss (logits
  over the 49k-token vocabulary, what DPO computes) and the transformer body alone (what a
  reward model with a one-number head computes); batches of prompt + response sequences
  (both sides of ``--batch-size`` pairs), ``backward`` and an AdamW step, nothing around it;
* **reward**: ``rlaif.train.reward.train_reward`` (one forward+backward over chosen and
  rejected per pair; the loop alone, without the held-out evaluation);
* **DPO**: ``rlaif.train.dpo.train_dpo`` (TRL's DPOTrainer: policy forward+backward plus a
  reference forward on both sides).

Rates are non-padding training tokens per second of wall time and per CPU-second of this
process (``time.process_time``); the second moves much less when other processes share the
cores. The machine may be shared, so the four are measured in rounds and each round's ratio
to its own raw rates is reported; compare ratios, not absolute numbers, across runs. The last
line estimates the demo-sized ``rlaif train dpo`` (the pairs of ``make demo``: 32 prompts,
about 3 pairs each) in CPU-minutes from the DPO rate and the mean tokens of a pair here.

    RLAIF_N_THREADS=2 .venv/bin/python benchmarks/train_throughput.py --rounds 2 --steps 3

Without ``--data`` it first makes a small preferences file with the real CLI
(``rlaif run --limit 4 --n-responses 3 --revisions 0``).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: pairs ``make demo`` produces: 32 prompts x (1 pair of 2 responses + 2 revision pairs)
DEMO_PAIRS = 96


def make_data(work: Path) -> Path:
    """A small real preferences file, made with the CLI on the embedded model."""
    out = work / "run"
    cmd = [sys.executable, "-m", "rlaif", "run", "--limit", "4", "--n-responses", "3"]
    cmd += ["--revisions", "0", "--out", str(out), "--quiet"]
    print("making data:", " ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return out / "preferences.jsonl"


def raw_rate(
    model, tokenizer, pairs, batch_size: int, max_length: int, steps: int, head: bool = True
) -> tuple[float, float]:
    """(tokens per second, per CPU-second) of forward + backward + AdamW over pair batches.

    ``head=True``: the causal LM with its language-modelling loss (49k-token vocabulary
    logits, what DPO needs); ``head=False``: the transformer body alone (what a reward model
    with a one-number head needs), loss = mean of the last hidden states.
    """
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-7)
    model.train()
    tokens, seconds, cpu = 0, 0.0, 0.0
    for step in range(steps):
        batch = [pairs[(step * batch_size + i) % len(pairs)] for i in range(batch_size)]
        texts = [
            tokenizer.apply_chat_template(p.messages(side), tokenize=False)
            for p in batch
            for side in ("chosen", "rejected")
        ]
        enc = tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=max_length,
            add_special_tokens=False,
            return_tensors="pt",
        )
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        started, cpu_started = time.perf_counter(), time.process_time()
        if head:
            loss = model(**enc, labels=labels).loss
        else:
            loss = model.model(**enc).last_hidden_state.mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seconds += time.perf_counter() - started
        cpu += time.process_time() - cpu_started
        tokens += int(enc["attention_mask"].sum())
    return tokens / seconds, tokens / cpu


def pair_tokens(tokenizer, pairs, max_length: int) -> float:
    """Mean tokens of a pair: prompt + chosen and prompt + rejected, each cut at max_length."""
    total = 0
    for p in pairs:
        for side in ("chosen", "rejected"):
            text = tokenizer.apply_chat_template(p.messages(side), tokenize=False)
            total += min(max_length, len(tokenizer(text, add_special_tokens=False)["input_ids"]))
    return total / len(pairs)


def main(argv: list[str] | None = None) -> int:
    """Parse the options, measure in a temporary folder (removed at the end), print."""
    work = Path(tempfile.mkdtemp(prefix="rlaif-train-bench-"))
    try:
        return measure(argv, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # two 0.5 GB checkpoints per round


def measure(argv: list[str] | None, work: Path) -> int:
    """The benchmark; checkpoints and made data go under ``work``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="preferences JSONL (default: make one)")
    parser.add_argument("--rounds", type=int, default=2, help="measurement rounds (default 2)")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per measurement")
    parser.add_argument("--batch-size", type=int, default=4, help="pairs per step (default 4)")
    parser.add_argument("--max-length", type=int, default=384, help="tokens per sequence")
    parser.add_argument("--out", type=Path, help="also write the markdown table to this file")
    args = parser.parse_args(argv)

    import torch

    from rlaif.backends.checkpoints import resolve_checkpoint
    from rlaif.backends.llamacpp import _default_threads
    from rlaif.train.data import read_preferences
    from rlaif.train.dpo import DPOSettings, train_dpo
    from rlaif.train.models import load_model_and_tokenizer
    from rlaif.train.reward import RewardSettings, train_reward

    threads = _default_threads()
    torch.set_num_threads(threads)
    data = args.data or make_data(work)
    pairs = read_preferences(data)
    resolve_checkpoint("smollm2")  # convert once, outside the measurements
    model, tokenizer = load_model_and_tokenizer("smollm2")
    per_pair = pair_tokens(tokenizer, pairs, args.max_length)
    common = dict(data=str(data), model="smollm2", max_steps=args.steps)
    common.update(batch_size=args.batch_size, max_length=args.max_length)
    names = ["raw fwd+bwd, LM head", "raw fwd+bwd, body only", "reward", "DPO"]
    rows: list[dict[str, tuple[float, float]]] = []  # name -> (tokens/s, tokens/CPU-s)
    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}: raw, reward, dpo ...", flush=True)
        shape = (args.batch_size, args.max_length, args.steps)
        row = {
            names[0]: raw_rate(model, tokenizer, pairs, *shape, head=True),
            names[1]: raw_rate(model, tokenizer, pairs, *shape, head=False),
        }
        rw = train_reward(
            RewardSettings(**common, out=work / f"rm{r}", held_out=0.0), show_progress=False
        )
        dpo = train_dpo(DPOSettings(**common, out=work / f"dpo{r}"), show_progress=False)
        for name, info in ((names[2], rw), (names[3], dpo)):
            row[name] = (
                info["train_tokens"] / info["train_loop_seconds"],
                info["train_tokens"] / info["train_loop_cpu_seconds"],
            )
        rows.append(row)

    def med(name: str, k: int) -> float:
        return statistics.median(row[name][k] for row in rows)

    def ratio(name: str, base: str) -> float:
        return statistics.median(row[name][0] / row[base][0] for row in rows)

    dpo_cpu_rate = med("DPO", 1)
    demo_cpu_min = DEMO_PAIRS * per_pair / dpo_cpu_rate / 60
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        f"SmolLM2-135M-Instruct (float32), {len(pairs)} pairs of {data.name}, "
        f"{per_pair:.0f} tokens per pair (both sides), batch {args.batch_size} pairs, "
        f"max length {args.max_length}, {args.steps} steps x {args.rounds} rounds, "
        f"torch {torch.__version__}, {threads} thread(s), {platform.machine()}, "
        f"load average {load:.1f} at the end",
        "",
        "| what | tokens/s | tokens/CPU-s | / raw, LM head | / raw, body only |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {n} | {med(n, 0):.0f} | {med(n, 1):.0f} | {ratio(n, names[0]):.2f} "
            f"| {ratio(n, names[1]):.2f} |"
            for n in names
        ),
        "",
        "Medians over rounds; ratios are per round (same load), then the median.",
        "",
        f"Demo-sized `rlaif train dpo` ({DEMO_PAIRS} pairs, 1 epoch): about "
        f"{demo_cpu_min:.1f} CPU-minutes of training at the DPO rate per CPU-second "
        f"({threads} thread(s)); wall time on an idle machine is about that divided by the "
        "cores torch uses well, plus about a minute of loading.",
    ]
    output = "\n".join(lines)
    print()
    print(output)
    if args.out:
        args.out.write_text(output + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
