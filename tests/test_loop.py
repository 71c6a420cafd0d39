"""The iterative loop: prompt slices and held-out split, the directory check, and two real tiny
rounds through the CLI (tiny policy, the embedded judge), extended and resumed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_model import tiny_checkpoint

from rlaif.errors import InputError, RuleError, RunError
from rlaif.loop import (
    LoopConfig,
    _open_loop_dir,
    dpo_command,
    round_prompts,
    rounds_table,
    split_prompts,
)
from rlaif.prompts import load_prompts

ENV = {**os.environ, "RLAIF_N_THREADS": os.environ.get("RLAIF_N_THREADS", "1")}
WORDS = ["Say hello.", "What is 2+2?", "Name a colour.", "Give a word for happy.", "Count to 3."]


def _pool(tmp_path: Path, rows: list[str] = WORDS) -> Path:
    path = tmp_path / "pool.jsonl"
    path.write_text(
        "".join(json.dumps({"id": f"p{i}", "prompt": r}) + "\n" for i, r in enumerate(rows))
    )
    return path


def test_split_and_round_slices(tmp_path):
    config = LoopConfig(out=tmp_path / "loop", prompts=str(_pool(tmp_path)), eval_n=2)
    pool, held = split_prompts(config)
    assert [p.text for p in held] == WORDS[-2:]
    assert [p.text for p in pool] == WORDS[:3]
    assert [p.id for p in round_prompts(pool, 1, 2)] == ["p0", "p1"]
    assert [p.id for p in round_prompts(pool, 2, 2)] == ["p2", "p0"]  # wraps around
    assert len(round_prompts(pool, 1, 10)) == 3  # never the same prompt twice in a round
    with pytest.raises(InputError, match="leaves none to train on"):
        split_prompts(LoopConfig(out=tmp_path / "x", prompts=str(_pool(tmp_path)), eval_n=5))
    # explicit held-out prompts are removed from the training pool
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text(json.dumps({"prompt": "Say hello."}) + "\n")
    pool, held = split_prompts(
        LoopConfig(out=tmp_path / "y", prompts=str(_pool(tmp_path)), eval_prompts=str(eval_file))
    )
    assert [p.text for p in held] == ["Say hello."] and "Say hello." not in {p.text for p in pool}


def test_loop_dir_refuses_another_loop_or_a_stray_dir(tmp_path):
    config = LoopConfig(out=tmp_path / "loop", prompts=str(_pool(tmp_path)), eval_n=2)
    _open_loop_dir(config)
    _open_loop_dir(LoopConfig(**{**config.__dict__, "rounds": 5}))  # more rounds: same loop
    with pytest.raises(RunError, match="holds a different loop .*seed: 0 -> 1"):
        _open_loop_dir(LoopConfig(**{**config.__dict__, "seed": 1}))
    # another judge of the win rates is another loop; naming the default is the same loop
    with pytest.raises(RunError, match=r"eval_judge: '\(its --judge\)' -> 'rule:words=8-40'"):
        _open_loop_dir(LoopConfig(**{**config.__dict__, "eval_judge": "rule:words=8-40"}))
    _open_loop_dir(LoopConfig(**{**config.__dict__, "eval_judge": config.judge}))
    assert LoopConfig(**{**config.__dict__, "judge": "rule:words=8-40"}).win_rate_judge == (
        "rule:words=8-40"
    )
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match="not an rlaif loop directory"):
        _open_loop_dir(LoopConfig(**{**config.__dict__, "out": stray}))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("loss", "bogus", "loss must be one of"),
        ("dpo_beta", 0.0, "beta must be > 0"),
        ("min_margin", 0.7, "min_margin must be in"),
        ("dpo_degenerate_chosen", "sometimes", "degenerate_chosen must be one of"),
        ("dpo_learning_rate", 0.0, "dpo_learning_rate must be > 0"),
        ("dpo_steps", 0, "dpo_steps must be >= 1"),
        ("dpo_batch_size", 0, "dpo_batch_size must be >= 1"),
        ("n_responses", 1, "form no pair"),
        ("max_tokens", 0, "max_tokens must be >= 1"),
        ("eval_max_tokens", 0, "eval_max_tokens must be >= 1"),
        ("tie_margin", 0.5, "tie_margin must be in"),
        ("rounds", 0, "rounds must be >= 1"),
        ("eval_judge", " ", "eval_judge is empty"),
    ],
)
def test_loop_config_checks_every_stage_before_any_model_loads(tmp_path, field, value, message):
    """A setting the round's job, trainer or win rate would refuse fails when the loop is
    configured, named as the loop's field, not after round 1 has generated and labelled; the
    loop directory is not even created."""
    with pytest.raises(ValueError, match=message):
        LoopConfig(out=tmp_path / "loop", **{field: value})
    assert not (tmp_path / "loop").exists()


def test_win_rates_are_judged_by_eval_judge_else_by_the_loops_judge(tmp_path):
    rd = tmp_path / "loop" / "round-1"
    config = LoopConfig(out=tmp_path / "loop", judge="llamacpp:judge.gguf")
    assert config.win_rate_judge == "llamacpp:judge.gguf"
    assert config.winrate_config(rd, "a", "b").judge == "llamacpp:judge.gguf"
    config = LoopConfig(out=tmp_path / "loop", eval_judge="rule:words=8-40")
    assert config.winrate_config(rd, "a", "b").judge == "rule:words=8-40"
    assert config.run_config(rd, "a").judge == "smollm2"  # the labels stay the loop judge's


@pytest.mark.parametrize("field", ["judge", "eval_judge"])
def test_an_unknown_judge_fails_before_the_loop_dir_exists(tmp_path, field):
    from rlaif.loop import run_loop

    config = LoopConfig(out=tmp_path / "loop", prompts=str(_pool(tmp_path)), eval_n=2)
    with pytest.raises(RuleError, match="unknown rule 'rule:nope'"):
        run_loop(LoopConfig(**{**config.__dict__, field: "rule:nope"}))
    assert not (tmp_path / "loop").exists()


def test_launched_dpo_gets_the_rounds_settings(tmp_path):
    """``rlaif train dpo`` parses the launcher's command back into the same DPOSettings."""
    from rlaif.cli import options as opt
    from rlaif.cli.train import train_dpo_cmd

    config = LoopConfig(out=tmp_path / "loop", lora=True, dpo_nll_weight=0.5, loss="hard")
    settings = config.dpo_settings(tmp_path / "loop" / "round-1", "hf:start")
    cmd = dpo_command("torchrun", settings)
    assert cmd[:5] == ["torchrun", "-m", "rlaif", "train", "dpo"]
    params = train_dpo_cmd.make_context("dpo", cmd[5:]).params
    for name in ("quiet", "show_example", "drift_prompts"):
        params.pop(name)
    assert opt.settings_from(opt.Settings("rlaif.train.dpo", "DPOSettings"), **params) == settings


