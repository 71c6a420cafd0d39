"""DPO through TRL's DPOTrainer: a tiny model built here for the logic (parameters change,
losses finite, the confidence-weighted draw never picks a coin-flip pair, the margin filter),
and one short smoke run of the documented sequence on the real embedded model:
``rlaif run`` -> ``rlaif train dpo`` -> ``rlaif generate --model hf:DIR``."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_model import tiny_checkpoint

from rlaif.errors import InputError
from rlaif.train.dpo import (
    DPOSettings,
    build_trainer,
    confidence_weights,
    effective_pairs,
    select_pairs,
    train_dpo,
)
from rlaif.train.models import load_model_and_tokenizer, resolve_checkpoint

RLAIF = [sys.executable, "-m", "rlaif"]


def _env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}


def rlaif(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([*RLAIF, *args], capture_output=True, text=True, env=_env())
    assert proc.returncode == 0, f"rlaif {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def write_pairs(path: Path, p_values: list[float]) -> Path:
    with path.open("w") as f:
        for i, p in enumerate(p_values):
            rec = {
                "prompt": f"Question {i}: how do I boil an egg?",
                "chosen": f"Put egg {i} in boiling water for nine minutes.",
                "rejected": f"Eggs {i} cannot be boiled.",
                "p_chosen": p,
            }
            f.write(json.dumps(rec) + "\n")
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "model")


def test_tiny_dpo_changes_parameters_with_finite_loss(tmp_path, tiny):
    data = write_pairs(tmp_path / "prefs.jsonl", [0.9, 0.8, 0.7, 0.6])
    out = tmp_path / "dpo"
    settings = DPOSettings(
        data=str(data), out=out, model=f"hf:{tiny}", max_steps=3, batch_size=2, learning_rate=1e-3
    )
    info = train_dpo(settings, show_progress=False)
    assert info["steps"] == 3 and all(math.isfinite(x) for x in info["losses"])
    assert info["pairs"]["kept"] == 4
    start, trained = load_file(tiny / "model.safetensors"), load_file(out / "model.safetensors")
    assert any(not torch.equal(start[k], trained[k]) for k in start)
    saved = json.loads((out / "train.json").read_text())
    assert saved["method"] == "dpo" and saved["losses"] == info["losses"]
    assert (out / "tokenizer.json").is_file()


def test_confidence_weighting_never_draws_a_coin_flip(tmp_path, tiny):
    """The pair labelled 0.5 has weight 0: TRL's training loader never yields it."""
    data = write_pairs(tmp_path / "prefs.jsonl", [0.9, 0.5, 0.7])
    settings = DPOSettings(data=str(data), out=tmp_path / "o", model=f"hf:{tiny}", batch_size=1)
    pairs, counts = select_pairs(settings)
    assert counts["zero_weight"] == 1
    model, tokenizer = load_model_and_tokenizer(f"hf:{tiny}")
    with tempfile.TemporaryDirectory() as work:
        trainer = build_trainer(settings, pairs, model, tokenizer, work)
        seen = []
        for _ in range(10):  # ten epochs of draws
            for batch in trainer.get_train_dataloader():
                seen.append(tokenizer.decode(batch["input_ids"][0]))  # the chosen row
    assert len(seen) == 30
    assert not any("Question 1:" in t for t in seen)
    assert any("Question 0:" in t for t in seen) and any("Question 2:" in t for t in seen)


def test_weights_and_margin_filter(tmp_path):
    assert confidence_weights([0.5, 0.75, 1.0]) == [0.0, 0.5, 1.0]
    assert effective_pairs([1.0, 1.0]) == 2.0 and effective_pairs([1.0, 0.0]) == 1.0
    data = write_pairs(tmp_path / "prefs.jsonl", [0.9, 0.52, 0.3])
    kept, counts = select_pairs(DPOSettings(data=str(data), out=tmp_path / "o", min_margin=0.1))
    assert counts == {
        "read": 3,
        "kept": 2,
        "dropped_low_margin": 1,
        "effective_pairs": pytest.approx(1.8),  # w = 0.8, 0.4
        "zero_weight": 0,
    }
    # p_chosen 0.3 is turned around: the label prefers the other side
    flipped = [p for p in kept if p.line == 3][0]
    assert flipped.p_chosen == pytest.approx(0.7) and flipped.chosen.startswith("Eggs 2")
    with pytest.raises(InputError, match=r"largest is 0\.4000\); lower --min-margin"):
        select_pairs(DPOSettings(data=str(data), out=tmp_path / "o", min_margin=0.45))
    flat = write_pairs(tmp_path / "flat.jsonl", [0.5, 0.5])
    with pytest.raises(InputError, match="--weighting uniform"):
        select_pairs(DPOSettings(data=str(flat), out=tmp_path / "o"))
    assert select_pairs(DPOSettings(data=str(flat), out=tmp_path / "o", weighting="uniform"))


def test_cli_bad_margin_is_one_error_line(tmp_path, tiny):
    data = write_pairs(tmp_path / "prefs.jsonl", [0.51])
    proc = subprocess.run(
        [*RLAIF, "train", "dpo", "--data", str(data), "--model", f"hf:{tiny}"]
        + ["--out", str(tmp_path / "o"), "--min-margin", "0.2"],
        capture_output=True,
        text=True,
        env=_env(),
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no pair has |p_chosen - 0.5| >= --min-margin 0.2" in lines[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_documented_sequence_on_the_embedded_model(tmp_path):
    """rlaif run -> rlaif train dpo (a few steps) -> rlaif generate --model hf:DIR."""
    run = tmp_path / "run"
    rlaif(
        "run", "--limit", "1", "--n-responses", "2", "--revisions", "0", "--max-tokens", "24",
        "--out", str(run), "--quiet",
    )  # fmt: skip
    assert (run / "preferences.jsonl").read_text().strip()
    out = tmp_path / "policy"
    proc = rlaif(
        "train", "dpo", "--data", str(run / "preferences.jsonl"), "--out", str(out),
        "--max-steps", "2", "--batch-size", "1", "--max-length", "128", "--learning-rate", "1e-4",
        "--quiet",
    )  # fmt: skip
    assert f"policy: hf:{out}" in proc.stdout
    info = json.loads((out / "train.json").read_text())
    assert info["steps"] == 2 and all(math.isfinite(x) for x in info["losses"])
    base = load_file(resolve_checkpoint("smollm2") / "model.safetensors")
    trained = load_file(out / "model.safetensors")
    assert any(not torch.equal(base[k], trained[k]) for k in base)
    gen = rlaif(
        "generate", "--model", f"hf:{out}", "--prompt", "What is 2+2?", "--max-tokens", "12",
        "--json",
    )  # fmt: skip
    reply = json.loads(gen.stdout)
    assert reply["model"] == f"hf:{out}" and reply["responses"][0].strip()


def test_lora_dpo_saves_a_merged_checkpoint(tmp_path, tiny):
    data = write_pairs(tmp_path / "prefs.jsonl", [0.9, 0.8])
    out = tmp_path / "lora"
    settings = DPOSettings(
        data=str(data), out=out, model=f"hf:{tiny}", max_steps=2, batch_size=2,
        learning_rate=1e-2, lora=True,
    )  # fmt: skip
    info = train_dpo(settings, show_progress=False)
    assert all(math.isfinite(x) for x in info["losses"])
    assert not (out / "adapter_config.json").exists()  # merged into the weights
    start, trained = load_file(tiny / "model.safetensors"), load_file(out / "model.safetensors")
    assert set(start) == set(trained)
    assert any(not torch.equal(start[k], trained[k]) for k in start)
