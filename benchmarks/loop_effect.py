"""Does ``rlaif loop`` make the embedded model better? Win rate of the final policy against the
base model on held-out prompts, with the guards that catch a win bought by a broken policy,
over several seeds.

Each configuration runs the real CLI, ``rlaif loop``, from SmolLM2-135M for ``--rounds``
rounds on AlpacaEval instructions (../shared/data; training and held-out prompts disjoint),
then ``rlaif eval winrate`` of the last round's policy against the base model (the same
weights through the same backend) on the held-out prompts, judged by the yardstick
``rule:words=8-40``: an answer of 8 to 40 words **that ended by itself** (an answer cut at the
token limit fails, whatever its first tokens hold; the win rate passes each answer's end to the
rule). Configurations:

* ``rule``: the loop's judge is the rule itself;
* ``rule-filter``: as ``rule``, with DPO leaving out pairs whose chosen answer is cut off or
  stuck in a loop (``--dpo-degenerate-chosen drop``; they may still be rejected);
* ``rule-nll``: as ``rule`` with the chosen answers' NLL in the DPO loss at weight 1;
* ``rule-hard``: as ``rule`` with the hard DPO loss: the rule's decisive labels come at
  p = 0.731 (a one-point score difference through the sigmoid), which the soft loss reads as a
  target margin, while the hard loss pushes every chosen answer up without bound (the clean
  counterpart of ``noisy-hard``);
* ``hybrid``: the embedded AI judge under the default constitution with the rule as the check
  of **every** principle, so it decides each comparison whose two answers differ on it, whatever
  principle is sampled; the AI judge decides the rest;
* ``ai`` / ``ai-nll``: the embedded AI judge alone, default constitution, DPO NLL weight 0 / 1
  (reported whatever it is);
* ``noisy-soft`` / ``noisy-hard``: the rule's label of a fixed share (:data:`NOISY_FLIP`,
  chosen by a hash of the pair) of the **decisive pairs** turned around, each decisive label at
  p = 0.75 to match, trained with the soft or the hard loss;
* ``rule-norepeat`` / ``rule-noloop``: two checks summed, a point for the yardstick and a point
  for ``rule:no_repeat`` / ``rule:no_loop`` (the looping guard's own test).

``--seeds 0,1,2`` runs every configuration once per seed (sampling, DPO; the prompts stay the
same). Per row the table gives the mean win rate over seeds, their min-max, and an interval
that includes seed variance (a two-level bootstrap: seeds drawn with replacement, then prompts
within each seed), the rule/AI split of the training labels, and the guards of the final
policy's greedy held-out answers: pass rate, truncated, near-empty and looping shares, mean
words, KL to the base. Everything is written under ``--out`` and a rerun resumes (each loop and
evaluation is resumable).

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
    "rule-filter",
    "rule-nll",
    "rule-hard",
    "hybrid",
    "ai",
    "ai-nll",
    "noisy-soft",
    "noisy-hard",
    "rule-norepeat",
    "rule-noloop",
)
#: the configurations a plain run measures (the rows of the table in docs/results/loop-effect.md)
DEFAULT_CONFIGS = ("rule", "rule-filter", "hybrid", "ai", "ai-nll", "noisy-soft", "noisy-hard")
#: the share of decisive pairs whose label the noisy rule turns around
NOISY_FLIP = 0.25
#: p of a noisy decisive label, matching the flip rate
NOISY_P = 1 - NOISY_FLIP
#: the loop judge of each configuration
JUDGES = {
    "rule": RULE,
    "rule-filter": RULE,
    "rule-nll": RULE,
    "rule-hard": RULE,
    "hybrid": "smollm2",
    "ai": "smollm2",
    "ai-nll": "smollm2",
    "noisy-soft": "python:loop_effect:words_noisy",
    "noisy-hard": "python:loop_effect:words_noisy",
    "rule-norepeat": "python:loop_effect:words_norepeat",
    "rule-noloop": "python:loop_effect:words_noloop",
}


def _texts(completions: list) -> list[str]:
    return [c[-1]["content"] if isinstance(c, list) else str(c) for c in completions]


def flipped(a: str, b: str) -> bool:
    """Whether the noisy rule turns the label of the pair (a, b) around: a hash of the pair,
    the same in either order, below :data:`NOISY_FLIP`."""
    key = "\x00".join(sorted((a, b))).encode()
    return int(hashlib.sha256(key).hexdigest()[:8], 16) / 2**32 < NOISY_FLIP


def words_noisy(
    prompts: list, completions: list, truncated: list | None = None, **_: object
) -> list[float]:
    """The yardstick with a known share of its decisive pair labels turned around.

    rlaif's rule judge scores a pair in one call of two completions: for those, a pair the rule
    decides is turned around when :func:`flipped`, so exactly the pairs chosen by the hash are
    flipped and the rest kept. Scores are scaled so that a decisive label is p = 0.75, matching
    the flip rate (a TRL reward function; single completions are scored without noise).
    """
    from rlaif.rules import BuiltinRule

    passed = BuiltinRule(RULE)(prompts, completions, truncated)
    scale = math.log(NOISY_P / (1 - NOISY_P))
    texts = _texts(completions)
    if len(texts) == 2 and passed[0] != passed[1] and flipped(*texts):
        passed = passed[::-1]
    return [scale * ok for ok in passed]


def _yardstick_plus(check: str, prompts: list, completions: list, truncated) -> list[float]:
    """One point for the yardstick, one for passing ``check`` (a second ``rule:`` string)."""
    from rlaif.rules import BuiltinRule

    length = BuiltinRule(RULE)(prompts, completions, truncated)
    second = BuiltinRule(check)(prompts, completions)
    return [a + b for a, b in zip(length, second, strict=True)]


def words_norepeat(
    prompts: list, completions: list, truncated: list | None = None, **_: object
) -> list[float]:
    """One point for the yardstick, one for no sentence said twice (a TRL reward function)."""
    return _yardstick_plus("rule:no_repeat", prompts, completions, truncated)


def words_noloop(
    prompts: list, completions: list, truncated: list | None = None, **_: object
) -> list[float]:
    """One point for the yardstick, one for an answer not stuck in a loop (the guard's test)."""
    return _yardstick_plus("rule:no_loop", prompts, completions, truncated)


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
    """The default constitution with the rule as the check of every principle, so the rule
    decides each comparison it separates, whatever principle is sampled."""
    from importlib import resources

    import yaml

    text = resources.files("rlaif.data").joinpath("constitution.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    for principle in data["principles"]:
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


def loop_args(config: str, args, seed: int, out: Path, train: Path, held: Path) -> list[str]:
    """The ``rlaif loop`` arguments of one configuration at one seed."""
    a = [
        "loop",
        "--out",
        str(out),
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
        JUDGES[config],
        "--loss",
        "hard" if config.endswith("-hard") else "soft",
        "--generate-with",
        args.generate_with,
        "--dpo-steps",
        str(args.dpo_steps),
        "--dpo-batch-size",
        str(args.dpo_batch_size),
        # stated, not left to the defaults, so that each row says what it trained with
        "--dpo-nll-weight",
        "1" if config.endswith("-nll") else str(args.dpo_nll_weight),
        "--dpo-degenerate-chosen",
        "drop" if config == "rule-filter" else "keep",
        "--seed",
        str(seed),
    ]
    if config == "hybrid":
        a += ["--constitution", str(hybrid_constitution(out.parent))]
    return a


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
        cut = [p[f"{role}_truncated"] for p in pairs]
        figures[role] = {
            "pass_rate": sum(rule([""] * len(texts), texts, cut)) / len(texts),
            **drift.answer_health(texts, cut),
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


def label_split(loop_dir: Path) -> dict:
    """Training labels of every round by who decided them: {"rule": n, "ai": n}."""
    split = {"rule": 0, "ai": 0}
    for info in sorted(loop_dir.glob("round-*/run/run.json")):
        for source, n in json.loads(info.read_text())["stats"].get("label_source", {}).items():
            split[source] = split.get(source, 0) + n
    return split


def run_config(config: str, seed: int, args, seed_dir: Path, train: Path, held: Path) -> dict:
    """One configuration at one seed: the loop, then the final policy against the base."""
    from rlaif.backends.checkpoints import resolve_checkpoint

    out = seed_dir / config
    seed_dir.mkdir(parents=True, exist_ok=True)
    log = seed_dir / f"{config}.log"
    started = time.time()
    rlaif(*loop_args(config, args, seed, out, train, held), log=log)
    final = out / f"round-{args.rounds}" / "policy"
    answering = f"{'gguf' if args.generate_with == 'gguf' else 'hf'}:{final}"
    ev = out / "final-vs-base"
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
    loop = json.loads((out / "loop.json").read_text())
    pairs = [json.loads(x) for x in (ev / "pairs.jsonl").read_text().splitlines()]
    return {
        "config": config,
        "seed": seed,
        "settings": loop["identity"],
        "win_rate": metrics["win_rate"],
        "win_rate_ci": metrics["win_rate_ci"],
        "n": metrics["n"],
        "wins": metrics["wins"],
        "losses": metrics["losses"],
        "ties": metrics["ties"],
        # each held-out prompt's credit (1 win, 0.5 tie, 0 loss): the seed-level bootstrap
        "credits": [CREDIT[p["outcome"]] for p in pairs if p["outcome"] in CREDIT],
        "labels": label_split(out),
        "rounds": [
            {k: r.get(k) for k in ("round", "pairs", "win_rate", "win_rate_ci")}
            for r in loop["rounds"]
        ],
        "guards": guards(ev, f"hf:{final}", "hf:" + metrics["baseline"].split(":", 1)[1]),
        "seconds": round(time.time() - started),
    }


CREDIT = {"win": 1.0, "tie": 0.5, "loss": 0.0}


def seed_interval(credits: list[list[float]], resamples: int = 4000, seed: int = 0) -> list:
    """95% interval of the mean win rate that includes seed variance: seeds drawn with
    replacement, then prompts drawn with replacement within each drawn seed."""
    import numpy as np

    rng = np.random.default_rng(seed)
    runs = [np.asarray(c) for c in credits]
    means = []
    for _ in range(resamples):
        picked = rng.integers(0, len(runs), size=len(runs))
        means.append(np.mean([rng.choice(runs[k], size=runs[k].size).mean() for k in picked]))
    low, high = np.quantile(means, [0.025, 0.975])
    return [float(low), float(high)]


def summarize(results: list[dict]) -> list[dict]:
    """One row per configuration: the mean over its seeds, their range, the seed-level interval,
    the label split and the guards averaged over seeds."""
    rows = []
    for config in dict.fromkeys(r["config"] for r in results):
        runs = [r for r in results if r["config"] == config]
        rates = [r["win_rate"] for r in runs]

        def mean_guard(role: str, key: str, runs=runs) -> float:
            return sum(r["guards"][role][key] for r in runs) / len(runs)

        keys = ("pass_rate", "truncated", "near_empty", "looping", "mean_words")
        rows.append(
            {
                "config": config,
                "seeds": [r["seed"] for r in runs],
                "nll": runs[0]["settings"].get("dpo_nll_weight", 0.0),
                "mean": sum(rates) / len(rates),
                "min": min(rates),
                "max": max(rates),
                "per_seed": [(r["seed"], r["win_rate"], r["win_rate_ci"]) for r in runs],
                "ci": seed_interval([r["credits"] for r in runs]),
                "labels": {k: sum(r["labels"].get(k, 0) for r in runs) for k in ("rule", "ai")},
                "base": {k: mean_guard("baseline", k) for k in keys},
                "policy": {k: mean_guard("policy", k) for k in keys},
                "kl": sum(r["guards"]["kl"]["per_token"] for r in runs) / len(runs),
            }
        )
    return rows


def meets_goal(row: dict) -> bool:
    """The goal of a rule configuration: mean >= 70% over the seeds, every seed's own interval
    above 50%, and truncated, looping and near-empty shares up by at most 2 points."""
    healthy = all(
        row["policy"][k] - row["base"][k] <= 0.02 for k in ("truncated", "looping", "near_empty")
    )
    return row["mean"] >= 0.70 and all(ci[0] > 0.5 for _, _, ci in row["per_seed"]) and healthy


def table(results: list[dict]) -> str:
    """The markdown table of docs/results/loop-effect.md: one row per configuration, over its
    seeds."""

    def pct(x):
        return f"{100 * x:.0f}%"

    def moved(row, key):
        return f"{pct(row['base'][key])} → {pct(row['policy'][key])}"

    lines = [
        "| loop judge | NLL | seeds | win rate vs base, mean [95% CI with seed variance] "
        "| min-max | labels rule / AI | pass rate | truncated | near-empty | looping "
        "| mean words | KL | goal |",
        "|---|---:|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in summarize(results):
        ci = row["ci"]
        split = row["labels"]
        total = max(1, split["rule"] + split["ai"])
        lines.append(
            f"| {row['config']} | {row['nll']:g} | {','.join(map(str, row['seeds']))} "
            f"| {pct(row['mean'])} [{pct(ci[0])}, {pct(ci[1])}] "
            f"| {pct(row['min'])}-{pct(row['max'])} "
            f"| {pct(split['rule'] / total)} / {pct(split['ai'] / total)} "
            f"| {moved(row, 'pass_rate')} | {moved(row, 'truncated')} "
            f"| {moved(row, 'near_empty')} | {moved(row, 'looping')} "
            f"| {row['base']['mean_words']:.0f} → {row['policy']['mean_words']:.0f} "
            f"| {row['kl']:.3f} | {'met' if meets_goal(row) else 'not met'} |"
        )
    return "\n".join(lines)


def per_seed_table(results: list[dict]) -> str:
    """Each run on its own line: configuration, seed, win rate with its prompt interval."""
    lines = ["| loop judge | seed | win rate [95% CI, prompts] | W / L / T | minutes |"]
    lines.append("|---|---:|---|---|---:|")
    for r in results:
        ci = r["win_rate_ci"]
        lines.append(
            f"| {r['config']} | {r['seed']} | {100 * r['win_rate']:.0f}% "
            f"[{100 * ci[0]:.0f}%, {100 * ci[1]:.0f}%] | {r['wins']} / {r['losses']} / "
            f"{r['ties']} | {r['seconds'] / 60:.0f} |"
        )
    return "\n".join(lines)


def main() -> int:
    """Run the chosen configurations at every seed and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-loop")
    parser.add_argument(
        "--configs", default=",".join(DEFAULT_CONFIGS), help=f"comma-separated, of {CONFIGS}"
    )
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated loop seeds")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--prompts-per-round", type=int, default=32)
    parser.add_argument("--n-responses", type=int, default=4)
    parser.add_argument("--eval-n", type=int, default=64, help="held-out prompts, final vs base")
    parser.add_argument("--round-eval-n", type=int, default=16, help="held-out prompts a round")
    parser.add_argument("--eval-max-tokens", type=int, default=72)
    parser.add_argument("--generate-with", default="gguf", choices=("gguf", "hf"))
    parser.add_argument("--dpo-steps", type=int, default=24, help="DPO steps a round")
    parser.add_argument("--dpo-batch-size", type=int, default=4)
    parser.add_argument(
        "--dpo-nll-weight", type=float, default=0.0, help="every configuration but *-nll"
    )
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        help="print the tables of these earlier --out folders' results; run nothing",
    )
    args = parser.parse_args()
    if args.merge:
        try:
            results = merged_results(args.merge)
        except ValueError as e:
            parser.error(str(e))
        print(table(results) + "\n\n" + per_seed_table(results))
        print_samples(results)
        return 0
    configs = args.configs.split(",")
    unknown = sorted(set(configs) - set(CONFIGS))
    if unknown:
        parser.error(f"unknown --configs {unknown}; choose from {CONFIGS}")
    sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT)]
    args.out.mkdir(parents=True, exist_ok=True)
    train, held = write_prompts(
        args.out, args.rounds * args.prompts_per_round, max(args.eval_n, args.round_eval_n)
    )
    results_file = args.out / "results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else []
    done = {(r["config"], r["seed"]) for r in results}
    for seed in map(int, args.seeds.split(",")):
        for config in configs:
            if (config, seed) in done:
                continue
            print(f"== {config}, seed {seed}", file=sys.stderr, flush=True)
            results.append(run_config(config, seed, args, args.out / f"seed-{seed}", train, held))
            results_file.write_text(json.dumps(results, indent=2) + "\n")
            print(table(results), flush=True)
    print(per_seed_table(results))
    print_samples(results)
    return 0


def merged_results(folders: list[Path]) -> list[dict]:
    """The results of several --out folders, each (configuration, seed) once.

    A seed in two folders would be counted twice in the row's mean and interval: an identical
    copy (the same run kept in two places) is kept once, a differing one is an error.
    """
    merged: dict[tuple[str, int], tuple[dict, Path]] = {}
    for folder in folders:
        for r in json.loads((folder / "results.json").read_text()):
            key = (r["config"], r["seed"])
            if key not in merged:
                merged[key] = (r, folder)
            elif merged[key][0] != r:
                raise ValueError(
                    f"{r['config']} seed {r['seed']} is in both {merged[key][1]} and {folder} "
                    "with different results; merge one of them"
                )
    return [r for r, _ in merged.values()]


def print_samples(results: list[dict]) -> None:
    """Each run's rounds, time and three sample answers of base and policy."""
    for r in results:
        print(f"\n{r['config']} (seed {r['seed']}): rounds {r['rounds']}; {r['seconds']} s")
        for s in r["guards"]["samples"]:
            print(f"  prompt: {s['prompt'][:80]!r}\n    base:   {s['base'][:160]!r}")
            print(f"    policy: {s['policy'][:160]!r}")


if __name__ == "__main__":
    sys.exit(main())