def test_rounds_table():
    row = {
        "round": 1,
        "pairs": 6,
        "dpo_final_loss": 0.69,
        "win_rate": 0.625,
        "win_rate_ci": [0.25, 1.0],
        "wins": 4,
        "losses": 2,
        "ties": 2,
        "n": 8,
        "soft_win_rate": 0.51,
    }
    table = rounds_table([row]).splitlines()
    assert table[0].startswith("| round | pairs | DPO loss | win rate | 95% CI")
    assert table[2] == (
        "| 1 | 6 | 0.6900 | 62.5% | 25.0% - 100.0% | 4 / 2 / 2 | 8 | 51.0% | - | - |"
    )
    health = {"n": 8, "mean_words": 30.0, "near_empty": 0.125, "looping": 0.0}
    guards = {"policy": health, "baseline": {**health, "mean_words": 80.0}}
    final = {**row, "round": "final", "pairs": None, "dpo_final_loss": None, "guards": guards}
    table = rounds_table([row], final).splitlines()
    assert table[3] == (
        "| final | - | - | 62.5% | 25.0% - 100.0% | 4 / 2 / 2 | 8 | 51.0% | 30 / 80 | 12%, 0%, - |"
    )
    # guards written with the truncated share show it as the third figure
    guards["policy"] = {**health, "truncated": 0.25}
    table = rounds_table([row], {**final, "guards": guards}).splitlines()
    assert table[3].endswith("| 30 / 80 | 12%, 0%, 25% |")


#: the rounds' win rates are judged by a rule (the training labels by the embedded judge): the
#: tiny policy's 6-token answers are all cut off, so every comparison is a tie
EVAL_JUDGE = "rule:words=1-40"


