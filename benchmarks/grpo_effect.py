"""Does GRPO with a rule as reward make the embedded model better on held-out prompts?

The effect tests cover DPO and the reward model; GRPO's run is too long for CI on 2 cores,
so it is measured here. The reward is ``rule:words=8-40`` on an answer that ended within
``--max-tokens`` (an answer cut at the limit fails, whatever its word count). Prompts and
the starting model's own samples come from the effect tests' fixture
(tests/data/effect_responses.jsonl): GRPO trains on the training prompts where some of the
model's samples pass (1 to 8 of 10; elsewhere every sample of a group gets the same reward
and GRPO learns nothing), and is measured on all 32 held-out prompts (greedy answers) and on
the held-out prompts of the same kind (``--samples`` sampled answers each, temperature 1).

``--variant negated`` trains on 1 - reward: a sign error, which must not raise the figures.
``judge-pointwise`` and ``judge-group`` reward with the embedded judge under a one-principle
constitution whose check is the same rule (:mod:`rlaif.rewards`): pointwise, 0.0 where the
check fails an answer and p("Yes") elsewhere; group, each answer's mean probability of beating
the others of its prompt, pairs in both orders, the check deciding pairs it separates.
The table gives, per variant, the training reward of the first and last steps, the pass rate
base → policy (greedy, and sampled), the sampled gain paired by prompt and sample index with a
95% interval from a bootstrap over prompts (sampled answers of one prompt are not independent,
and the base rate is measured too), the shares of near-empty and looping greedy answers, mean
words and the KL of the policy to the base along its answers.

``--seeds 0,1`` trains each variant once per seed (the sampling of GRPO's groups) and adds a
table of each variant's mean gain over seeds and its range.

    RLAIF_N_THREADS=1 .venv/bin/python benchmarks/grpo_effect.py --variant rule negated
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "effect_responses.jsonl"
RULE = "rule:words=8-40"
#: tokens of a completion, in training and when measuring (the reward's limit)
MAX_TOKENS = 64
VARIANTS = ["rule", "negated", "judge-pointwise", "judge-group"]


def _passes(texts: list[str], truncated: list[bool]) -> list[float]:
    """1.0 for each answer that passes the rule and ended by itself, else 0.0."""
    from rlaif.rules import load_score_function

    scores = load_score_function(RULE)([[{"role": "user", "content": ""}]] * len(texts), texts)
    return [1.0 if s == 1.0 and not cut else 0.0 for s, cut in zip(scores, truncated, strict=True)]


def ended_answer(prompts: list, completions: list, completion_ids: list, **_: object) -> list:
    """The reward (a TRL reward function): the rule, on an answer that ended in time."""
    from rlaif.rules import completion_text

    texts = [completion_text(c) for c in completions]
    return _passes(texts, [len(ids) >= MAX_TOKENS for ids in completion_ids])


def ended_answer_negated(prompts: list, completions: list, completion_ids: list, **kw) -> list:
    """The reward with its sign turned: the broken variant."""
    return [1.0 - r for r in ended_answer(prompts, completions, completion_ids, **kw)]


#: the judge variants' constitution: one principle whose check is the measured rule
JUDGE_CONSTITUTION = {
    "name": "effect-answer",
    "principles": [
        {
            "id": "answer",
            "critique": "Does the response answer the request directly and briefly?",
            "revision": "Rewrite the response to answer the request directly in 8 to 40 words.",
            "comparison": "Which response answers the request more directly and briefly?",
            "pointwise": "Does the response answer the request directly, in 8 to 40 words?",
            "check": RULE,
        }
    ],
}
_POINTWISE: dict[str, object] = {}
CONSTITUTION_ENV = "RLAIF_EFFECT_CONSTITUTION"


def judge_pointwise(prompts: list, completions: list, completion_ids: list, **_: object) -> list:
    """The served judge's pointwise reward (rlaif.rewards): 0.0 where the check fails an
    answer (a cut-off answer fails it), else the embedded judge's p("Yes")."""
    from rlaif.constitution import load_constitution
    from rlaif.rewards import RewardJudge
    from rlaif.rules import completion_text

    if "judge" not in _POINTWISE:  # this module is imported again by name for python:
        path = os.environ[CONSTITUTION_ENV]
        _POINTWISE["judge"] = RewardJudge("smollm2", load_constitution(path))
    judge = _POINTWISE["judge"]
    return [
        judge.score_item(
            completion_text(p), completion_text(c).strip(), len(ids) >= MAX_TOKENS
        ).reward
        for p, c, ids in zip(prompts, completions, completion_ids, strict=True)
    ]


