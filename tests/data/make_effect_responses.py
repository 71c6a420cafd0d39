"""Write tests/data/effect_responses.jsonl: the embedded model's own answers for the effect tests.

The effect tests (tests/test_effect_training.py) train on pairs of answers that SmolLM2-135M
itself wrote, labelled at test time by a rule. Sampling them takes minutes on 2 cores, so they
are sampled once, here, and committed. Prompts are short single-line instructions of
AlpacaEval (../shared/data/prompts/alpaca-eval-805.json, Apache-2.0), split by prompt into a
training and a held-out part. Each prompt gets ten samples from the embedded model through
llama.cpp at temperature 1, for the prompt as it is: every answer is one the model itself would
give (on-policy), so that training on them teaches which of its own answers to prefer and not
the style of answers it would not write. About 7% of the samples pass the rule.

    .venv/bin/python tests/data/make_effect_responses.py   # about 20 minutes on 2 cores
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).parent
SOURCE = HERE.parents[2] / "shared" / "data" / "prompts" / "alpaca-eval-805.json"
OUT = HERE / "effect_responses.jsonl"
TRAIN, HELDOUT = 96, 32
SAMPLES = 10
MAX_TOKENS = 64


def prompts() -> list[str]:
    """Short single-line AlpacaEval instructions, in a fixed random order."""
    rows = json.loads(SOURCE.read_text(encoding="utf-8"))
    short = sorted(
        {r["instruction"].strip() for r in rows if len(r["instruction"]) < 160}
        - {r["instruction"].strip() for r in rows if "\n" in r["instruction"]}
    )
    random.Random(0).shuffle(short)
    return short[: TRAIN + HELDOUT]


def main() -> int:
    """Sample the answers and write the JSONL file."""
    from rlaif.backends import load_backend

    backend = load_backend("smollm2")
    with OUT.open("w", encoding="utf-8") as f:
        for i, prompt in enumerate(prompts()):
            samples = []
            for k in range(SAMPLES):
                g = backend.generate(
                    [{"role": "user", "content": prompt}],
                    max_tokens=MAX_TOKENS,
                    temperature=1.0,
                    seed=k,
                )
                samples.append({"text": g.text, "truncated": g.finish_reason == "length"})
            split = "train" if i < TRAIN else "heldout"
            f.write(json.dumps({"prompt": prompt, "split": split, "samples": samples}) + "\n")
            print(f"{i + 1}/{TRAIN + HELDOUT}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
