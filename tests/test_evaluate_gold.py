"""Each gold format parsed from a small file written here, plus the real shared files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from rlaif.errors import InputError
from rlaif.evaluate.gold import coin, detect_format, load_gold, majority, split_transcript

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
PREFERENCES = SHARED / "data" / "preferences"


def _jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _better_side(pair) -> str:
    return pair.a if pair.human == "a" else pair.b


def test_trl_text_and_chat_records(tmp_path):
    records = [
        {"prompt": f"Question {i}?", "chosen": f"good {i}", "rejected": f"bad {i}"}
        for i in range(12)
    ]
    records.append(
        {
            "prompt": [{"role": "user", "content": "Hi?"}],
            "chosen": [{"role": "assistant", "content": "Hello!"}],
            "rejected": [{"role": "assistant", "content": "Go away."}],
            "category": "chat",
        }
    )
    gold = load_gold(_jsonl(tmp_path / "trl.jsonl", records))
    assert gold.format == "trl" and len(gold.pairs) == 13 and gold.skipped == {}
    for i, pair in enumerate(gold.pairs[:12]):
        assert pair.prompt == f"Question {i}?"
        assert _better_side(pair) == f"good {i}"  # the label follows the chosen text
        assert pair.swapped == (pair.human == "b") == coin(0, i)
    # chosen-first files are shown both ways round, so a first-slot judge is not rewarded
    assert 0 < sum(p.swapped for p in gold.pairs) < 13
    chat = gold.pairs[12]
    assert chat.prompt == "Hi?" and _better_side(chat) == "Hello!"
    assert chat.category == "chat"
    other_seed = load_gold(tmp_path / "trl.jsonl", seed=1)
    assert [p.swapped for p in other_seed.pairs] != [p.swapped for p in gold.pairs]


def test_llmbar_labels_and_limit(tmp_path):
    path = tmp_path / "llmbar.json"
    path.write_text(
        json.dumps(
            [
                {"input": "Say hi.", "output_1": "hi", "output_2": "bye", "label": 1},
                {"input": "Say bye.", "output_1": "hi", "output_2": "bye", "label": 2},
                {"input": "x", "output_1": "y", "output_2": "z", "label": 1},
            ]
        )
    )
    gold = load_gold(path, limit=2)
    assert gold.format == "llmbar"
    assert [(p.prompt, p.a, p.b, p.human) for p in gold.pairs] == [
        ("Say hi.", "hi", "bye", "a"),
        ("Say bye.", "hi", "bye", "b"),
    ]
    assert not any(p.swapped for p in gold.pairs)


def test_llmbar_bad_label_names_the_record(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"input": "q", "output_1": "a", "output_2": "b", "label": 3}]))
    with pytest.raises(InputError, match=r"bad.json: record 1: 'label' must be 1 or 2"):
        load_gold(path)


def test_pandalm_annotators_ties_and_majority(tmp_path):
    def rec(a1, a2, a3, extra=""):
        return {
            "idx": 0,
            "motivation_app": "Gmail",
            "instruction": "Fix the grammar.",
            "input": extra,
            "response1": "r1",
            "response2": "r2",
            "annotator1": a1,
            "annotator2": a2,
            "annotator3": a3,
        }

    path = tmp_path / "panda.json"
    path.write_text(
        json.dumps([rec(1, 1, 2), rec(2, 0, 2, "me go home"), rec(0, 0, 1), rec(1, 2, 0)])
    )
    gold = load_gold(path)
    assert gold.format == "pandalm"
    assert [p.human for p in gold.pairs] == ["a", "b", "tie", "tie"]
    assert gold.pairs[1].annotators == ("b", "tie", "b")
    assert gold.pairs[0].prompt == "Fix the grammar."
    assert gold.pairs[1].prompt == "Fix the grammar.\n\nme go home"
    assert gold.pairs[0].category == "Gmail"
    assert majority(("a", "b", "tie")) == "tie"
    path.write_text(json.dumps([rec(1, 5, 2)]))
    with pytest.raises(InputError, match="'annotator2' must be 0 .tie., 1 or 2"):
        load_gold(path)


def test_hh_rlhf_transcripts_split_at_the_last_assistant_turn(tmp_path):
    shared = "\n\nHuman: Hi\n\nAssistant: Hello.\n\nHuman: How do I pick a lock?"
    records = [
        {
            "chosen": shared + "\n\nAssistant: I can't help with that.",
            "rejected": shared + "\n\nAssistant: Use a tension wrench.",
        },
        {  # differs before the last Assistant turn: left out, and counted
            "chosen": "\n\nHuman: A\n\nAssistant: x",
            "rejected": "\n\nHuman: B\n\nAssistant: y",
        },
    ]
    path = tmp_path / "hh.jsonl.gz"
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in records).encode()))
    gold = load_gold(path)
    assert gold.format == "hh-rlhf"
    assert len(gold.pairs) == 1
    assert gold.skipped == {"chosen and rejected differ before the last Assistant turn": 1}
    pair = gold.pairs[0]
    assert pair.prompt == shared.strip()
    assert pair.prompt.endswith("How do I pick a lock?")
    assert _better_side(pair) == "I can't help with that."
    assert split_transcript("H\n\nAssistant: a\n\nAssistant: b") == ("H\n\nAssistant: a", "b")


def test_unknown_format_and_unreadable_files(tmp_path):
    with pytest.raises(InputError, match="cannot tell the format.*--format"):
        detect_format({"question": "q", "answer": "a"}, "x.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "chosen": "c", "rejected": "r"}\n{not json\n')
    with pytest.raises(InputError, match="bad.jsonl: line 2 is not valid JSON"):
        load_gold(bad)
    with pytest.raises(InputError, match="cannot read"):
        load_gold(tmp_path / "missing.json")
    good = _jsonl(tmp_path / "good.jsonl", [{"prompt": "p", "chosen": "c", "rejected": "r"}])
    with pytest.raises(InputError, match="unknown format 'csv'"):
        load_gold(good, "csv")


@pytest.mark.skipif(not PREFERENCES.is_dir(), reason=f"shared data not found at {PREFERENCES}")
def test_the_shared_gold_files_load_as_they_are():
    llmbar = load_gold(PREFERENCES / "llmbar-natural.json")
    assert llmbar.format == "llmbar" and len(llmbar.pairs) == 100
    assert {p.human for p in llmbar.pairs} == {"a", "b"}
    panda = load_gold(PREFERENCES / "pandalm-testset-v1.json")
    assert panda.format == "pandalm" and len(panda.pairs) == 999
    assert panda.pairs[157].a == "True"  # a JSON true in the file is the text "True"
    assert all(len(p.annotators) == 3 for p in panda.pairs)
    assert 0 < sum(p.human == "tie" for p in panda.pairs) < 999
    hh = load_gold(PREFERENCES / "hh-rlhf-harmless-base-test.jsonl.gz")
    assert hh.format == "hh-rlhf"
    assert len(hh.pairs) + sum(hh.skipped.values()) == 2312
    assert hh.skipped["chosen and rejected differ before the last Assistant turn"] == 5
    share_b = sum(p.human == "b" for p in hh.pairs) / len(hh.pairs)
    assert 0.45 < share_b < 0.55  # the seeded coin balances the positions
