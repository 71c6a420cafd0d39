"""The main job through the real CLI in a subprocess, on the real embedded model.

One uninterrupted run is the reference. Against it: every output file and field; a rerun
that makes zero model calls and rewrites identical files; a run killed with SIGKILL after
some labels exist and then resumed, which must end with the same records; a changed
constitution that recomputes only the labels; and every kind of bad input.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

RLAIF = [str(Path(sys.executable).with_name("rlaif"))]
RUN_ARGS = ["--limit", "3", "--n-responses", "2", "--revisions", "1", "--max-tokens", "48"]
DATA_FILES = ("preferences.jsonl", "low_margin.jsonl", "unreadable.jsonl", "sft.jsonl")
KILL_TIMEOUT_S = 600


def rlaif(*args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run the CLI; on failure show what it printed."""
    proc = subprocess.run(
        [*RLAIF, *args], capture_output=True, text=True, timeout=timeout, env=_env()
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"rlaif {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def _env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def data_bytes(run_dir: Path) -> dict[str, bytes]:
    return {name: (run_dir / name).read_bytes() for name in (*DATA_FILES, "revisions.jsonl")}


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "reference"
    rlaif("run", *RUN_ARGS, "--out", str(out), "--quiet")
    return out


def test_outputs_have_every_file_and_field(reference_run):
    run = reference_run
    for name in (*DATA_FILES, "revisions.jsonl", "run.json", "store.sqlite"):
        assert (run / name).is_file(), name
    assert not list(run.glob("*.tmp"))
    info = json.loads((run / "run.json").read_text())
    for key in ("model_calls", "cached_calls", "labels", "tokens", "cost_per_label", "config"):
        assert key in info, key
    assert info["config"]["n_responses"] == 2 and info["config"]["limit"] == 3
    assert info["versions"]["llama-cpp-python"]
    assert info["tokens"]["total"] > 0 and info["cost_per_label"] == 0.0
    prefs = read_jsonl(run / "preferences.jsonl")
    low = read_jsonl(run / "low_margin.jsonl")
    unreadable = read_jsonl(run / "unreadable.jsonl")
    assert info["labels"] == len(prefs) + len(low) + len(unreadable) > 0
    assert unreadable == []  # log-probabilities from llama.cpp are always readable
    pair_types = set()
    for rec in prefs:
        for key in ("prompt", "chosen", "rejected", "p_chosen", "principle_id"):
            assert rec[key] not in (None, ""), key
        assert rec["constitution_hash"] == info["constitution"]["hash"]
        if rec["label_source"] == "rule":  # a principle's check decided (rlaif.compare)
            assert rec["p_chosen"] == 1.0 and rec["judge"].startswith("rule:")
            assert rec["score_chosen"] > rec["score_rejected"] and rec["prompt_tokens"] == 0
            continue
        assert rec["label_source"] == "ai"
        assert rec["judge"] == "smollm2" and rec["policy"] == "smollm2"
        assert 0.5 < rec["p_chosen"] < 1.0
        # the label is the mean of both orders, each order kept
        mean = (rec["p_chosen_shown_first"] + rec["p_chosen_shown_second"]) / 2
        assert abs(rec["p_chosen"] - mean) < 2e-6
        consistent = (rec["p_chosen_shown_first"] > 0.5) == (rec["p_chosen_shown_second"] > 0.5)
        assert rec["position_consistent"] == consistent
        assert rec["chosen"] != rec["rejected"]
        assert rec["prompt_tokens"] > 0
        pair_types.add(rec["pair_type"])
        # TRL's conversational form, so TRL applies the chat template: the prompt a user
        # message list, each response one assistant message
        assert _is_user_turn(rec["prompt"]), rec["prompt"]
        assert _is_assistant_turn(rec["chosen"]) and _is_assistant_turn(rec["rejected"])
    assert pair_types <= {"responses", "revision"}
    sft = read_jsonl(run / "sft.jsonl")
    assert sft and all(r["prompt"] and r["completion"] for r in sft)
    assert all(_is_user_turn(r["prompt"]) and _is_assistant_turn(r["completion"]) for r in sft)
    revisions = read_jsonl(run / "revisions.jsonl")
    assert all(len(r["rounds"]) == 1 and r["rounds"][0]["critique"] for r in revisions)
    assert info["counts"]["preferences"] == len(prefs)
    assert info["stats"]["unreadable"] == 0


def _is_user_turn(value) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 1
        and value[0]["role"] == "user"
        and value[0]["content"].strip() != ""
    )


def _is_assistant_turn(value) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 1
        and value[0]["role"] == "assistant"
        and value[0]["content"].strip() != ""
    )


def test_text_format_rewrites_the_same_records_as_strings_with_no_model_call(
    reference_run, tmp_path
):
    """--text-format changes how records are written, not what the store holds."""
    copy = tmp_path / "copy"
    shutil.copytree(reference_run, copy)
    rlaif("run", *RUN_ARGS, "--text-format", "--out", str(copy), "--quiet")
    info = json.loads((copy / "run.json").read_text())
    assert info["model_calls"] == 0 and info["config"]["text_format"] is True
    for name in ("preferences.jsonl", "sft.jsonl"):
        chat, text = read_jsonl(reference_run / name), read_jsonl(copy / name)
        assert len(chat) == len(text) > 0
        for c, t in zip(chat, text, strict=True):
            assert t["prompt"] == c["prompt"][0]["content"]
            for field in ("chosen", "rejected", "completion"):
                if field in c:
                    assert t[field] == c[field][0]["content"]


