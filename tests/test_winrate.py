"""Win rate: outcome counting and intervals, the real CLI on the embedded model, resume from
the store, a retrained checkpoint never answered from the store, and the defaults: held-out
prompts the policy was not trained on, and the model it started from as the baseline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_model import tiny_checkpoint

from rlaif.errors import InputError
from rlaif.evaluate.winrate import (
    WinrateConfig,
    checkpoint_fingerprint,
    outcome,
    run_winrate,
    summarize,
)
from rlaif.prompts import builtin_prompts_path, load_prompts
from rlaif.train.data import prompt_key
from rlaif.train.heldout import default_baseline, eval_prompts, heldout_prompts_path

ENV = {**os.environ, "RLAIF_N_THREADS": os.environ.get("RLAIF_N_THREADS", "1")}


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rlaif", "eval", "winrate", *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=900,
    )


def _prompts(tmp_path: Path, n: int = 2) -> Path:
    path = tmp_path / "heldout.jsonl"
    rows = ["What is the capital of France?", "Name a primary colour.", "Say hello."][:n]
    path.write_text("".join(json.dumps({"prompt": r}) + "\n" for r in rows))
    return path


def test_outcome_and_tie_margin():
    assert outcome(0.51) == "win" and outcome(0.49) == "loss" and outcome(0.5) == "tie"
    assert outcome(None) == "unreadable"
    assert outcome(0.54, tie_margin=0.05) == "tie" and outcome(0.56, tie_margin=0.05) == "win"
    assert outcome(0.45, tie_margin=0.05) == "tie" and outcome(0.44, tie_margin=0.05) == "loss"


def _rec(p, kind, identical=False):
    return {
        "p_policy": p,
        "outcome": kind,
        "identical": identical,
        "position_consistent": None if p is None else True,
        "policy_response": "aa",
        "baseline_response": "b",
    }


def test_summarize_counts_ties_half_and_leaves_unreadable_out():
    records = [
        _rec(0.9, "win"),
        _rec(0.8, "win"),
        _rec(0.2, "loss"),
        _rec(0.5, "tie", identical=True),
        _rec(None, "unreadable"),
    ]
    m = summarize(records, resamples=500, seed=0)
    assert (m["n"], m["wins"], m["losses"], m["ties"], m["unreadable"]) == (4, 2, 1, 1, 1)
    assert m["identical"] == 1
    assert m["win_rate"] == pytest.approx((2 + 0.5) / 4)
    assert m["soft_win_rate"] == pytest.approx((0.9 + 0.8 + 0.2 + 0.5) / 4)
    low, high = m["win_rate_ci"]
    assert 0.0 <= low <= m["win_rate"] <= high <= 1.0 and low < high
    assert summarize(records, resamples=500, seed=0) == m  # seeded: the same interval
    empty = summarize([_rec(None, "unreadable")])
    assert empty["n"] == 0 and empty["win_rate"] is None and empty["win_rate_ci"] is None


def test_cli_winrate_on_the_embedded_model_then_resume(tmp_path):
    policy = tiny_checkpoint(tmp_path / "tiny")
    out = tmp_path / "eval"
    args = [
        "--policy",
        f"hf:{policy}",
        "--baseline",
        "smollm2",
        "--prompts",
        str(_prompts(tmp_path, 3)),
        "--limit",
        "2",
        "--max-tokens",
        "8",
        "--out",
        str(out),
    ]
    proc = _cli(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] + metrics["unreadable"] == 2
    assert {"n", "win_rate", "win_rate_ci", "ties", "wins", "losses"} <= set(metrics)
    assert metrics["wins"] + metrics["losses"] + metrics["ties"] == metrics["n"]
    assert metrics["policy_fingerprint"] == checkpoint_fingerprint(f"hf:{policy}")
    pairs = [json.loads(line) for line in (out / "pairs.jsonl").read_text().splitlines()]
    assert len(pairs) == 2
    for r in pairs:
        assert r["baseline_response"]  # the embedded model answers
        if not r["identical"]:
            assert 0.0 <= r["p_policy"] <= 1.0
            # both orders asked, and p is their mean
            mean = (r["p_policy_shown_first"] + r["p_policy_shown_second"]) / 2
            assert r["p_policy"] == pytest.approx(mean)
    assert metrics["model_calls"] > 0 and "win rate" in proc.stdout

    again = _cli(*args, "--quiet")
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((out / "metrics.json").read_text())["model_calls"] == 0
    assert (out / "pairs.jsonl").read_text() == "".join(
        json.dumps(r, ensure_ascii=False) + "\n" for r in pairs
    )


def test_same_model_on_both_sides_is_all_ties(tmp_path, smollm2):
    config = WinrateConfig(
        policy="smollm2",
        baseline="smollm2",
        prompts=str(_prompts(tmp_path)),
        out=tmp_path / "eval",
        max_tokens=8,
    )
    m = run_winrate(config)
    assert (m["n"], m["ties"], m["identical"], m["win_rate"]) == (2, 2, 2, 0.5)
    # greedy answers of one model: the baseline's come from the store, the judge is not asked
    assert m["model_calls"] == 2


def test_a_retrained_checkpoint_is_not_answered_from_the_store(tmp_path):
    policy = tiny_checkpoint(tmp_path / "policy", seed=0)
    judge = tiny_checkpoint(tmp_path / "judge", seed=2)
    config = WinrateConfig(
        policy=f"hf:{policy}",
        baseline=f"hf:{judge}",
        judge=f"hf:{judge}",
        prompts=str(_prompts(tmp_path)),
        out=tmp_path / "eval",
        max_tokens=4,
        resamples=50,
    )
    first = run_winrate(config)
    assert run_winrate(config)["model_calls"] == 0
    tiny_checkpoint(policy, seed=1)  # new weights in the same directory
    # a fresh process: this one still holds the old weights in memory
    proc = _cli(
        "--policy",
        config.policy,
        "--baseline",
        config.baseline,
        "--judge",
        config.judge,
        "--prompts",
        config.prompts,
        "--max-tokens",
        "4",
        "--out",
        str(config.out),
        "--quiet",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    third = json.loads((config.out / "metrics.json").read_text())
    assert third["policy_fingerprint"] != first["policy_fingerprint"]
    assert third["model_calls"] >= 2  # the policy answered afresh, the baseline from the store


def test_cli_bad_input_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "eval"
    missing = tmp_path / "missing.jsonl"
    proc = _cli("--policy", "smollm2", "--prompts", str(missing), "--out", str(out))
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(missing) in lines[0]
    assert not out.exists()
    proc = _cli("--policy", f"hf:{tmp_path / 'nowhere'}", "--out", str(out))
    assert proc.returncode == 1 and "nowhere" in proc.stderr and not out.exists()
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("mine")
    proc = _cli("--policy", "smollm2", "--prompts", str(_prompts(tmp_path)), "--out", str(stray))
    assert proc.returncode == 1 and "not an rlaif evaluation directory" in proc.stderr
    assert sorted(p.name for p in stray.iterdir()) == ["notes.txt"]


def _trained(tmp_path: Path, name: str, start: str, prompts: list[str], seed: int = 0) -> str:
    """A tiny checkpoint whose train.json says it started from ``start`` and saw ``prompts``."""
    path = tiny_checkpoint(tmp_path / name, seed=seed)
    info = {
        "method": "dpo",
        "settings": {"model": start},
        "train_prompts": sorted(prompt_key(p) for p in prompts),
    }
    (path / "train.json").write_text(json.dumps(info))
    return f"hf:{path}"


def test_shipped_heldout_prompts_are_not_the_builtin_ones():
    """rlaif run labels the built-in prompts by default: the default evaluation must not."""
    held = load_prompts(heldout_prompts_path())
    builtin = load_prompts(builtin_prompts_path())
    assert len(held) >= 20
    assert {prompt_key(p.chat()) for p in held}.isdisjoint(prompt_key(p.chat()) for p in builtin)


def test_default_prompts_leave_out_what_the_policy_was_trained_on(tmp_path):
    held = load_prompts(heldout_prompts_path())
    policy = _trained(tmp_path, "policy", "smollm2", [held[0].text, "Something else?"])
    chosen = eval_prompts(None, [policy])
    assert chosen.default and chosen.checked and chosen.overlap == [held[0].id]
    assert [p.id for p in chosen.prompts] == [p.id for p in held[1:]]
    assert len(eval_prompts(None, [policy], limit=3).prompts) == 3


def test_named_prompts_seen_in_training_are_refused_naming_them(tmp_path):
    start = tiny_checkpoint(tmp_path / "start")
    prompts = _prompts(tmp_path, 3)
    policy = _trained(tmp_path, "policy", f"hf:{start}", ["Say hello."])
    out = tmp_path / "eval"
    proc = _cli("--policy", policy, "--prompts", str(prompts), "--out", str(out), "--quiet")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "1 of 3 prompts are in the training data of" in lines[0] and "ids 3" in lines[0]
    assert "--allow-overlap" in lines[0]
    assert not out.exists()
    with pytest.raises(InputError, match="ids 3"):
        eval_prompts(str(prompts), [policy])
    allowed = eval_prompts(str(prompts), [policy], allow_overlap=True)
    assert allowed.overlap == ["3"] and len(allowed.prompts) == 3
    assert eval_prompts(str(prompts), [policy], limit=2).overlap == []  # only the first two


def test_default_baseline_is_the_starting_model_through_the_same_backend(tmp_path):
    start = tiny_checkpoint(tmp_path / "start")
    assert default_baseline(_trained(tmp_path, "a", f"hf:{start}", [])) == f"hf:{start}"
    assert default_baseline(_trained(tmp_path, "b", str(start), [])) == f"hf:{start}"
    # not the Q4_1 GGUF through llama.cpp: the same weights as the policy's start, in transformers
    from rlaif.backends.checkpoints import resolve_checkpoint

    from_smollm2 = _trained(tmp_path, "c", "smollm2", [])
    assert default_baseline(from_smollm2) == f"hf:{resolve_checkpoint('smollm2')}"
    assert default_baseline("llamacpp:/models/x.gguf") == "smollm2"
    # a policy answering through its GGUF export plays its start through its export too
    policy = _trained(tmp_path, "d", f"hf:{start}", [])
    assert default_baseline("gguf:" + policy[3:]) == f"gguf:{start}"
    assert default_baseline("gguf:" + from_smollm2[3:]) == f"gguf:{resolve_checkpoint('smollm2')}"
    assert checkpoint_fingerprint("gguf:" + policy[3:]) == checkpoint_fingerprint(policy)
    with pytest.raises(InputError, match="name one with --baseline"):
        default_baseline(f"hf:{start}")  # no train.json: rlaif did not train it


def test_default_run_plays_the_starting_checkpoint(tmp_path):
    start = tiny_checkpoint(tmp_path / "start", seed=3)
    policy = _trained(tmp_path, "policy", f"hf:{start}", [], seed=4)
    config = WinrateConfig(
        policy=policy,
        judge=f"hf:{start}",
        out=tmp_path / "eval",
        limit=1,
        max_tokens=4,
        resamples=20,
    )
    m = run_winrate(config)
    assert m["baseline"] == f"hf:{start}" and m["baseline_default"] is True
    assert m["prompts_file"] == str(heldout_prompts_path()) and m["n"] + m["unreadable"] == 1
    assert m["prompt_selection"] == {
        "default_heldout_set": True,
        "training_prompts_known": True,
        "overlap_ids": [],
    }
