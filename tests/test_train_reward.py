"""The Bradley-Terry reward model on soft labels, on a tiny model built here: it learns an
obviously separable toy set, follows soft labels (not only winners), and reports held-out
accuracy and calibration; bad data and a used --out are one clear error."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_model import tiny_checkpoint

from rlaif.errors import InputError, ModelSpecError
from rlaif.train.data import read_preferences, split_pairs
from rlaif.train.reward import RewardModel, RewardSettings, train_reward

RLAIF = [sys.executable, "-m", "rlaif"]
TOPICS = ["taxes", "bread", "rust", "tides", "chess", "moss", "kites", "tea", "glue", "owls"]
GOOD = "Sure, here is a clear and helpful answer about {t}, step by step."
BAD = "No. I will not talk about {t}. Go away."


def toy_preferences(path: Path, p_chosen: float = 0.9) -> Path:
    """Separable pairs: a helpful answer always beats a refusal; ten prompts, two pairs each."""
    with path.open("w") as f:
        for i, t in enumerate(TOPICS):
            for q in (f"What should I know about {t}?", f"Tell me about {t}, please."):
                rec = {"prompt": q, "chosen": GOOD.format(t=t), "rejected": BAD.format(t=t)}
                f.write(json.dumps({**rec, "p_chosen": p_chosen, "prompt_id": f"p{i}"}) + "\n")
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "model")


def settings(tmp_path, tiny, data, **kw) -> RewardSettings:
    base = dict(
        data=str(data),
        out=tmp_path / "rm",
        model=f"hf:{tiny}",
        max_steps=25,
        learning_rate=1e-3,
        held_out=0.3,
    )
    return RewardSettings(**{**base, **kw})


def test_learns_a_separable_set_and_reports_held_out(tmp_path, tiny):
    data = toy_preferences(tmp_path / "prefs.jsonl")
    info = train_reward(settings(tmp_path, tiny, data), show_progress=False)
    assert info["pairs"] == {"total": 20, "train": 14, "held_out": 6}
    assert info["steps"] == 25 and all(math.isfinite(x) for x in info["losses"])
    before, after = info["held_out_before"], info["held_out"]
    assert after["n"] == 6
    assert after["accuracy"] == 1.0
    assert after["cross_entropy"] < before["cross_entropy"] - 0.1
    assert after["brier"] < before["brier"]
    assert 0 <= after["ece"] <= 1
    # the checkpoint: a new score head and a changed body, loadable as a reward model
    out = tmp_path / "rm"
    assert json.loads((out / "train.json").read_text())["held_out"]["n"] == 6
    start, trained = load_file(tiny / "model.safetensors"), load_file(out / "model.safetensors")
    assert "score.weight" in trained
    assert any(not torch.equal(start[k], trained[k]) for k in start if k in trained)
    rm = RewardModel.load(f"hf:{out}")
    good, bad = rm.score(["What about owls?"] * 2, [GOOD.format(t="owls"), BAD.format(t="owls")])
    assert good > bad


def test_soft_labels_are_followed_not_only_winners(tmp_path, tiny):
    """Trained on p_chosen = 0.7, the model says about 0.7; on hard labels, near 1."""
    data = toy_preferences(tmp_path / "prefs.jsonl", p_chosen=0.7)
    soft = train_reward(settings(tmp_path, tiny, data, max_steps=40), show_progress=False)
    hard = train_reward(
        settings(tmp_path, tiny, data, max_steps=40, out=tmp_path / "hard", hard_labels=True),
        show_progress=False,
    )
    assert abs(soft["held_out"]["mean_p_model"] - 0.7) < 0.1
    assert hard["held_out"]["mean_p_model"] > 0.9
    assert soft["held_out"]["brier"] < hard["held_out"]["brier"]


def test_hard_labels_train_a_tie_towards_a_half_not_a_loss(tmp_path, tiny):
    """--hard-labels: a pair the judge called exactly 0.5 has target 0.5, not 0 (a loss for
    ``chosen``): trained on ties only, the model stays undecided instead of learning that the
    helpful answer is worse."""
    data = toy_preferences(tmp_path / "prefs.jsonl", p_chosen=0.5)
    info = train_reward(
        settings(tmp_path, tiny, data, max_steps=40, hard_labels=True), show_progress=False
    )
    assert abs(info["held_out"]["mean_p_model"] - 0.5) < 0.1


def test_show_example_prints_both_sequences_in_the_chat_template(tmp_path, tiny):
    data = toy_preferences(tmp_path / "prefs.jsonl")
    out = tmp_path / "rm"
    cmd = [*RLAIF, "train", "reward", "--data", str(data), "--model", f"hf:{tiny}"]
    proc = subprocess.run(
        [*cmd, "--out", str(out), "--show-example"], capture_output=True, text=True, env=_env()
    )
    assert proc.returncode == 0, proc.stderr
    assert "=== chosen:" in proc.stdout and "=== rejected:" in proc.stdout
    assert "<|im_start|>assistant\nSure, here is a clear and helpful answer" in proc.stdout
    assert "<|im_start|>assistant\nNo. I will not talk about" in proc.stdout
    assert not out.exists()


def test_split_is_by_prompt_and_deterministic(tmp_path):
    pairs = read_preferences(toy_preferences(tmp_path / "prefs.jsonl"))
    train, held = split_pairs(pairs, 0.3)
    assert {p.group for p in train}.isdisjoint({p.group for p in held})
    assert len(held) == 6 and split_pairs(pairs, 0.3) == (train, held)
    assert split_pairs(pairs, 0.0) == (pairs, [])


@pytest.mark.parametrize(
    "line, message",
    [
        ("not json", r"prefs.jsonl:2: not valid JSON"),
        ('{"prompt": "q", "chosen": "a", "p_chosen": 0.6}', r":2: missing field 'rejected'"),
        ('{"prompt": "q", "chosen": "a", "rejected": "b", "p_chosen": 1.5}', r":2: .*\[0, 1\]"),
        ('{"prompt": "q", "chosen": "a", "rejected": "b"}', r":2: 'p_chosen' is missing here"),
        (
            '{"prompt": "q", "chosen": [{"role": "assistant"}], "rejected": "b", "p_chosen": 0.6}',
            r":2: field 'chosen' must be text or",
        ),
    ],
)
def test_bad_preferences_name_the_line(tmp_path, line, message):
    path = tmp_path / "prefs.jsonl"
    good = {"prompt": "q", "chosen": "a", "rejected": "b", "p_chosen": 0.6}
    path.write_text(json.dumps(good) + "\n" + line + "\n")
    with pytest.raises(InputError, match=message):
        read_preferences(path)


def test_hard_labelled_trl_file_reads_as_p_one(tmp_path):
    path = tmp_path / "trl.jsonl"
    path.write_text(json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"}) + "\n")
    assert read_preferences(path)[0].p_chosen == 1.0


def test_a_causal_model_is_not_a_reward_model(tiny):
    with pytest.raises(ModelSpecError, match="not a reward model"):
        RewardModel.load(f"hf:{tiny}")


def test_cli_trains_prints_metrics_and_refuses_a_used_out(tmp_path, tiny):
    data = toy_preferences(tmp_path / "prefs.jsonl")
    out = tmp_path / "rm"
    cmd = [*RLAIF, "train", "reward", "--data", str(data), "--model", f"hf:{tiny}"]
    cmd += ["--out", str(out), "--max-steps", "3", "--learning-rate", "1e-3", "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env())
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout + proc.stderr
    for expected in ("pairwise accuracy", "Brier vs p_chosen", "ECE", "20 read", "held out"):
        assert expected in text, text
    assert (out / "train.json").is_file() and (out / "model.safetensors").is_file()
    again = subprocess.run(cmd, capture_output=True, text=True, env=_env())
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [
        f"error: --out '{out}' already exists and is not empty; choose a new directory or delete it"
    ]
    missing = [*RLAIF, "train", "reward", "--data", str(tmp_path / "none.jsonl")]
    missing += ["--model", f"hf:{tiny}", "--out", str(tmp_path / "x")]
    bad = subprocess.run(
        missing,
        capture_output=True,
        text=True,
        env=_env(),
    )
    assert bad.returncode == 1 and "no such preferences file" in bad.stderr
    assert not (tmp_path / "x").exists()


def _env() -> dict:
    import os

    return {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}


def test_lora_reward_model_learns_and_saves_merged(tmp_path, tiny):
    data = toy_preferences(tmp_path / "prefs.jsonl")
    info = train_reward(
        settings(tmp_path, tiny, data, lora=True, learning_rate=1e-2), show_progress=False
    )
    assert info["held_out"]["accuracy"] == 1.0
    assert not (tmp_path / "rm" / "adapter_config.json").exists()
    rm = RewardModel.load(f"hf:{tmp_path / 'rm'}")
    good, bad = rm.score(["What about tea?"] * 2, [GOOD.format(t="tea"), BAD.format(t="tea")])
    assert good > bad
