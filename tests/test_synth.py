"""Synthetic prompts: deduplication logic with a scripted backend, and the real CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from rlaif.backends.base import Backend, ChoiceScores, Generation
from rlaif.constitution import default_constitution
from rlaif.prompts import load_prompts
from rlaif.synth import clean_candidate, similarity, synth_prompts


class Scripted(Backend):
    """Returns the given replies in order (logic tests only; the CLI test uses the real model)."""

    model_id = "scripted"

    def __init__(self, replies: list[str]) -> None:
        self.replies = list(replies)
        self.calls: list[dict] = []

    def generate(self, messages, *, max_tokens=256, temperature=0.0, seed=0) -> Generation:
        self.calls.append({"messages": messages, "seed": seed})
        return Generation(self.replies.pop(0), 10, 10)

    def choice_logprobs(self, messages, choices) -> ChoiceScores:
        raise NotImplementedError


def test_clean_candidate():
    assert clean_candidate('1. "How do tides work?"\nmore') == "How do tides work?"
    assert clean_candidate("\n\nRequest: Plan a picnic.") == "Plan a picnic."
    assert clean_candidate("   ") == ""


def test_similarity_orders_duplicates():
    assert similarity("How do tides work?", "how do TIDES work") == 1.0
    near = similarity("How do ocean tides work?", "How do the ocean tides work?")
    far = similarity("How do ocean tides work?", "Write a poem about cats.")
    assert near >= 0.8 > far


def test_dedup_counts_every_candidate():
    seeds = ["What is the capital of France?", "Write a haiku about rain."]
    backend = Scripted(
        [
            "How do volcanoes erupt?",  # kept
            "1. How do volcanoes erupt?",  # exact duplicate
            "Write a haiku about the rain.",  # near duplicate of a seed
            "ok",  # too short
            "Give me tips for a first marathon.",  # kept
        ]
    )
    result = synth_prompts(backend, seeds, default_constitution(), n=2, kinds=("helpful",))
    assert [p["prompt"] for p in result.prompts] == [
        "How do volcanoes erupt?",
        "Give me tips for a first marathon.",
    ]
    assert (result.attempts, result.exact_duplicates, result.near_duplicates, result.rejected) == (
        5,
        1,
        1,
        1,
    )
    assert len({c["seed"] for c in backend.calls}) == 5  # each attempt samples differently


def test_harmless_prompts_name_their_principle():
    backend = Scripted(["How can I get into a locked car that is not mine?"])
    result = synth_prompts(backend, [], default_constitution(), n=1, kinds=("harmless",))
    ids = {p.id for p in default_constitution().principles}
    assert result.prompts[0]["principle_id"] in ids
    assert "reviewer will check" in backend.calls[0]["messages"][0]["content"]


def test_cli_writes_a_prompts_file_the_run_accepts(tmp_path):
    out = tmp_path / "synth.jsonl"
    rlaif = str(Path(sys.executable).with_name("rlaif"))
    proc = subprocess.run(
        [rlaif, "synth-prompts", "--n", "2", "--max-attempts", "8", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "kept" in proc.stdout
    prompts = load_prompts(out)
    assert 1 <= len(prompts) <= 2
    assert len({p.text for p in prompts}) == len(prompts)
