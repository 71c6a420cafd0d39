"""Programmatic judges and checked principles through the real ``rlaif`` CLI in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

RLAIF = shutil.which("rlaif", path=os.path.dirname(sys.executable))
TIMEOUT_S = 600


def rlaif(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    assert RLAIF, f"the rlaif console script is not installed next to {sys.executable}"
    return subprocess.run(
        [RLAIF, *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_compare_with_a_rule_judge():
    proc = rlaif(
        "compare",
        "--judge",
        "rule:max_words=5",
        "--prompt",
        "Say hi",
        "--a",
        "Hi there!",
        "--b",
        "Hello, it is a great pleasure to greet you today.",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    pref = json.loads(proc.stdout)
    assert pref["label_source"] == "rule" and pref["judge"] == "rule:max_words=5"
    assert (pref["score_a"], pref["score_b"]) == (1.0, 0.0)
    assert pref["p_a"] == pytest.approx(0.7310585786)  # sigmoid(1 - 0)
    text = rlaif("compare", "--judge", "rule:max_words=5", "--prompt", "q", "--a", "x", "--b", "y")
    assert text.returncode == 0 and "p(A better) = 0.500  ->  tie" in text.stdout


def test_compare_with_a_missing_module_is_one_clear_line():
    proc = rlaif("compare", "--judge", "python:no_such_rewards:f", "--prompt", "q", "--a", "x")
    assert proc.returncode == 2  # --b is missing: click's usage error
    proc = rlaif(
        "compare", "--judge", "python:no_such_rewards:f", "--prompt", "q", "--a", "x", "--b", "y"
    )
    assert proc.returncode == 1
    assert "python:no_such_rewards:f: no module named 'no_such_rewards'" in proc.stderr
    assert "Traceback" not in proc.stderr


CHECKS = '''
def france_length(prompts, completions, **kw):
    """Longer wins on the France prompt; every response ties on any other prompt."""
    return [
        float(len(c[0]["content"])) if "France" in p[-1]["content"] else 0.0
        for p, c in zip(prompts, completions)
    ]
'''


def test_run_records_who_decided_each_label(tmp_path):
    (tmp_path / "my_checks.py").write_text(textwrap.dedent(CHECKS))
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        '{"id": "p1", "prompt": "What is the capital of France?"}\n'
        '{"id": "p2", "prompt": "Name a colour."}\n'
    )
    constitution = tmp_path / "c.yaml"
    constitution.write_text(
        textwrap.dedent(
            """
            name: checked
            principles:
              - id: long-france
                critique: Say what is missing.
                revision: Rewrite it completely.
                comparison: Which response is more complete?
                check: python:my_checks:france_length
            """
        )
    )
    out = tmp_path / "run"
    args = [
        "run",
        "--prompts",
        str(prompts),
        "--constitution",
        str(constitution),
        "--revisions",
        "0",
        "--max-tokens",
        "16",
        "--out",
        str(out),
    ]
    env = {"PYTHONPATH": str(tmp_path), "RLAIF_N_THREADS": "1"}
    proc = rlaif(*args, env=env)
    assert proc.returncode == 0, proc.stderr
    records = [
        json.loads(line)
        for name in ("preferences.jsonl", "low_margin.jsonl")
        for line in (out / name).read_text().splitlines()
    ]
    by_prompt = {r["prompt_id"]: r for r in records}
    assert by_prompt["p1"]["label_source"] == "rule"
    assert by_prompt["p1"]["p_chosen"] == 1.0
    assert by_prompt["p1"]["judge"] == "python:my_checks:france_length"
    assert by_prompt["p1"]["score_chosen"] > by_prompt["p1"]["score_rejected"]
    assert len(by_prompt["p1"]["chosen"][0]["content"]) == by_prompt["p1"]["score_chosen"]
    assert by_prompt["p2"]["label_source"] == "ai" and by_prompt["p2"]["judge"] == "smollm2"
    assert "score_chosen" not in by_prompt["p2"]
    info = json.loads((out / "run.json").read_text())
    assert info["stats"]["label_source"] == {"rule": 1, "ai": 1}
    assert "decided by rule / AI" in proc.stdout and "1 / 1" in proc.stdout
    report = rlaif("report", str(out))
    assert report.returncode == 0, report.stderr
    html = (out / "report.html").read_text()
    assert "decided by rule / AI" in html and "1 / 1" in html
    # the same command again: everything from the store, the same split
    again = rlaif(*args, env=env)
    assert again.returncode == 0, again.stderr
    info = json.loads((out / "run.json").read_text())
    assert info["model_calls"] == 0
    assert info["stats"]["label_source"] == {"rule": 1, "ai": 1}


def test_run_with_a_rule_judge_labels_without_a_judge_model(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"id": "p1", "prompt": "Name a colour."}\n')
    out = tmp_path / "run"
    proc = rlaif(
        "run",
        "--prompts",
        str(prompts),
        "--judge",
        "rule:max_words=6",
        "--n-responses",
        "3",
        "--revisions",
        "0",
        "--max-tokens",
        "16",
        "--out",
        str(out),
        env={"RLAIF_N_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    info = json.loads((out / "run.json").read_text())
    labels = info["labels"]
    assert labels >= 1 and info["stats"]["label_source"] == {"rule": labels, "ai": 0}
    assert info["tokens"]["by_role"]["judge"] == {"prompt": 0, "completion": 0}
    for name in ("preferences.jsonl", "low_margin.jsonl"):
        for line in (out / name).read_text().splitlines():
            r = json.loads(line)
            assert r["label_source"] == "rule" and r["mode"] == "rule"
            # a response cut at --max-tokens fails a length rule, whatever its word count
            words = [
                len(r[side][0]["content"].split()) <= 6 and not r[f"{side}_truncated"]
                for side in ("chosen", "rejected")
            ]
            assert (r["score_chosen"], r["score_rejected"]) == tuple(map(float, words))
            assert r["p_chosen"] in (0.5, pytest.approx(0.7310585786))


def test_eval_agreement_with_a_rule_judge(tmp_path):
    gold = tmp_path / "gold.json"
    short, long = "Paris.", "The capital city of the French Republic is Paris, of course."
    records = [  # the human prefers the short answer; label 1 = output_1 better
        {"input": "Capital of France?", "output_1": short, "output_2": long, "label": 1},
        {"input": "Capital of France?", "output_1": long, "output_2": short, "label": 2},
        {"input": "Say hi.", "output_1": "Hi!", "output_2": "Hello!", "label": 1},
    ]
    gold.write_text(json.dumps(records))
    out = tmp_path / "eval"
    proc = rlaif(
        "eval", "agreement", "--gold", str(gold), "--judge", "rule:max_words=3", "--out", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == ["rule"]
    pairs = [json.loads(line) for line in (out / "pairs.jsonl").read_text().splitlines()]
    assert [r["p_a"] for r in pairs][2] == 0.5  # both pass: a tie, not a win
    p_short = [r["p_a"] if r["human"] == "a" else 1 - r["p_a"] for r in pairs[:2]]
    assert p_short == [pytest.approx(0.7310585786)] * 2
    # two agreements and a judge tie (half): 2.5 of 3
    assert metrics["rule"]["agreement"] == pytest.approx(2.5 / 3, abs=1e-6)
    assert metrics["rule"]["judge_ties"] == 1