def _loop(
    tmp_path: Path, policy: Path, rounds: int, eval_judge: str | None = EVAL_JUDGE
) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "rlaif",
        "loop",
        "--rounds",
        str(rounds),
        "--out",
        str(tmp_path / "loop"),
        "--policy",
        f"hf:{policy}",
        "--judge",
        "smollm2",
        "--prompts",
        str(_pool(tmp_path)),
        "--eval-n",
        "1",
        "--prompts-per-round",
        "1",
        "--max-tokens",
        "6",
        "--dpo-steps",
        "1",
        "--dpo-learning-rate",
        "1e-2",
        "--eval-max-tokens",
        "6",
        *(["--eval-judge", eval_judge] if eval_judge else []),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=900)


def _weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def test_cli_loop_two_tiny_rounds_then_resume(tmp_path):
    policy = tiny_checkpoint(tmp_path / "tiny")
    proc = _loop(tmp_path, policy, rounds=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "loop"
    info = json.loads((out / "loop.json").read_text())
    rows = info["rounds"]
    assert [r["round"] for r in rows] == [1, 2]
    # the policy of round 1 is the baseline of round 2
    assert rows[0]["baseline"] == f"hf:{policy}"
    assert rows[1]["baseline"] == rows[0]["policy"] == f"hf:{out / 'round-1' / 'policy'}"
    for i, r in enumerate(rows, start=1):
        rd = out / f"round-{i}"
        assert r["pairs"] >= 1 and r["dpo_steps"] == 1
        assert [p.text for p in load_prompts(rd / "prompts.jsonl")] == ([WORDS[i - 1]])
        metrics = json.loads((rd / "winrate" / "metrics.json").read_text())
        assert metrics["policy"] == r["policy"] and metrics["baseline"] == r["baseline"]
        assert metrics["n"] + metrics["unreadable"] == 1
        assert r["win_rate"] == metrics["win_rate"]
        assert metrics["judge"] == EVAL_JUDGE and (metrics["wins"], metrics["ties"]) == (0, 1)
        # held-out prompts only
        held = [json.loads(line)["prompt"] for line in (rd / "winrate/pairs.jsonl").open()]
        assert held == WORDS[-1:]
    before, after = _weights(policy), _weights(out / "round-1" / "policy")
    assert any(not (before[k] == after[k]).all() for k in before), "DPO changed nothing"
    # the last policy also plays the start: the loop's effect as a whole
    final = info["final_vs_start"]
    assert final["policy"] == rows[1]["policy"] and final["baseline"] == f"hf:{policy}"
    metrics = json.loads((out / "final-vs-start" / "winrate" / "metrics.json").read_text())
    assert metrics["policy"] == final["policy"] and metrics["baseline"] == f"hf:{policy}"
    assert metrics["judge"] == EVAL_JUDGE
    assert final["guards"]["policy"]["n"] == 1
    table = (out / "rounds.md").read_text()
    assert len(table.strip().splitlines()) == 5 and table in proc.stdout + "\n"
    assert table.strip().splitlines()[-1].startswith("| final |")

    again = _loop(tmp_path, policy, rounds=2)
    assert again.returncode == 0, again.stderr[-3000:]
    # 3 stages x 2 rounds and the final comparison: nothing redone
    assert again.stderr.count("done before") == 7
    assert json.loads((out / "loop.json").read_text())["rounds"] == rows
    assert f"judged by {EVAL_JUDGE} in both orders" in again.stdout
    # the same loop with the win rates judged by the loop's judge is another loop
    other = _loop(tmp_path, policy, rounds=2, eval_judge=None)
    assert other.returncode != 0 and "holds a different loop" in other.stderr
    assert "eval_judge: 'rule:words=1-40' -> '(its --judge)'" in other.stderr


def test_trained_policies_answer_through_their_gguf_export_when_it_exists(tmp_path):
    """The loop generates with gguf:DIR (llama.cpp, ~4x faster) for checkpoints shaped like the
    embedded model, and keeps hf:DIR for any other (the tiny test model)."""
    import shutil

    from rlaif.backends.checkpoints import resolve_checkpoint
    from rlaif.loop import _generation_spec

    lines: list[str] = []
    smollm2 = tmp_path / "smollm2"
    shutil.copytree(resolve_checkpoint("smollm2"), smollm2)
    assert _generation_spec(f"hf:{smollm2}", lines.append) == f"gguf:{smollm2}"
    assert (smollm2 / "model-f16.gguf").is_file() and not lines
    tiny = tiny_checkpoint(tmp_path / "tiny")
    assert _generation_spec(f"hf:{tiny}", lines.append) == f"hf:{tiny}"
    assert lines and "answers through transformers" in lines[0]
    assert _generation_spec("smollm2", lines.append) == "smollm2"