def _reward_settings(variant: str, work: Path) -> dict:
    """The GRPOSettings fields that choose a variant's reward."""
    if variant in ("rule", "negated"):
        function = "ended_answer" if variant == "rule" else "ended_answer_negated"
        return {"judge": f"python:grpo_effect:{function}"}
    path = work / "constitution.json"
    path.write_text(json.dumps(JUDGE_CONSTITUTION, indent=2), encoding="utf-8")
    if variant == "judge-pointwise":
        os.environ[CONSTITUTION_ENV] = str(path)
        return {"judge": "python:grpo_effect:judge_pointwise"}
    return {"judge": "smollm2", "constitution": str(path), "judge_mode": "group"}


def prompts(split: str, selected: bool) -> list[str]:
    """The fixture's prompts of a split; ``selected``: only those some samples pass."""
    rows = [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]
    out = []
    for r in rows:
        if r["split"] != split:
            continue
        passed = sum(
            _passes([s["text"] for s in r["samples"]], [s["truncated"] for s in r["samples"]])
        )
        if not selected or 1 <= passed <= 8:
            out.append(r["prompt"])
    return out


def sampled(model, tokenizer, texts: list[str], n: int, seed: int) -> list[float]:
    """Pass (1.0) or fail of ``n`` sampled answers per prompt, temperature 1."""
    from rlaif.train import drift

    answers = drift.sampled_answers(
        model, tokenizer, texts, n, seed=seed, max_new_tokens=MAX_TOKENS
    )
    return _passes([a.text for a in answers], [a.truncated for a in answers])


def run_variant(variant: str, seed: int, args) -> dict:
    """Train one GRPO policy (this training seed) and measure it against the base on the
    held-out prompts; a policy trained by an earlier run is measured, not trained again."""
    from rlaif.train.grpo import GRPOSettings, train_grpo

    work = args.out / (variant if seed == 0 else f"{variant}-seed{seed}")
    work.mkdir(parents=True, exist_ok=True)
    data = work / "prompts.jsonl"
    train = prompts("train", selected=True)
    data.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in train), encoding="utf-8")
    trained = work / "policy" / "train.json"
    wanted = {
        "max_steps": args.steps,
        "prompts_per_step": args.prompts_per_step,
        "num_generations": args.num_generations,
        "max_completion_length": MAX_TOKENS,
        "learning_rate": args.learning_rate,
        "seed": seed,
    }
    if trained.is_file():  # a rerun measures the trained policy again instead of retraining it
        info = json.loads(trained.read_text(encoding="utf-8"))
        had = {k: info["settings"].get(k) for k in wanted}
        if had != wanted:
            raise SystemExit(f"{trained}: trained with {had}, not {wanted}; use another --out")
        return measure_variant(variant, seed, args, work, info, info.get("time_s") or 0.0)
    started = time.time()
    info = train_grpo(
        GRPOSettings(
            data=str(data), out=work / "policy", **_reward_settings(variant, work), **wanted
        ),
        show_progress=False,
    )
    return measure_variant(variant, seed, args, work, info, time.time() - started)


