"""``rlaif run --executor ray`` on a local Ray cluster: workers with their own judge backend (the
real llama.cpp server) label exactly what the local executor labels, and the calls they make
land in the run store (a rerun of a half-labelled run asks the workers only for what is missing).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys

import pytest

from rlaif.pipeline.outputs import OUTPUT_FILES

pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'rlaif[ray]'")

PROMPT = "Give one tip for sleeping better."
#: judge calls deleted from the store before the Ray run: the last three of six
MISSING = 3


def rlaif_run(prompts_file, out, judge: str, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "rlaif", "run", "--prompts", str(prompts_file)]
    cmd += ["--policy", "smollm2", "--judge", judge, "--n-responses", "3", "--revisions", "0"]
    cmd += ["--max-tokens", "16", "--out", str(out), "--quiet", *extra]
    env = {**os.environ, "RLAIF_N_THREADS": os.environ.get("RLAIF_N_THREADS", "1")}
    env.pop("RAY_ADDRESS", None)  # a local cluster of its own
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)


def test_ray_workers_label_like_the_local_executor(llama_server, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": PROMPT}) + "\n")
    judge = f"openai:smollm2@{llama_server}"
    local = tmp_path / "local"
    # one request at a time, so the store's rows are in pair order: (AB, BA) of pairs 1, 2, 3
    result = rlaif_run(prompts, local, judge, "--executor", "local", "--concurrency", "1")
    assert result.returncode == 0, result.stderr

    # The same run directory without the last three judge calls (pair 2's BA and pair 3): pair 1
    # is labelled in the driver from the store, pairs 2 and 3 by two Ray workers.
    ray_dir = tmp_path / "ray"
    ray_dir.mkdir()
    shutil.copy(local / "store.sqlite", ray_dir / "store.sqlite")
    with sqlite3.connect(ray_dir / "store.sqlite") as db:
        rows = db.execute(
            "SELECT key FROM calls WHERE kind = 'choice_logprobs' ORDER BY created"
        ).fetchall()
        assert len(rows) == 6
        db.executemany("DELETE FROM calls WHERE key = ?", rows[-MISSING:])
    result = rlaif_run(prompts, ray_dir, judge, "--executor", "ray", "--concurrency", "2")
    assert result.returncode == 0, result.stderr

    for name in OUTPUT_FILES:
        assert (ray_dir / name).read_bytes() == (local / name).read_bytes(), name
    info = json.loads((ray_dir / "run.json").read_text())
    assert info["requests"]["executor"] == "ray"
    assert info["model_calls"] == MISSING  # only the missing calls reached the server
    assert info["labels"] == 3
    with (
        sqlite3.connect(ray_dir / "store.sqlite") as db,
        sqlite3.connect(local / "store.sqlite") as ref,
    ):
        assert sorted(db.execute("SELECT key, result FROM calls")) == sorted(
            ref.execute("SELECT key, result FROM calls")
        )


def test_every_stage_resumes_on_ray_from_a_partial_store(tmp_path):
    """Generation, revision and labelling on Ray workers with the in-process model: from a store
    holding the first half of a local run's calls (some generations stored, some critiques and
    revisions not), the Ray run makes exactly the missing calls and writes the local files."""
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"prompt": p}) + "\n" for p in (PROMPT, "Name a fruit that is yellow."))
    )
    small = ["--n-responses", "2", "--revisions", "1", "--max-tokens", "16", "--quiet"]

    def run(out, *extra):
        cmd = [sys.executable, "-m", "rlaif", "run", "--prompts", str(prompts), "--out", str(out)]
        env = {**os.environ, "RLAIF_N_THREADS": os.environ.get("RLAIF_N_THREADS", "1")}
        env.pop("RAY_ADDRESS", None)
        return subprocess.run(
            [*cmd, *small, *extra], capture_output=True, text=True, env=env, timeout=900
        )

    local = tmp_path / "local"
    assert run(local, "--executor", "local").returncode == 0
    ray_dir = tmp_path / "ray"
    ray_dir.mkdir()
    shutil.copy(local / "store.sqlite", ray_dir / "store.sqlite")
    with sqlite3.connect(ray_dir / "store.sqlite") as db:
        rows = db.execute("SELECT key, kind FROM calls ORDER BY created").fetchall()
        missing = rows[len(rows) // 2 :]
        assert {kind for _, kind in missing} >= {"generate", "choice_logprobs"}
        db.executemany("DELETE FROM calls WHERE key = ?", [(key,) for key, _ in missing])
    result = run(ray_dir, "--executor", "ray", "--concurrency", "2")
    assert result.returncode == 0, result.stderr[-3000:]

    for name in OUTPUT_FILES:
        assert (ray_dir / name).read_bytes() == (local / name).read_bytes(), name
    info = json.loads((ray_dir / "run.json").read_text())
    assert info["model_calls"] == len(missing)
    assert info["requests"]["ray"]["workers"] >= 1
    with (
        sqlite3.connect(ray_dir / "store.sqlite") as db,
        sqlite3.connect(local / "store.sqlite") as ref,
    ):
        query = "SELECT key FROM calls ORDER BY key"
        assert db.execute(query).fetchall() == ref.execute(query).fetchall()


def test_a_refused_token_is_told_from_rays_error_chain():
    from rlaif.pipeline.ray_executor import is_auth_error

    cause = RuntimeError(
        "Failed to connect to GCS. Last connection error: ...\nray.exceptions."
        "AuthenticationError: RPC error: InvalidAuthToken: Authentication token is missing"
    )
    try:
        raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379") from cause
    except ConnectionError as e:
        assert is_auth_error(e)
    assert not is_auth_error(ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379"))
