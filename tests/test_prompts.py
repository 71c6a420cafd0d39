"""Prompt files in every supported format, the real prompt sets, and each malformed case."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlaif.errors import InputError
from rlaif.prompts import builtin_prompts_path, load_prompts

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_jsonl_prompt_instruction_and_messages(tmp_path):
    path = _write(
        tmp_path,
        "p.jsonl",
        "\n".join(
            [
                json.dumps({"prompt": "Hello?"}),
                json.dumps({"instruction": "Translate.", "input": "Bonjour"}),
                "",
                json.dumps(
                    {
                        "messages": [
                            {"role": "user", "content": "Hi"},
                            {"role": "assistant", "content": "Hello!"},
                            {"role": "user", "content": "How are you?"},
                        ]
                    }
                ),
            ]
        ),
    )
    prompts = load_prompts(path)
    assert [p.text for p in prompts[:2]] == ["Hello?", "Translate.\n\nBonjour"]
    chat = prompts[2]
    assert chat.is_chat and chat.chat()[-1] == {"role": "user", "content": "How are you?"}
    assert chat.for_record()[0] == {"role": "user", "content": "Hi"}
    assert [p.id for p in prompts] == ["1", "2", "4"]  # ids are line numbers by default


def test_csv_txt_json(tmp_path):
    csv_path = _write(tmp_path, "p.csv", 'prompt,other\n"A, with comma",x\nB,y\n')
    assert [p.text for p in load_prompts(csv_path)] == ["A, with comma", "B"]
    txt = _write(tmp_path, "p.txt", "first\n\n  second  \n")
    assert [p.text for p in load_prompts(txt)] == ["first", "second"]
    js = _write(tmp_path, "p.json", json.dumps(["x", {"instruction": "y"}]))
    assert [p.text for p in load_prompts(js)] == ["x", "y"]
    assert len(load_prompts(txt, limit=1)) == 1


def test_builtin_prompts():
    prompts = load_prompts(None)
    assert prompts[0].id == "builtin-01"
    assert 24 <= len(prompts) <= 60
    categories = {p.category for p in prompts}
    assert "harmful" in categories and "knowledge" in categories
    assert builtin_prompts_path().is_file()


@pytest.mark.parametrize(
    "name, n, first_words",
    [
        ("mt-bench-questions.jsonl", 80, "Compose an engaging travel blog post"),
        ("alpaca-eval-805.json", 805, None),
    ],
)
def test_real_prompt_sets_without_conversion(name, n, first_words):
    path = SHARED / "data" / "prompts" / name
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared data folder is not beside the checkout)")
    prompts = load_prompts(path)
    assert len(prompts) == n
    assert all(p.text for p in prompts)
    if first_words:
        assert prompts[0].text.startswith(first_words)
        assert prompts[0].id == "81"  # MT-Bench question_id


@pytest.mark.parametrize(
    "name, text, expected",
    [
        ("bad.jsonl", '{"prompt": "ok"}\n{"prompt": "broken"\n', r"bad\.jsonl:2: not valid JSON"),
        (
            "nofield.jsonl",
            '{"prompt": "ok"}\n{"text": "x"}\n',
            r"nofield\.jsonl:2: no prompt field",
        ),
        ("empty.jsonl", '{"prompt": "  "}\n', r"empty\.jsonl:1: the prompt is empty"),
        ("nothing.txt", "\n\n", r"nothing\.txt: holds no prompts"),
        ("badmsg.jsonl", '{"messages": [{"role": "bot", "content": "x"}]}\n', r":1: messages\[0\]"),
        ("last.jsonl", '{"messages": [{"role": "assistant", "content": "x"}]}\n', r"last message"),
        ("dup.jsonl", '{"id": "a", "prompt": "x"}\n{"id": "a", "prompt": "y"}\n', r"twice"),
        ("cols.csv", "a,b\n1,2\n", r"cols\.csv:1: .*'prompt'"),
        ("obj.json", '{"prompt": "x"}', r"expected a JSON list"),
        ("p.xlsx", "x", r"unknown prompts format"),
    ],
)
def test_malformed_prompt_files(tmp_path, name, text, expected):
    path = _write(tmp_path, name, text)
    with pytest.raises(InputError, match=expected):
        load_prompts(path)


def test_missing_prompts_file(tmp_path):
    with pytest.raises(InputError, match="no such prompts file"):
        load_prompts(tmp_path / "absent.jsonl")