def test_rerun_of_finished_run_makes_no_model_call(reference_run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(reference_run, copy)
    before = data_bytes(copy)
    proc = rlaif("run", *RUN_ARGS, "--out", str(copy), "--quiet")
    info = json.loads((copy / "run.json").read_text())
    assert info["model_calls"] == 0
    assert info["cached_calls"] > 0
    assert data_bytes(copy) == before
    assert "pairs labelled" in proc.stdout  # the summary


def _labels_in_store(store: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=1)
        try:
            return db.execute(
                "SELECT COUNT(*) FROM calls WHERE kind = 'choice_logprobs'"
            ).fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def test_sigkill_then_resume_gives_the_same_records(reference_run, tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [*RLAIF, "run", *RUN_ARGS, "--out", str(out), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_env(),
    )
    deadline = time.time() + KILL_TIMEOUT_S
    try:
        while _labels_in_store(out / "store.sqlite") < 2:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.time() < deadline, "no label reached the store in time"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (out / "run.json").exists()  # an unfinished run is never mistaken for a finished one
    killed_at = _labels_in_store(out / "store.sqlite")
    rlaif("run", *RUN_ARGS, "--out", str(out), "--quiet")
    info = json.loads((out / "run.json").read_text())
    assert info["cached_calls"] >= killed_at
    assert data_bytes(out) == data_bytes(reference_run)
    prefs = read_jsonl(out / "preferences.jsonl") + read_jsonl(out / "low_margin.jsonl")
    keys = [json.dumps([r["prompt"], r["chosen"], r["rejected"]]) for r in prefs]
    assert len(keys) == len(set(keys))  # nothing duplicated


def test_changed_constitution_recomputes_only_what_depends_on_it(reference_run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(reference_run, copy)
    constitution = tmp_path / "one.yaml"
    constitution.write_text(
        "principles:\n"
        "  - id: only\n"
        "    critique: Say what is wrong.\n"
        "    revision: Fix it.\n"
        "    comparison: Which response is better?\n"
    )
    args = ["--limit", "3", "--n-responses", "2", "--revisions", "0", "--max-tokens", "48"]
    rlaif("run", *args, "--constitution", str(constitution), "--out", str(copy), "--quiet")
    info = json.loads((copy / "run.json").read_text())
    prefs = read_jsonl(copy / "preferences.jsonl") + read_jsonl(copy / "low_margin.jsonl")
    assert {r["principle_id"] for r in prefs} == {"only"}
    # the six policy responses come from the store; each pair's two orders are new
    assert info["cached_calls"] == 6
    assert info["model_calls"] == 2 * info["labels"]


# -- bad input: a clear one-line error, a non-zero exit, nothing a later run would trust --------


def _fails(proc: subprocess.CompletedProcess, pattern: str) -> None:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert pattern in lines[0], lines[0]


def test_unknown_model(tmp_path):
    out = tmp_path / "run"
    _fails(rlaif("run", "--judge", "gpt5", "--out", str(out), check=False), "unknown model")
    assert not out.exists()


def test_unreadable_and_empty_prompt_files(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "fine"}\n{"prompt": \n')
    _fails(rlaif("run", "--prompts", str(bad), "--out", str(tmp_path / "a"), check=False), ":2:")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    _fails(
        rlaif("run", "--prompts", str(empty), "--out", str(tmp_path / "b"), check=False),
        "holds no prompts",
    )
    missing = tmp_path / "missing.jsonl"
    _fails(
        rlaif("run", "--prompts", str(missing), "--out", str(tmp_path / "c"), check=False),
        "no such prompts file",
    )
    assert not any((tmp_path / d).exists() for d in "abc")


def test_out_dir_of_a_different_run(reference_run, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(reference_run, other)
    prompts = tmp_path / "p.txt"
    prompts.write_text("Something else entirely?\n")
    before = data_bytes(other)
    proc = rlaif("run", "--prompts", str(prompts), "--out", str(other), check=False)
    _fails(proc, "holds a different run")
    assert data_bytes(other) == before and not list(other.glob("*.tmp"))


def test_out_dir_that_is_not_a_run(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    _fails(rlaif("run", "--out", str(tmp_path), check=False), "not an rlaif run directory")
    (tmp_path / "store.sqlite").write_text("not a database")
    sub = tmp_path
    (sub / "notes.txt").unlink()
    _fails(rlaif("run", "--out", str(sub), check=False), "store")


def test_nonsense_options(tmp_path):
    proc = rlaif(
        "run", "--n-responses", "1", "--revisions", "0", "--out", str(tmp_path / "x"), check=False
    )
    _fails(proc, "nothing to compare")


def test_dpo_trainer_accepts_preferences(reference_run, tmp_path):
    """TRL's DPOTrainer trains on preferences.jsonl (tiny model built here, real tokenizer)."""
    import copy
    import math

    import torch
    from datasets import load_dataset
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    from trl import DPOConfig, DPOTrainer

    from rlaif.backends.llamacpp import embedded_model_path

    gguf = embedded_model_path()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dataset = load_dataset(
        "json", data_files=str(reference_run / "preferences.jsonl"), split="train"
    )
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=512,
        )
    )
    args = DPOConfig(
        output_dir=str(tmp_path / "dpo"),
        max_steps=2,
        per_device_train_batch_size=2,
        max_length=256,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
    )
    before = [p.detach().clone() for p in model.parameters()]
    trainer = DPOTrainer(
        model=model,
        ref_model=copy.deepcopy(model),  # built here, so TRL cannot reload it from a path
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    result = trainer.train()
    assert math.isfinite(result.training_loss)
    changed = any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
    assert changed, "two DPO steps left every parameter as it was"
