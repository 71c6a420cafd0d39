"""Judge tokens evaluated with the principle after the responses (template 2) or before them.

The labelling stage asks all questions of one prompt in their token order, so the llama.cpp
judge evaluates each shared prefix once (``benchmarks/judge_prefix_reuse.py``). Template 2
puts the comparison request (the principle) after both responses: questions that show the
same first response share system text, prompt and that response, whatever their principles.
Putting the principle first would make the principle part of the shared head. This script
counts, without running the model (the tokenizer only), what each layout would evaluate on
the pairs of real runs:

* **principle last**: template 2, each pair under its own sampled principle (as labelled);
* **principle first**: the same principles, the comparison request before the blocks;
* **principle first, one a prompt**: every pair of a prompt under one principle (the one
  pointwise mode draws), which is a different labelling, not only a different layout.

Counts follow ``LlamaCppBackend._evaluate``: a question evaluates what it does not share with
the question before it (across prompts too), in the order ``reuse_order`` gives.

    .venv/bin/python benchmarks/principle_order.py runs/first runs/loop/round-1/run
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rlaif import templates
from rlaif.backends.llamacpp import LlamaCppBackend, embedded_model_path
from rlaif.constitution import Constitution, Principle, load_constitution

Layout = Callable[[str, str, str, Principle], list[dict]]


def principle_last(prompt: str, first: str, second: str, principle: Principle) -> list[dict]:
    """Template 2's comparison question."""
    return templates.compare_messages(prompt, first, second, principle)


def principle_first(prompt: str, first: str, second: str, principle: Principle) -> list[dict]:
    """The same question with the comparison request before the blocks."""
    blocks = [
        templates.block("User request", prompt),
        templates.block("Response A", first),
        templates.block("Response B", second),
    ]
    answer = "Answer with a single letter: A or B."
    user = templates.request([principle.comparison, *blocks], answer)
    return templates.judge_turn(user)


def evaluated(backend: LlamaCppBackend, groups: Sequence[Sequence[list[dict]]]) -> tuple[int, int]:
    """(tokens evaluated, tokens in all questions) asking each group in token order."""
    previous: list[int] = []
    done = total = 0
    for questions in groups:
        for tokens in (backend.prompt_tokens(questions[i]) for i in backend.reuse_order(questions)):
            common = len(os.path.commonprefix([previous, tokens]))
            if common >= len(tokens):  # an exact repeat is evaluated afresh after a generation
                common = 0
            done += len(tokens) - common
            total += len(tokens)
            previous = tokens
    return done, total


def pairs_by_prompt(run: Path) -> dict[str, list[tuple[str, str, str]]]:
    """Each prompt's judge-labelled (first, second, principle id) pairs of ``run``."""
    path = run / "preferences.jsonl"
    if not path.is_file() or not (run / "run.json").is_file():
        sys.exit(f"{run}: no preferences.jsonl and run.json; give a finished rlaif run directory")
    out: dict[str, list[tuple[str, str, str]]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if rec.get("label_source") != "ai" or not rec.get("principle_id"):
            continue  # decided by a rule or a check: the judge model was not asked
        prompt = rec["prompt"][-1]["content"]
        pair = (rec["chosen"][-1]["content"], rec["rejected"][-1]["content"], rec["principle_id"])
        out.setdefault(prompt, []).append(pair)
    return out


def constitution_of(run: Path) -> Constitution:
    """The constitution ``run`` labelled with, from its run.json (its hash checked)."""
    recorded = json.loads((run / "run.json").read_text(encoding="utf-8"))["constitution"]
    constitution = load_constitution(recorded["source"])
    if constitution.hash != recorded["hash"]:
        sys.exit(f"{run}: its constitution {recorded['source']} changed since the run labelled")
    return constitution


def main(argv: Sequence[str] | None = None) -> int:
    """Print one table row per run and layout."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="rlaif run directories (preferences.jsonl)")
    args = ap.parse_args(argv)
    runs = {run: (pairs_by_prompt(run), constitution_of(run)) for run in args.runs}
    backend = LlamaCppBackend(str(embedded_model_path()), model_id="smollm2")
    print("| run | prompts | AI-labelled pairs | layout | question tokens | evaluated |", end="")
    print(" ÷ template 2 |\n|---|---:|---:|---|---:|---:|---:|")
    for run, (by_prompt, constitution) in runs.items():
        principles = {p.id: p for p in constitution.principles}
        n_pairs = sum(map(len, by_prompt.values()))
        layouts: list[tuple[str, Layout, bool]] = [
            ("principle last (template 2)", principle_last, False),
            ("principle first", principle_first, False),
            ("principle first, one a prompt", principle_first, True),
        ]
        base = 0
        for name, layout, per_prompt in layouts:
            groups = []
            for prompt, pairs in by_prompt.items():
                shared = constitution.sample(0, "compare", prompt)
                questions = []
                for a, b, pid in pairs:
                    p = shared if per_prompt else principles[pid]
                    questions += [layout(prompt, a, b, p), layout(prompt, b, a, p)]
                groups.append(questions)
            done, total = evaluated(backend, groups)
            base = base or done
            print(
                f"| {run} | {len(by_prompt)} | {n_pairs} | {name} | {total} | {done} "
                f"| {done / base:.3f} |"
            )
    backend.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
