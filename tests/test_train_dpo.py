"""DPO through TRL's DPOTrainer: a tiny model built here for the logic (parameters change,
losses finite, the per-pair soft-label loss and its fixed point, the chat template in what the
model receives, the margin filter), and one short smoke run of the documented sequence on the
real embedded model: ``rlaif run`` -> ``rlaif train dpo`` -> ``rlaif generate --model hf:DIR``."""

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
import torch.nn.functional as F
from safetensors.torch import load_file
from tiny_model import tiny_checkpoint

from rlaif.backends.checkpoints import resolve_checkpoint
from rlaif.errors import InputError
from rlaif.train.data import prompt_key
from rlaif.train.dpo import (
    TARGET,
    DPOSettings,
    build_trainer,
    select_pairs,
    target,
    train_dpo,
)
from rlaif.train.models import load_model_and_tokenizer

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
    assert saved["format"] == "conversational"
    assert saved["train_prompts"] == sorted(
        prompt_key(f"Question {i}: how do I boil an egg?") for i in range(4)
    )
    assert (out / "tokenizer.json").is_file()
    assert (out / "training_curves.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert [m["step"] for m in saved["step_metrics"]] == [1, 2, 3]
    assert all("rewards/accuracies" in m and "rewards/margins" in m for m in saved["step_metrics"])


def _completion_logps(model, batch) -> torch.Tensor:
    """Sum of log p(token) over each row's completion tokens, computed here from scratch."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    token = logp.gather(-1, batch["input_ids"][:, 1:, None])[..., 0]
    return (token * batch["completion_mask"][:, 1:]).sum(dim=1)


def test_soft_loss_is_the_formula_and_stops_where_the_policy_agrees(tmp_path, tiny):
    """loss_i = -p log s(b h) - (1 - p) log s(-b h); its gradient is zero where s(b h) = p."""
    data = write_pairs(tmp_path / "prefs.jsonl", [0.8, 0.6, 0.95])
    settings = DPOSettings(
        data=str(data),
        out=tmp_path / "o",
        model=f"hf:{tiny}",
        batch_size=3,
        beta=0.5,
        nll_weight=0,
    )
    pairs, _ = select_pairs(settings)
    model, tokenizer = load_model_and_tokenizer(f"hf:{tiny}")
    reference = load_model_and_tokenizer(f"hf:{tiny}")[0].eval()
    with tempfile.TemporaryDirectory() as work:
        trainer = build_trainer(settings, pairs, model, tokenizer, work)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])
    assert batch[TARGET].tolist() == pytest.approx([0.8, 0.6, 0.95])
    # move the policy away from the reference so that h is not 0
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    model.train()
    with torch.no_grad():
        ref_c, ref_r = _completion_logps(reference, batch).chunk(2)
        pol_c, pol_r = _completion_logps(model, batch).chunk(2)
    h = (pol_c - ref_c) - (pol_r - ref_r)
    assert h.abs().min() > 1e-3
    p, beta = batch[TARGET], 0.5
    expected = -(p * F.logsigmoid(beta * h) + (1 - p) * F.logsigmoid(-beta * h)).mean()
    loss = trainer.compute_loss(model, dict(batch))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)

    def grad_norm(targets: torch.Tensor) -> float:
        model.zero_grad()
        trainer.compute_loss(model, {**batch, TARGET: targets}).backward()
        return math.sqrt(
            sum(float((q.grad**2).sum()) for q in model.parameters() if q.grad is not None)
        )

    at_fixed_point = grad_norm(torch.sigmoid(beta * h).float())
    away = grad_norm(torch.ones(3))  # the hard label: still pushing
    assert away > 1e-3
    assert at_fixed_point < 1e-4 * away


def test_hard_loss_is_trls_sigmoid_loss(tmp_path, tiny):
    """With p = 1 (a human label) the soft loss and TRL's own sigmoid loss are the same number
    (plain DPO: no NLL term)."""
    data = write_pairs(tmp_path / "prefs.jsonl", [1.0, 1.0])
    settings = DPOSettings(
        data=str(data), out=tmp_path / "o", model=f"hf:{tiny}", batch_size=2, nll_weight=0
    )
    pairs, _ = select_pairs(settings)
    model, tokenizer = load_model_and_tokenizer(f"hf:{tiny}")
    with tempfile.TemporaryDirectory() as work:
        trainer = build_trainer(settings, pairs, model, tokenizer, work)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    ours = trainer.compute_loss(model, dict(batch))
    inputs = {k: v for k, v in batch.items() if k != TARGET}
    trls = super(type(trainer), trainer)._compute_loss(model, inputs, return_outputs=False)
    assert ours.item() == pytest.approx(trls.item(), rel=1e-5)


def test_nll_weight_adds_the_chosen_answers_per_token_nll(tmp_path, tiny):
    """--nll-weight w: loss = soft DPO loss + w * mean over pairs of -log p(chosen) / tokens."""
    data = write_pairs(tmp_path / "prefs.jsonl", [0.8, 0.6])
    losses = {}
    for w in (0.0, 0.5):
        settings = DPOSettings(
            data=str(data), out=tmp_path / "o", model=f"hf:{tiny}", batch_size=2, nll_weight=w
        )
        pairs, _ = select_pairs(settings)
        model, tokenizer = load_model_and_tokenizer(f"hf:{tiny}")
        with tempfile.TemporaryDirectory() as work:
            trainer = build_trainer(settings, pairs, model, tokenizer, work)
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
        model.train()
        losses[w] = trainer.compute_loss(model, dict(batch)).item()
    with torch.no_grad():
        chosen = _completion_logps(model, batch).chunk(2)[0]
        tokens = batch["completion_mask"].sum(dim=1).chunk(2)[0]
    nll = (-chosen / tokens).mean().item()
    assert nll > 1.0  # an untrained tiny model: several nats per token
    assert losses[0.5] == pytest.approx(losses[0.0] + 0.5 * nll, rel=1e-4)
    with pytest.raises(ValueError, match="nll_weight"):
        DPOSettings(data=str(data), out=tmp_path / "o", nll_weight=-1)


def test_show_example_shows_the_chat_template(tmp_path, tiny):
    """A text-prompt record reaches the model inside the chat template, assistant turn marked."""
    data = write_pairs(tmp_path / "prefs.jsonl", [0.7])
    out = tmp_path / "o"
    proc = rlaif(
        "train", "dpo", "--data", str(data), "--model", f"hf:{tiny}", "--out", str(out),
        "--show-example",
    )  # fmt: skip
    text = proc.stdout
    assert "<|im_start|>user\nQuestion 0: how do I boil an egg?<|im_end|>" in text
    # the prompt ends with the assistant turn's opening; the response follows the marker
    assert "<|im_start|>assistant\n[[response: chosen]]Put egg 0 in boiling water" in text
    assert "<|im_start|>assistant\n[[response: rejected]]Eggs 0 cannot be boiled." in text
    assert "p_chosen 0.7000" in text
    assert not out.exists()  # nothing trained, nothing written


def test_text_and_chat_records_go_to_trl_in_one_conversational_form(tmp_path, tiny):
    """A file mixing text prompts and chat-message prompts (an export, a merge) trains as one
    conversational data set instead of being refused."""
    from rlaif.backends.checkpoints import load_tokenizer
    from rlaif.train.dpo import preference_dataset

    path = tmp_path / "mixed.jsonl"
    chat = {
        "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}],
        "chosen": [{"role": "assistant", "content": "Hello."}],
        "rejected": [{"role": "assistant", "content": "Go away."}],
        "p_chosen": 0.7,
    }
    text = {"prompt": "Why?", "chosen": "Because.", "rejected": "No.", "p_chosen": 0.6}
    path.write_text(json.dumps(text) + "\n" + json.dumps(chat) + "\n")
    settings = DPOSettings(data=str(path), out=tmp_path / "o", model=f"hf:{tiny}")
    pairs, _ = select_pairs(settings)
    data = preference_dataset(settings, pairs, load_tokenizer(tiny))
    assert data[0]["prompt"] == [{"role": "user", "content": "Why?"}]
    assert data[0]["chosen"] == [{"role": "assistant", "content": "Because."}]
    assert data[1]["prompt"] == chat["prompt"] and data[1]["rejected"] == chat["rejected"]
    assert data[TARGET] == pytest.approx([0.6, 0.7])


def test_weights_and_margin_filter(tmp_path):
    data = write_pairs(tmp_path / "prefs.jsonl", [0.9, 0.52, 0.3])
    kept, counts = select_pairs(DPOSettings(data=str(data), out=tmp_path / "o", min_margin=0.1))
    assert counts == {
        "read": 3,
        "kept": 2,
        "dropped_low_margin": 1,
        "dropped_degenerate_chosen": 0,
        "ties": 0,
        "mean_target": pytest.approx(0.8),  # 0.9 and 0.7
    }
    # p_chosen 0.3 is turned around: the label prefers the other side
    flipped = [p for p in kept if p.line == 3][0]
    assert flipped.p_chosen == pytest.approx(0.7) and flipped.chosen.startswith("Eggs 2")
    with pytest.raises(InputError, match=r"largest is 0\.4000\); lower --min-margin"):
        select_pairs(DPOSettings(data=str(data), out=tmp_path / "o", min_margin=0.45))
    flat = write_pairs(tmp_path / "flat.jsonl", [0.5, 0.5])
    for loss in ("soft", "hard"):
        with pytest.raises(InputError, match="nothing to learn"):
            select_pairs(DPOSettings(data=str(flat), out=tmp_path / "o", loss=loss))
    mixed = write_pairs(tmp_path / "mixed.jsonl", [0.5, 0.75])
    _, counts = select_pairs(DPOSettings(data=str(mixed), out=tmp_path / "o", loss="hard"))
    assert counts["ties"] == 1 and counts["mean_target"] == pytest.approx(0.75)  # 0.5 and 1


def test_auto_loss_is_hard_for_rule_labels_and_soft_for_the_judge_models(tmp_path):
    data = write_pairs(tmp_path / "prefs.jsonl", [0.731, 0.6, 0.3, 0.8])
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    for row, source in zip(rows, ["rule", "ai", "rule", None], strict=True):
        if source:
            row["label_source"] = source
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    expected = {
        "auto": [1.0, 0.6, 1.0, 0.8],  # the third turned around, still a rule's label
        "soft": [0.731, 0.6, 0.7, 0.8],
        "hard": [1.0, 1.0, 1.0, 1.0],
    }
    assert DPOSettings(data=str(data), out=tmp_path / "o").loss == "auto"
    for loss, targets in expected.items():
        kept, counts = select_pairs(DPOSettings(data=str(data), out=tmp_path / "o", loss=loss))
        assert [target(p, loss) for p in kept] == pytest.approx(targets)
        assert counts["mean_target"] == pytest.approx(sum(targets) / len(targets))
    rows[1]["label_source"] = 1
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(InputError, match=r"prefs.jsonl.*2.*'label_source' must be a string"):
        select_pairs(DPOSettings(data=str(data), out=tmp_path / "o"))


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
    # the drift check that ends every training run: starting vs trained on held-out prompts
    assert "drift on 6 held-out prompts" in proc.stdout
    drift = json.loads((out / "drift.json").read_text())
    assert drift["start"] == "smollm2" and drift["prompts"] == 6
    assert drift["base"]["n"] == drift["policy"]["n"] == 6
    assert drift["kl"]["per_token"] >= 0 and len(drift["samples"]) == 3
    assert ("warning:" in proc.stderr) == (drift["warning"] is not None)
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
