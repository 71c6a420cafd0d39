"""The real ``rlaif`` console script, run in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from rlaif.cli.app import cli
from rlaif.compare import Judge

RLAIF = shutil.which("rlaif", path=os.path.dirname(sys.executable))
TIMEOUT_S = 300

PROMPT = "What is the capital of France?"
GOOD = "The capital of France is Paris."
ABSURD = "France has no capital; the moon is made of cheese."
PAIR = ["--prompt", PROMPT, "--a", GOOD, "--b", ABSURD]
PREFERENCE_KEYS = {
    "p_a",
    "p_a_order_ab",
    "p_a_order_ba",
    "position_consistent",
    "principle_id",
    "judge",
    "method",
}


def run(*args: str) -> subprocess.CompletedProcess:
    assert RLAIF, f"the rlaif console script is not installed next to {sys.executable}"
    return subprocess.run(
        [RLAIF, *args], capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )


def run_json(*args: str) -> dict:
    proc = run(*args, "--json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no log noise from llama.cpp or at interpreter exit
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout  # one JSON object, nothing else
    obj = json.loads(lines[0])
    assert isinstance(obj, dict)
    return obj


def test_compare_json(smollm2, constitution):
    obj = run_json("compare", "--judge", "smollm2", *PAIR)
    assert PREFERENCE_KEYS <= obj.keys()
    assert obj["judge"] == "smollm2"
    assert obj["method"] == "logprobs"
    assert obj["principle_id"] in {p.id for p in constitution.principles}
    for key in ("p_a", "p_a_order_ab", "p_a_order_ba"):
        assert 0.0 < obj[key] < 1.0
    assert obj["p_a"] == pytest.approx((obj["p_a_order_ab"] + obj["p_a_order_ba"]) / 2)
    ab, ba = obj["p_a_order_ab"], obj["p_a_order_ba"]
    assert obj["position_consistent"] == ((ab > 0.5) == (ba > 0.5))
    # another process, the same tokens: the same label as the library gives here
    here = Judge(smollm2, constitution).compare(PROMPT, GOOD, ABSURD)
    assert obj["p_a"] == pytest.approx(here.p_a, abs=1e-9)
    assert obj["principle_id"] == here.principle_id


def test_compare_pointwise_json():
    obj = run_json("compare", "--judge", "smollm2", *PAIR, "--mode", "pointwise")
    assert PREFERENCE_KEYS <= obj.keys()
    assert obj["mode"] == "pointwise"
    assert 0.0 < obj["p_a"] < 1.0
    # each response is asked alone: no order figure was measured, the scores keep their names
    assert obj["p_a_order_ab"] is None and obj["p_a_order_ba"] is None
    assert obj["position_consistent"] is None
    assert 0.0 < obj["p_yes_a"] < 1.0 and 0.0 < obj["p_yes_b"] < 1.0
    proc = run("compare", "--judge", "smollm2", *PAIR, "--mode", "pointwise")
    assert proc.returncode == 0, proc.stderr
    assert "p(Yes) for A: 0." in proc.stdout and "position consistent: n/a" in proc.stdout


def test_compare_one_order_json():
    obj = run_json("compare", *PAIR, "--one-order")
    assert obj["p_a_order_ba"] is None
    assert obj["p_a"] == obj["p_a_order_ab"]


def test_compare_text_output():
    proc = run("compare", *PAIR)
    assert proc.returncode == 0, proc.stderr
    assert "p(A better) = 0." in proc.stdout
    assert "principle:" in proc.stdout


def test_critique_json(constitution):
    obj = run_json("critique", "--judge", "smollm2", "--prompt", PROMPT, "--response", ABSURD)
    assert obj["principle_id"] in {p.id for p in constitution.principles}
    assert obj["text"].strip()
    assert obj["constitution_hash"] == constitution.hash


@pytest.mark.slow
def test_revise_json(constitution):
    obj = run_json(
        "revise", "--model", "smollm2", "--prompt", PROMPT, "--response", ABSURD, "--rounds", "1"
    )
    assert obj["principle_id"] in {p.id for p in constitution.principles}
    assert obj["critique"].strip()
    assert obj["revision"].strip()
    assert len(obj["rounds"]) == 1


def test_generate_json():
    obj = run_json("generate", "--prompt", "Say hi.", "-n", "2", "--max-tokens", "8")
    assert obj["model"] == "smollm2"
    assert len(obj["responses"]) == 2
    assert all(isinstance(r, str) and r for r in obj["responses"])


# -- errors: non-zero exit, exactly one line on stderr starting with "error:" ------------------
def _malformed_constitution(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("principles:\n  - id: a\n    critique: c\n    revision: r\n")
    return ["compare", *PAIR, "--constitution", str(path)], [str(path), "'comparison'"]


def _bad_yaml_constitution(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nprinciples: [\n  - id: a\n")
    return ["compare", *PAIR, "--constitution", str(path)], [str(path)]


def _missing_gguf(tmp_path):
    path = tmp_path / "absent.gguf"
    return ["compare", "--judge", f"llamacpp:{path}", *PAIR], [str(path)]


def _not_a_gguf(tmp_path):
    path = tmp_path / "junk.gguf"
    path.write_text("not a model")
    return ["compare", "--judge", f"llamacpp:{path}", *PAIR], [str(path)]


ERROR_CASES = {
    "unknown-model": lambda tmp: (["compare", "--judge", "gpt-9", *PAIR], ["'gpt-9'"]),
    "missing-gguf": _missing_gguf,
    "not-a-gguf": _not_a_gguf,
    "malformed-constitution": _malformed_constitution,
    "bad-yaml-constitution": _bad_yaml_constitution,
    "missing-constitution": lambda tmp: (
        ["critique", "--prompt", "p", "--response", "r", "--constitution", str(tmp / "no.yaml")],
        [str(tmp / "no.yaml")],
    ),
    "missing-option": lambda tmp: (["compare", "--a", "x", "--b", "y"], ["--prompt"]),
    "bad-choice": lambda tmp: (["compare", *PAIR, "--mode", "listwise"], ["listwise"]),
    "zero-rounds": lambda tmp: (
        ["revise", "--prompt", "p", "--response", "r", "--rounds", "0"],
        ["--rounds"],
    ),
    "unknown-command": lambda tmp: (["frobnicate"], ["frobnicate"]),
}


KNOWN_BUGS: dict = {}


@pytest.mark.parametrize(
    "case",
    [pytest.param(f, id=k, marks=KNOWN_BUGS.get(k, ())) for k, f in ERROR_CASES.items()],
)
def test_error_is_one_line(tmp_path, case):
    args, mentions = case(tmp_path)
    proc = run(*args)
    assert proc.returncode != 0
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:"), proc.stderr
    for mention in mentions:
        assert mention in lines[0]
    assert proc.stdout == ""


# -- help -------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", [[], *([name] for name in sorted(cli.commands))])
def test_help(command):
    proc = run(*command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Usage:")
    assert " ".join(["rlaif", *command]) in proc.stdout.splitlines()[0]
    assert proc.stderr == ""


def test_version():
    proc = run("--version")
    assert proc.returncode == 0
    assert "0." in proc.stdout
