"""The API key never leaves the process: not in the store, the outputs, run.json or the logs.

A real run labels through the real llama.cpp OpenAI-compatible server on 127.0.0.1 with a
distinctive fake key in ``OPENAI_API_KEY`` and the openai client's own debug logging on; every
byte of every file the run leaves (the SQLite store and its journal included) and everything
it printed are searched for the key. A run that fails against a server that is not there, and
a dry run, are searched the same way. The same run checks that token counts come from the
server's usage and are priced by the bare model name of a price file.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

RLAIF = [sys.executable, "-m", "rlaif"]
KEY = "sk-rlaif-test-7f3c9e1d5b2a-DO-NOT-LEAK"
#: pieces of the key that would show even in a truncated or re-encoded form
FRAGMENTS = (KEY, "7f3c9e1d5b2a", "DO-NOT-LEAK")
ARGS = ["--limit", "1", "--n-responses", "2", "--revisions", "0", "--max-tokens", "24"]


def rlaif(*args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "OPENAI_API_KEY": KEY,
        "OPENAI_LOG": "debug",  # the openai client logs its requests to stderr
        "HF_HUB_OFFLINE": "1",
        "COLUMNS": "200",
    }
    return subprocess.run([*RLAIF, *args], capture_output=True, text=True, timeout=900, env=env)


def assert_no_key(proc: subprocess.CompletedProcess, directory: Path | None) -> int:
    """Search what the command printed and every file under ``directory``; files searched."""
    for fragment in FRAGMENTS:
        assert fragment not in proc.stdout, "the key is in stdout"
        assert fragment not in proc.stderr, "the key is in stderr"
    searched = 0
    if directory is not None and directory.exists():
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                data = path.read_bytes()
                for fragment in FRAGMENTS:
                    for encoded in (fragment.encode(), fragment.encode("utf-16-le")):
                        assert encoded not in data, f"the key is in {path.name}"
                searched += 1
    return searched


def test_the_key_appears_nowhere_after_a_real_run(llama_server, tmp_path):
    out = tmp_path / "run"
    model = "openai:smollm2@" + llama_server
    prices = tmp_path / "prices.yaml"
    prices.write_text("smollm2: {input: 2, output: 8}\n")  # the bare name of the openai model
    proc = rlaif(
        "run",
        *ARGS,
        "--policy",
        model,
        "--judge",
        model,
        "--price-file",
        str(prices),
        "--max-cost",
        "1",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    assert "HTTP Request" in proc.stderr or "Request options" in proc.stderr  # logs were on
    names = {p.name for p in out.iterdir()}
    assert {"run.json", "store.sqlite", "preferences.jsonl"} <= names
    assert assert_no_key(proc, out) >= 7

    # The tokens are the server's usage, stored per call, and priced by the bare model name.
    info = json.loads((out / "run.json").read_text())
    with sqlite3.connect(out / "store.sqlite") as db:
        rows = [json.loads(r[0]) for r in db.execute("SELECT result FROM calls")]
    assert info["labels"] >= 1  # the judge was called too, not only the policy
    assert len(rows) == info["model_calls"] == 2 + 2 * info["labels"]
    prompt = sum(r["prompt_tokens"] for r in rows)
    completion = sum(r["completion_tokens"] for r in rows)
    assert info["tokens"]["prompt"] == prompt > 0 and info["tokens"]["completion"] == completion
    assert info["cost"] == round((2 * prompt + 8 * completion) / 1e6, 8) > 0
    assert info["budget"]["spent_in_all"] == info["cost"]


def test_the_key_appears_nowhere_after_a_failed_run_or_a_dry_run(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket is closed
    model = f"openai:gpt-test@http://127.0.0.1:{port}/v1"
    out = tmp_path / "failed"
    proc = rlaif("run", *ARGS, "--policy", model, "--judge", model, "--out", str(out))
    assert proc.returncode != 0 and "error:" in proc.stderr
    assert_no_key(proc, out)
    dry = tmp_path / "dry"
    proc = rlaif("run", *ARGS, "--policy", model, "--judge", model, "--out", str(dry), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert_no_key(proc, dry)
