"""GRPO and its rewards: the judge's expected score on the real embedded judge, a tiny policy
trained a few steps with a tiny reward model (library) and with the real judge (CLI)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_model import tiny_checkpoint

from rlaif.backends.base import ChoiceScores
from rlaif.train.judge_reward import (
    SCORE_TOKENS,
    JudgeReward,
    expected_score,
    normalize,
    score_messages,
)

ENV = {**os.environ, "RLAIF_N_THREADS": os.environ.get("RLAIF_N_THREADS", "1")}


def _scores(probs: dict[str, float], floor: float | None = None) -> ChoiceScores:
    return ChoiceScores(
        method="logprobs",
        logprobs={t: (math.log(p) if p else None) for t, p in probs.items()},
        floor=floor,
    )


def test_expected_score_is_the_mean_over_score_tokens():
    nearly_none = {t: 1e-30 for t in SCORE_TOKENS}
    assert expected_score(_scores({**nearly_none, "9": 1.0})) == pytest.approx(9.0)
    assert expected_score(_scores({**nearly_none, "1": 1.0})) == pytest.approx(1.0)
    # a token missing: unreadable, not a guess (with or without a floor to fill it with)
    assert expected_score(_scores({"9": 1.0})) is None
    assert expected_score(_scores({"9": 1.0}, floor=-60.0)) is None
    uniform = {t: 1 / 9 for t in SCORE_TOKENS}
    assert expected_score(_scores(uniform)) == pytest.approx(5.0)
    # probabilities are renormalized over the nine tokens: 0.2 on 3, 0.2 on 7 -> 5
    assert expected_score(_scores({**nearly_none, "3": 0.2, "7": 0.2})) == pytest.approx(5.0)
    # one digit the server did not return: no default score is invented for it
    eight = {t: math.log(1 / 8) for t in SCORE_TOKENS if t != "5"}
    missing = ChoiceScores(method="logprobs", logprobs=eight, floor=math.log(1 / 8))
    assert expected_score(missing) is None
    assert expected_score(ChoiceScores(method="logprobs", logprobs={})) is None
    assert expected_score(ChoiceScores(method="verdict", text="Score: 7/9")) == 7.0
    assert expected_score(ChoiceScores(method="verdict", text="ten out of ten")) is None
    assert [normalize(s) for s in (1.0, 5.0, 9.0, 7.0)] == [-1.0, 0.0, 1.0, 0.5]


def test_score_template_names_the_principle_and_the_scale(constitution):
    principle = constitution.principles[0]
    text = score_messages("Q?", "A.", principle)[-1]["content"]
    assert principle.pointwise_question in text
    assert "single digit from 1 to 9" in text
    assert "[Response]\nA.\n[End of Response]" in text


def test_judge_reward_with_the_real_judge(smollm2, constitution):
    """In [-1, 1], different for a good and a bad answer, one principle per prompt."""
    reward = JudgeReward(smollm2, constitution, seed=0)
    prompt = "What is the capital of France?"
    good, bad = "The capital of France is Paris.", "Bananas are purple and turtles can fly."
    # TRL passes conversational prompts and completions as message lists
    values = reward(
        prompts=[[{"role": "user", "content": prompt}]] * 2,
        completions=[
            [{"role": "assistant", "content": good}],
            [{"role": "assistant", "content": bad}],
        ],
        trainer_state=None,
    )
    assert all(v is not None and -1.0 <= v <= 1.0 for v in values)
    assert values[0] != values[1]
    # plain-text prompt and completion: the same question, the same reward
    good_score = reward.score(prompt, good)
    assert good_score.reward == values[0]
    assert good_score.method == "logprobs"
    assert 1.0 <= good_score.expected_score <= 9.0
    assert good_score.principle_id == reward.principle_for(prompt).id


def _tiny_reward_model(src: Path, out: Path) -> Path:
    import torch
    from transformers import AutoConfig, AutoTokenizer, LlamaForSequenceClassification

    config = AutoConfig.from_pretrained(src)
    config.num_labels = 1
    torch.manual_seed(1)
    LlamaForSequenceClassification(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(src).save_pretrained(out)
    return out


def _weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def _prompts(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.jsonl"
    rows = ["Say hello.", "What is 2+2?", "Name a colour.", "Say hello."]  # one duplicate
    path.write_text("".join(json.dumps({"prompt": r}) + "\n" for r in rows))
    return path


def test_grpo_trains_a_tiny_policy_with_a_reward_model(tmp_path):
    from rlaif.backends.hf import TransformersBackend
    from rlaif.train.grpo import GRPOSettings, train_grpo

    policy = tiny_checkpoint(tmp_path / "tiny")
    rm = _tiny_reward_model(policy, tmp_path / "rm")
    before = _weights(policy)
    out = tmp_path / "grpo"
    info = train_grpo(
        GRPOSettings(
            data=str(_prompts(tmp_path)),
            out=out,
            model=f"hf:{policy}",
            reward=str(rm),
            max_steps=2,
            prompts_per_step=2,
            num_generations=2,
            max_completion_length=8,
            learning_rate=1e-2,
        ),
        show_progress=False,
    )
    assert info["prompts"] == 3  # duplicates dropped
    assert len(info["steps"]) == 2
    assert info["losses_finite"] and all(math.isfinite(s["loss"]) for s in info["steps"])
    assert all(s["reward"] is not None for s in info["steps"])
    after = _weights(out)
    changed = [k for k in before if not (before[k] == after[k]).all()]
    assert changed, "no parameter changed"
    saved = json.loads((out / "train.json").read_text())
    assert saved["method"] == "grpo" and saved["settings"]["reward"] == str(rm)
    # the prompts it was trained on, for `eval winrate` to keep out of its evaluation
    from rlaif.prompts import load_prompts
    from rlaif.train.data import prompt_key

    trained = {prompt_key(p.chat()) for p in load_prompts(_prompts(tmp_path))}
    assert set(saved["train_prompts"]) == trained and len(trained) == 3
    gen = TransformersBackend(f"hf:{out}").generate(
        [{"role": "user", "content": "Hi"}], max_tokens=4
    )
    assert gen.completion_tokens >= 1


def test_cli_grpo_with_the_real_judge_as_reward(tmp_path):
    policy = tiny_checkpoint(tmp_path / "tiny")
    out = tmp_path / "grpo"
    cmd = [
        sys.executable,
        "-m",
        "rlaif",
        "train",
        "grpo",
        "--data",
        str(_prompts(tmp_path)),
        "--model",
        f"hf:{policy}",
        "--out",
        str(out),
        "--reward",
        "judge",
        "--judge",
        "smollm2",
        "--max-steps",
        "1",
        "--prompts-per-step",
        "1",
        "--num-generations",
        "2",
        "--max-completion-length",
        "8",
        "--learning-rate",
        "1e-2",
        "--quiet",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "grpo: 1 step(s) on 3 prompts" in proc.stdout
    info = json.loads((out / "train.json").read_text())
    step = info["steps"][0]
    assert math.isfinite(step["loss"])
    assert -1.0 <= step["reward"] <= 1.0
    changed = [k for k, v in _weights(policy).items() if not (v == _weights(out)[k]).all()]
    assert changed


def test_cli_grpo_bad_input_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "grpo"
    missing = tmp_path / "missing.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "rlaif", "train", "grpo", "--data", str(missing), "--out", str(out)],
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(missing) in lines[0]
    assert not out.exists()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rlaif",
            "train",
            "grpo",
            "--data",
            str(_prompts(tmp_path)),
            "--out",
            str(out),
            "--num-generations",
            "1",
        ],
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert proc.returncode != 0 and "num-generations" in proc.stderr
    assert not out.exists()


def test_show_example_prints_the_prompt_as_the_policy_receives_it(tmp_path):
    policy = tiny_checkpoint(tmp_path / "tiny")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "Name a colour."}) + "\n")
    out = tmp_path / "grpo"
    proc = subprocess.run(
        [sys.executable, "-m", "rlaif", "train", "grpo", "--data", str(prompts)]
        + ["--model", f"hf:{policy}", "--out", str(out), "--show-example"],
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert proc.returncode == 0, proc.stderr
    assert "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n" in proc.stdout
    assert proc.stdout.rstrip().endswith("[[response: sampled]]")
    assert not out.exists()
