"""Preference data for training, without a model: the conversational form TRL gets, grouping
by prompt text for the held-out split, hard targets at a tie, and what a checkpoint records
about the prompts it was trained on (real files throughout)."""

from __future__ import annotations

import json
from pathlib import Path

from rlaif.train.data import hard_target, prompt_key, read_preferences, split_pairs
from rlaif.train.provenance import starting_model, trained_prompt_keys, training_record


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_text_records_go_to_trl_in_conversational_form(tmp_path):
    data = _write(
        tmp_path / "prefs.jsonl",
        [{"prompt": "Why?", "chosen": "Because.", "rejected": "No.", "p_chosen": 0.7}],
    )
    (pair,) = read_preferences(data)
    rec = pair.to_trl()
    assert rec["prompt"] == [{"role": "user", "content": "Why?"}]
    assert rec["chosen"] == [{"role": "assistant", "content": "Because."}]
    assert rec["rejected"] == [{"role": "assistant", "content": "No."}]
    assert rec["p_chosen"] == 0.7
    # text stays text only when asked (a base model without a chat template)
    assert pair.to_trl(conversational=False)["prompt"] == "Why?"


def test_the_same_prompt_text_under_two_ids_stays_on_one_side(tmp_path):
    records = []
    for i in range(12):
        text = f"Question {i}?"
        for pid in (f"a{i}", f"b{i}"):  # the same prompt under two ids
            records.append(
                {
                    "prompt": text,
                    "chosen": "yes",
                    "rejected": "no",
                    "p_chosen": 0.8,
                    "prompt_id": pid,
                }
            )
    # and once more as a chat message list: the same prompt again
    records.append(
        {
            "prompt": [{"role": "user", "content": "Question 0?"}],
            "chosen": [{"role": "assistant", "content": "yes"}],
            "rejected": [{"role": "assistant", "content": "no"}],
            "p_chosen": 0.8,
            "prompt_id": "c0",
        }
    )
    pairs = read_preferences(_write(tmp_path / "p.jsonl", records))
    for seed in range(5):
        train, held = split_pairs(pairs, 0.3, seed)
        assert held and train
        assert {prompt_key(p.prompt) for p in train}.isdisjoint(prompt_key(p.prompt) for p in held)


def test_hard_target_of_a_tie_is_a_half():
    assert hard_target(0.9) == 1.0 and hard_target(0.2) == 0.0
    assert hard_target(0.5) == 0.5


def test_prompt_key_ignores_the_form():
    text = prompt_key("  What is 2+2? ")
    assert text == prompt_key([{"role": "user", "content": "What is 2+2?"}])
    assert text != prompt_key(
        [{"role": "system", "content": "x"}, {"role": "user", "content": "What is 2+2?"}]
    )


def _checkpoint(path: Path, info: dict) -> str:
    path.mkdir(parents=True)
    (path / "train.json").write_text(json.dumps(info))
    return f"hf:{path}"


def test_training_prompts_are_inherited_and_read_back(tmp_path):
    first = _checkpoint(
        tmp_path / "round-1",
        {"settings": {"model": "smollm2"}, "train_prompts": [prompt_key("Old question?")]},
    )
    keys = training_record(["New question?"], first)
    assert set(keys) == {prompt_key("Old question?"), prompt_key("New question?")}
    second = _checkpoint(
        tmp_path / "round-2", {"settings": {"model": first}, "train_prompts": keys}
    )
    assert starting_model(second) == first
    assert trained_prompt_keys(second) == set(keys)
    # a train.json without the record (an older checkpoint): read from its data file
    data = _write(
        tmp_path / "prefs.jsonl",
        [{"prompt": "From the file?", "chosen": "a", "rejected": "b", "p_chosen": 0.6}],
    )
    older = _checkpoint(
        tmp_path / "older", {"method": "dpo", "settings": {"model": first, "data": str(data)}}
    )
    assert trained_prompt_keys(older) == {prompt_key("From the file?"), prompt_key("Old question?")}
    assert trained_prompt_keys("smollm2") is None
    assert trained_prompt_keys(f"hf:{tmp_path / 'nowhere'}") is None
