"""The evaluation runner's logic with a scripted backend (the real judge: test_evaluate_cli)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import pytest

from rlaif.backends import Backend, ChoiceScores, Generation, Messages
from rlaif.errors import BackendError, RunError
from rlaif.evaluate.agreement import AgreementConfig, run_agreement
from rlaif.evaluate.report import write_report
from rlaif.evaluate.summary import read_pairs


class FirstSlot(Backend):
    """Logic only: always 80% for the first slot; fails on prompts containing 'TOO LONG'."""

    model_id = "first-slot"

    def __init__(self) -> None:
        self.calls = 0

    def generate(self, messages, *, max_tokens=256, temperature=0.0, seed=0) -> Generation:
        return Generation(text="A", prompt_tokens=5, completion_tokens=1)

    def choice_logprobs(self, messages: Messages, choices: Sequence[str]) -> ChoiceScores:
        self.calls += 1
        if "TOO LONG" in messages[-1]["content"]:
            raise BackendError("first-slot: prompt exceeds the context window")
        return ChoiceScores(
            method="logprobs",
            logprobs={choices[0]: math.log(0.8), choices[1]: math.log(0.2)},
            prompt_tokens=100,
        )


def _gold(tmp_path, prompts: list[str]):
    path = tmp_path / "gold.json"
    records = [
        {"input": p, "output_1": f"one {i}", "output_2": f"two {i}", "label": 1 + i % 2}
        for i, p in enumerate(prompts)
    ]
    path.write_text(json.dumps(records))
    return path


def test_a_failing_pair_is_recorded_and_counted_not_dropped(tmp_path):
    gold = _gold(tmp_path, ["q0", "q1 TOO LONG", "q2", "q3"])
    out = tmp_path / "eval"
    config = AgreementConfig(
        gold=str(gold), out=out, judge=FirstSlot(), strategies=("one-order", "both-orders")
    )
    metrics = run_agreement(config)
    records = read_pairs(out / "pairs.jsonl")
    assert [r["strategy"] for r in records] == ["one-order"] * 4 + ["both-orders"] * 4
    failed = [r for r in records if r["pair_id"] == 1]
    assert all(r["p_a"] is None and "context window" in r["error"] for r in failed)
    one, both = metrics["one-order"], metrics["both-orders"]
    assert (one["n"], one["errors"], one["unreadable"]) == (4, 1, 1)
    # first slot always: one order agrees where the humans said A (pairs 0, 2), misses 1 and 3
    assert one["agreement"] == pytest.approx(0.5) and one["first_position_rate"] == 1.0
    # both orders cancel the first-slot preference exactly: every label is a tie (half credit)
    assert both["agreement"] == pytest.approx(3 * 0.5 / 4)
    assert both["position_consistency"] == 0.0 and both["judge_ties"] == 3
    assert one["a_rate"] == 1.0 and both["a_rate"] == 0.5  # asking both ways removes it
    info = json.loads((out / "eval.json").read_text())
    assert info["judge"] == "first-slot" and info["format"] == "llmbar"
    assert write_report(out).is_file()


def test_a_judge_that_keeps_failing_stops_the_run(tmp_path):
    gold = _gold(tmp_path, [f"q{i} TOO LONG" for i in range(8)])
    backend = FirstSlot()
    config = AgreementConfig(
        gold=str(gold), out=tmp_path / "e", judge=backend, strategies=("one-order",)
    )
    with pytest.raises(BackendError, match="context window"):
        run_agreement(config)
    assert backend.calls == 5  # five pairs in a row failed: the sixth is not asked
    assert not (tmp_path / "e" / "metrics.json").exists()


def test_config_and_directory_are_checked_before_any_call(tmp_path):
    gold = _gold(tmp_path, ["q"])
    with pytest.raises(ValueError, match="unknown strategy best"):
        AgreementConfig(gold=str(gold), out=tmp_path, strategies=("best",))
    with pytest.raises(ValueError, match="named twice"):
        AgreementConfig(gold=str(gold), out=tmp_path, strategies=("cot", "cot"))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text("{}")
    backend = FirstSlot()
    with pytest.raises(RunError, match="holds an `rlaif run`"):
        run_agreement(AgreementConfig(gold=str(gold), out=run_dir, judge=backend))
    assert backend.calls == 0
