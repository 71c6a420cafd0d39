"""Does ``rlaif loop`` make the embedded model better? Win rate of the final policy against the
base model on held-out prompts, with the guards that catch a win bought by a broken policy.

Each configuration runs the real CLI, ``rlaif loop``, from SmolLM2-135M for ``--rounds``
rounds on AlpacaEval instructions (../shared/data; training and held-out prompts disjoint),
then ``rlaif eval winrate`` of the last round's policy against the base model (the same
weights through the same backend) on the held-out prompts, judged by the rule
``rule:words=8-40`` (an answer of 8 to 40 words: the yardstick every configuration is
measured by, known to be right by construction):

* ``rule``: the loop's judge is the rule itself;
* ``hybrid``: the embedded AI judge under a constitution whose ``concise`` principle carries
  the rule as its check (the rule decides when the two answers differ on it);
* ``ai``: the embedded AI judge alone, default constitution (reported whatever it is);
* ``noisy-soft`` / ``noisy-hard``: the rule's labels flipped for about a quarter of the
  decisive pairs, with p = 0.75 (matching the flip rate), trained with the soft or hard loss;
* ``rule-nll``: as ``rule`` with the chosen answers' NLL in the DPO loss at weight 1
  (``--dpo-nll-weight 1``; the other configurations take ``--dpo-nll-weight``, default 0);
* ``rule-norepeat``: two checks summed, a point for 8 to 40 words and a point for no sentence
  said twice (the built-in ``rule:no_repeat``, a different test from the looping guard's);
* ``rule-noloop``: two checks summed, a point for 8 to 40 words and a point for an answer the
  looping guard does not flag (:func:`rlaif.train.drift.is_looping`: the reward and the guard
  share their test, so the samples and the other guards must show that the loops are gone).

Beside every win rate: the rule's pass rate, the shares of near-empty and looping answers and
the mean length of base and policy, the KL of the policy to the base on its own held-out
answers, and three sample answers. Everything is written under ``--out`` and a rerun of the
same command resumes (each loop and evaluation is resumable).

    .venv/bin/python benchmarks/loop_effect.py --out runs/bench-loop   # see --help for sizes
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALPACA = ROOT.parent / "shared" / "data" / "prompts" / "alpaca-eval-805.json"
RULE = "rule:words=8-40"
CONFIGS = (
    "rule",
    "hybrid",
    "ai",
    "noisy-soft",
    "noisy-hard",
    "rule-nll",
    "rule-norepeat",
    "rule-noloop",
)
#: p of a noisy label: a quarter of the decisive labels are flipped
NOISY_P = 0.75
#: share of responses whose pass/fail the noisy rule reads wrong: 2 f (1 - f) = 0.25
NOISY_FLIP = (1 - math.sqrt(0.5)) / 2


def _texts(completions: list) -> list[str]:
    return [c[-1]["content"] if isinstance(c, list) else str(c) for c in completions]


def words_noisy(prompts: list, completions: list, **_: object) -> list[float]:
    """The rule ``words=8-40``, read wrong for a fixed share of responses (by a hash of the
    text), scaled so that a decisive pair's label is p = 0.75 (a TRL reward function)."""
    from rlaif.rules import BuiltinRule

    passed = BuiltinRule(RULE)(prompts, completions)
    out = []
    for text, ok in zip(_texts(completions), passed, strict=True):
        h = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 2**32
        out.append(math.log(NOISY_P / (1 - NOISY_P)) * ((ok > 0) != (h < NOISY_FLIP)))
    return out


def words_norepeat(prompts: list, completions: list, **_: object) -> list[float]:
    """One point for 8 to 40 words, one for no sentence said twice (a TRL reward function)."""
    from rlaif.rules import BuiltinRule

    length = BuiltinRule(RULE)(prompts, completions)
    fresh = BuiltinRule("rule:no_repeat")(prompts, completions)
    return [a + b for a, b in zip(length, fresh, strict=True)]


def words_noloop(prompts: list, completions: list, **_: object) -> list[float]:
    """One point for 8 to 40 words, one for an answer not stuck in a loop (the guard's test)."""
    from rlaif.rules import BuiltinRule
    from rlaif.train.drift import is_looping

    length = BuiltinRule(RULE)(prompts, completions)
    return [a + (not is_looping(t)) for a, t in zip(length, _texts(completions), strict=True)]