def measure_variant(variant: str, seed: int, args, work: Path, info: dict, train_s: float) -> dict:
    """A trained variant's figures: training reward, pass rates base → policy, gain, guards."""
    from rlaif.stats import paired_gain
    from rlaif.train import drift
    from rlaif.train.models import load_model_and_tokenizer

    train = prompts("train", selected=True)
    rewards = [s["reward"] for s in info["steps"] if s.get("reward") is not None]
    base, tokenizer = load_model_and_tokenizer("smollm2")
    policy, _ = load_model_and_tokenizer(f"hf:{work / 'policy'}")
    base.eval()
    policy.eval()
    held = prompts("heldout", selected=False)
    kind = prompts("heldout", selected=True)
    result = {
        "variant": variant,
        "seed": seed,
        "steps": args.steps,
        "train_s": train_s,
        "prompts": len(train),
    }
    result["reward"] = (rewards[0], rewards[-1]) if rewards else (None, None)
    for name, model in (("base", base), ("policy", policy)):
        greedy = drift.greedy_answers(model, tokenizer, held, max_new_tokens=MAX_TOKENS + 8)
        texts = [a.text for a in greedy]
        result[name] = {
            "greedy": sum(_passes(texts, [a.truncated for a in greedy])) / len(held),
            "health": drift.answer_health(texts, [a.truncated for a in greedy]),
            "answers": texts,
        }
        result[name]["sampled"] = sampled(model, tokenizer, kind, args.samples, seed=1)
    clusters = [i // args.samples for i in range(len(result["base"]["sampled"]))]
    result["gain"] = paired_gain(result["base"]["sampled"], result["policy"]["sampled"], clusters)
    kl = drift.kl_to_reference(policy, base, tokenizer, held, result["policy"]["answers"])
    result["kl"] = kl["per_token"]
    return result


def table(results: list[dict]) -> str:
    """The results as a Markdown table."""

    def share(key: str, r: dict) -> str:
        return f"{r['base']['health'][key]:.0%} → {r['policy']['health'][key]:.0%}"

    def gain(g: dict) -> str:
        return f"{g['gain']:+.0%} [{g['ci'][0]:+.0%}, {g['ci'][1]:+.0%}]"

    lines = [
        "| variant | seed | steps | train reward first → last | greedy pass base → policy | "
        "sampled pass base → policy | sampled gain [95% CI, by prompt] | near-empty | looping "
        "| mean words | KL | train s |",
        "|---|---:|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        first, last = r["reward"]
        lines.append(
            f"| {r['variant']} | {r['seed']} | {r['steps']} | {first:.2f} → {last:.2f} | "
            f"{r['base']['greedy']:.0%} → {r['policy']['greedy']:.0%} | "
            f"{r['gain']['before']:.0%} → {r['gain']['after']:.0%} | {gain(r['gain'])} | "
            f"{share('near_empty', r)} | "
            f"{share('looping', r)} | {r['base']['health']['mean_words']:.0f} → "
            f"{r['policy']['health']['mean_words']:.0f} | {r['kl']:.3f} | {r['train_s']:.0f} |"
        )
    return "\n".join(lines)


def seed_table(results: list[dict]) -> str:
    """Per variant, the sampled gain's mean over seeds and its range (the seeds' spread)."""
    lines = [
        "| variant | seeds | sampled gain, mean over seeds | min-max | greedy pass, mean |",
        "|---|---|---|---|---|",
    ]
    for variant in dict.fromkeys(r["variant"] for r in results):
        rows = [r for r in results if r["variant"] == variant]
        gains = [r["gain"]["gain"] for r in rows]
        greedy = sum(r["policy"]["greedy"] for r in rows) / len(rows)
        lines.append(
            f"| {variant} | {','.join(str(r['seed']) for r in rows)} | "
            f"{sum(gains) / len(gains):+.0%} | {min(gains):+.0%} to {max(gains):+.0%} | "
            f"{rows[0]['base']['greedy']:.0%} → {greedy:.0%} |"
        )
    return "\n".join(lines)


def main() -> int:
    """Run the variants and print the table and three sample answers of each."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", nargs="+", default=["rule"], choices=VARIANTS)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--learning-rate", type=float, default=3e-5)
    parser.add_argument("--prompts-per-step", type=int, default=2)
    parser.add_argument("--num-generations", type=int, default=8)
    parser.add_argument("--samples", type=int, default=8, help="sampled answers per prompt")
    parser.add_argument("--seeds", default="0", help="comma-separated GRPO training seeds")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-grpo"))
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    sys.path.insert(0, str(Path(__file__).parent))  # the reward's module, for python:
    results = []
    for variant in args.variant:  # the table so far after each run: a long run keeps them
        for seed in seeds:
            results.append(run_variant(variant, seed, args))
            print(table(results), flush=True)
    if len(seeds) > 1:
        print("\n" + seed_table(results), flush=True)
    for r in results:
        print(f"\n{r['variant']} (seed {r['seed']}): three held-out answers, base | policy")
        for b, p in list(zip(r["base"]["answers"], r["policy"]["answers"], strict=True))[:3]:
            print(f"- {b[:100]!r} | {p[:100]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