def write_prompts(out: Path, train_n: int, eval_n: int) -> tuple[Path, Path]:
    """Disjoint training and held-out prompt files drawn from AlpacaEval (a fixed order)."""
    if not ALPACA.is_file():
        sys.exit(f"{ALPACA}: not found; this benchmark needs ../shared/data beside the checkout")
    rows = json.loads(ALPACA.read_text(encoding="utf-8"))
    texts = sorted({r["instruction"].strip() for r in rows if len(r["instruction"]) < 200})
    random.Random(1).shuffle(texts)
    if len(texts) < train_n + eval_n:
        sys.exit(f"only {len(texts)} prompts for {train_n} + {eval_n}")
    paths = (out / "train_prompts.jsonl", out / "heldout_prompts.jsonl")
    for path, part in zip(paths, (texts[:train_n], texts[train_n : train_n + eval_n]), strict=True):
        path.write_text(
            "".join(json.dumps({"id": f"a{i}", "prompt": t}) + "\n" for i, t in enumerate(part)),
            encoding="utf-8",
        )
    return paths


def hybrid_constitution(out: Path) -> Path:
    """The default constitution with the rule as the check of its ``concise`` principle."""
    from importlib import resources

    import yaml

    text = resources.files("rlaif.data").joinpath("constitution.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    for principle in data["principles"]:
        if principle["id"] == "concise":
            principle["check"] = RULE
    path = out / "hybrid_constitution.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def rlaif(*args: str, log: Path) -> None:
    """Run the real CLI; its output goes to ``log``; exit with the log's tail on failure."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'benchmarks'}{os.pathsep}{ROOT}"}
    with log.open("a", encoding="utf-8") as f:
        f.write(f"$ rlaif {' '.join(args)}\n")
        f.flush()
        proc = subprocess.run(
            [sys.executable, "-m", "rlaif", *args, "--quiet"], stdout=f, stderr=f, env=env
        )
    if proc.returncode:
        sys.exit(f"rlaif {' '.join(args)} failed; see {log}")


def loop_args(config: str, args, out: Path, train: Path, held: Path) -> list[str]:
    """The ``rlaif loop`` arguments of one configuration."""
    judge = {
        "rule": RULE,
        "rule-nll": RULE,
        "rule-norepeat": "python:loop_effect:words_norepeat",
        "rule-noloop": "python:loop_effect:words_noloop",
        "hybrid": "smollm2",
        "ai": "smollm2",
    }.get(config, "python:loop_effect:words_noisy")
    a = [
        "loop",
        "--out",
        str(out / config),
        "--rounds",
        str(args.rounds),
        "--prompts",
        str(train),
        "--eval-prompts",
        str(held),
        "--eval-n",
        str(args.round_eval_n),
        "--prompts-per-round",
        str(args.prompts_per_round),
        "--n-responses",
        str(args.n_responses),
        "--judge",
        judge,
        "--loss",
        "hard" if config == "noisy-hard" else "soft",
        "--generate-with",
        args.generate_with,
        "--dpo-steps",
        str(args.dpo_steps),
        "--dpo-batch-size",
        str(args.dpo_batch_size),
    ]
    if config == "hybrid":
        a += ["--constitution", str(hybrid_constitution(out))]
    # stated, not left to the default, so that each row says what it trained with
    a += ["--dpo-nll-weight", "1" if config == "rule-nll" else str(args.dpo_nll_weight)]
    return a + ["--seed", str(args.seed)]


def guards(out: Path, final: str, base: str) -> dict:
    """Rule pass rate, health and samples from the win rate's answers; KL of policy to base."""
    from rlaif.rules import BuiltinRule
    from rlaif.train import drift
    from rlaif.train.models import load_model_and_tokenizer

    pairs = [json.loads(x) for x in (out / "pairs.jsonl").read_text().splitlines()]
    rule = BuiltinRule(RULE)
    figures: dict = {}
    for role in ("policy", "baseline"):
        texts = [p[f"{role}_response"] for p in pairs]
        figures[role] = {
            "pass_rate": sum(rule([""] * len(texts), texts)) / len(texts),
            **drift.answer_health(texts),
        }
    policy, tokenizer = load_model_and_tokenizer(final)
    reference, _ = load_model_and_tokenizer(base)
    prompts = [p["prompt"] for p in pairs]
    texts = [p["policy_response"] for p in pairs]
    figures["kl"] = drift.kl_to_reference(policy, reference, tokenizer, prompts, texts)
    figures["samples"] = [
        {"prompt": p["prompt"], "base": p["baseline_response"], "policy": p["policy_response"]}
        for p in pairs[:3]
    ]
    return figures


def run_config(config: str, args, out: Path, train: Path, held: Path) -> dict:
    """One configuration: the loop, then the final policy against the base, with guards."""
    from rlaif.backends.checkpoints import resolve_checkpoint

    log = out / f"{config}.log"
    started = time.time()
    rlaif(*loop_args(config, args, out, train, held), log=log)
    final = out / config / f"round-{args.rounds}" / "policy"
    answering = f"{'gguf' if args.generate_with == 'gguf' else 'hf'}:{final}"
    ev = out / config / "final-vs-base"
    rlaif(
        "eval",
        "winrate",
        "--policy",
        answering,
        # the base model, not the round the policy was trained from (winrate's default)
        "--baseline",
        f"{args.generate_with}:{resolve_checkpoint('smollm2')}",
        "--judge",
        RULE,
        "--prompts",
        str(held),
        "--out",
        str(ev),
        "--max-tokens",
        str(args.eval_max_tokens),
        log=log,
    )
    metrics = json.loads((ev / "metrics.json").read_text())
    loop = json.loads((out / config / "loop.json").read_text())
    return {
        "config": config,
        "settings": loop["identity"],
        "win_rate": metrics["win_rate"],
        "win_rate_ci": metrics["win_rate_ci"],
        "n": metrics["n"],
        "wins": metrics["wins"],
        "losses": metrics["losses"],
        "ties": metrics["ties"],
        "rounds": [
            {k: r.get(k) for k in ("round", "pairs", "win_rate", "win_rate_ci")}
            for r in loop["rounds"]
        ],
        "guards": guards(ev, f"hf:{final}", "hf:" + metrics["baseline"].split(":", 1)[1]),
        "seconds": round(time.time() - started),
    }


def table(results: list[dict]) -> str:
    """The markdown table of the README."""

    def pct(x):
        return f"{100 * x:.0f}%"

    lines = [
        "| loop judge | DPO NLL weight | final vs base (rule) [95% CI] | W / L / T "
        "| pass rate base → policy | near-empty | looping | mean words | KL (nats/token) |",
        "|---|---:|---|---|---|---|---|---|---|",
    ]
    for r in results:
        g, ci = r["guards"], r["win_rate_ci"]
        b, p = g["baseline"], g["policy"]
        nll = r.get("settings", {}).get("dpo_nll_weight", 0.0)
        seed = r.get("settings", {}).get("seed", 0)
        name = r["config"] + (f" (seed {seed})" if seed else "")
        lines.append(
            f"| {name} | {nll:g} | {pct(r['win_rate'])} [{pct(ci[0])}, {pct(ci[1])}] "
            f"| {r['wins']} / {r['losses']} / {r['ties']} "
            f"| {pct(b['pass_rate'])} → {pct(p['pass_rate'])} "
            f"| {pct(b['near_empty'])} → {pct(p['near_empty'])} "
            f"| {pct(b['looping'])} → {pct(p['looping'])} "
            f"| {b['mean_words']:.0f} → {p['mean_words']:.0f} | {g['kl']['per_token']:.3f} |"
        )
    return "\n".join(lines)


def main() -> int:
    """Run the chosen configurations and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-loop")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--prompts-per-round", type=int, default=32)
    parser.add_argument("--n-responses", type=int, default=4)
    parser.add_argument("--eval-n", type=int, default=64, help="held-out prompts, final vs base")
    parser.add_argument("--round-eval-n", type=int, default=16, help="held-out prompts a round")
    parser.add_argument("--eval-max-tokens", type=int, default=72)
    parser.add_argument("--generate-with", default="gguf", choices=("gguf", "hf"))
    parser.add_argument("--dpo-steps", type=int, default=24, help="DPO steps a round")
    parser.add_argument("--dpo-batch-size", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0, help="the loop's seed (sampling, DPO)")
    parser.add_argument(
        "--dpo-nll-weight", type=float, default=0.0, help="every configuration but rule-nll"
    )
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        help="print the table and samples of these earlier --out folders' results; run nothing",
    )
    args = parser.parse_args()
    if args.merge:
        results = [r for d in args.merge for r in json.loads((d / "results.json").read_text())]
        print(table(results))
        print_samples(results)
        return 0
    sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT)]
    args.out.mkdir(parents=True, exist_ok=True)
    train, held = write_prompts(
        args.out, args.rounds * args.prompts_per_round, max(args.eval_n, args.round_eval_n)
    )
    results = []
    for config in args.configs.split(","):
        print(f"== {config}", file=sys.stderr, flush=True)
        results.append(run_config(config, args, args.out, train, held))
        (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        print(table(results), flush=True)
    print_samples(results)
    return 0


def print_samples(results: list[dict]) -> None:
    """Each configuration's rounds, time and three sample answers of base and policy."""
    for r in results:
        print(f"\n{r['config']}: rounds {r['rounds']}; {r['seconds']} s")
        for s in r["guards"]["samples"]:
            print(f"  prompt: {s['prompt'][:80]!r}\n    base:   {s['base'][:160]!r}")
            print(f"    policy: {s['policy'][:160]!r}")


if __name__ == "__main__":
    sys.exit(main())
