"""``rlaif run --executor ray`` on a real two-node Ray cluster on this machine.

Each test starts its own cluster (``tests/ray_cluster.py``: separate nodes on 127.0.0.1, one CPU
each, token authentication on, torn down by killing exactly their processes): a head (``ray
start --head --num-cpus 1``) and, where the test needs it, a second node joining it (``ray start
--address ... --num-cpus 1``). The run is the real CLI in a subprocess with ``RAY_ADDRESS`` set,
compared with the local executor's run of the same command. A node is lost by killing its
processes (``kill_node``: those naming its temp dir and their descendants).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlaif.pipeline.outputs import OUTPUT_FILES

pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'rlaif[ray]'")

from ray_cluster import Cluster, kill_node, node_processes, start_head  # noqa: E402

PROMPTS = ["Give one tip for sleeping better.", "Name a fruit that is yellow."]
#: a small run: 2 prompts, 2 responses each, one revision round
RUN_ARGS = ["--n-responses", "2", "--revisions", "1", "--max-tokens", "16", "--quiet"]
#: seconds for one `rlaif run` on the cluster (2 busy cores)
RUN_TIMEOUT_S = 600
#: calls in the store when the second node is killed: the generate stage's 2 x 2 are stored,
#: so the revise stage has gone out to the workers
KILL_AFTER_CALLS = 4


@pytest.fixture
def head() -> Iterator[Cluster]:
    """A one-node cluster (the head); the test may add a node."""
    cluster = start_head()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster(head: Cluster) -> Cluster:
    """Two nodes: the head and one joined node, one CPU each."""
    head.add_node()
    assert head.alive_nodes() == 2
    return head


def rlaif_run(
    prompts: Path, out: Path, env: dict[str, str], *extra: str, wait: bool = True
) -> subprocess.CompletedProcess | subprocess.Popen:
    cmd = [sys.executable, "-m", "rlaif", "run", "--prompts", str(prompts), "--out", str(out)]
    cmd += [*RUN_ARGS, *extra]
    if not wait:
        return subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, Path]:
    """(prompts file, the local executor's run of it)."""
    root = tmp_path_factory.mktemp("reference")
    prompts = root / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    env = {**os.environ, "RLAIF_N_THREADS": os.environ.get("RLAIF_N_THREADS", "1")}
    result = rlaif_run(prompts, root / "local", env, "--executor", "local")
    assert result.returncode == 0, result.stderr
    return prompts, root / "local"


def assert_same_outputs(out: Path, local: Path) -> None:
    """Every output file byte for byte the local run's: no label lost, none duplicated."""
    for name in OUTPUT_FILES:
        assert (out / name).read_bytes() == (local / name).read_bytes(), name
    info, ref = (json.loads((d / "run.json").read_text()) for d in (out, local))
    assert info["labels"] == ref["labels"] > 0
    assert info["counts"] == ref["counts"]


def _stored_calls(out: Path) -> int:
    store = out / "store.sqlite"
    if not store.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5) as db:
            return db.execute("SELECT count(*) FROM calls").fetchone()[0]
    except sqlite3.OperationalError:  # the table is not created yet
        return 0


def test_two_nodes_give_the_local_executors_outputs(cluster, reference, tmp_path):
    prompts, local = reference
    out = tmp_path / "ray"
    env = {**cluster.env, "RAY_ADDRESS": cluster.address}
    result = rlaif_run(prompts, out, env, "--executor", "ray")
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_outputs(out, local)
    info = json.loads((out / "run.json").read_text())
    ref = json.loads((local / "run.json").read_text())
    assert info["requests"]["executor"] == "ray"
    # one worker per node (each has one CPU), and both sent results
    ray = info["requests"]["ray"]
    assert (ray["workers"], ray["nodes"], ray["workers_lost"]) == (2, 2, 0)
    assert info["model_calls"] == ref["model_calls"]


def test_losing_the_worker_node_loses_no_label(cluster, reference, tmp_path):
    """The second node is killed once the revise stage is out on the workers. The run either
    finishes on the head alone or stops with a line that says to rerun; the same command run
    again then finishes (resuming from the store), and the outputs are the local run's."""
    prompts, local = reference
    out = tmp_path / "ray"
    env = {**cluster.env, "RAY_ADDRESS": cluster.address}
    proc = rlaif_run(prompts, out, env, "--executor", "ray", wait=False)
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while _stored_calls(out) < KILL_AFTER_CALLS and proc.poll() is None:
            assert time.monotonic() < deadline, "the run stored no calls in time"
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before the node could be lost"
        node = cluster.temp_dirs[1]
        workers = [p for p in node_processes(node) if p.name().startswith("ray::StageWorker")]
        assert workers, "no rlaif worker ran on the second node"
        killed = kill_node(node)
        assert killed and not node_processes(node)
        _, stderr = proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    print(f"run after losing the node: exit {proc.returncode}")  # which branch, with -s
    if proc.returncode == 0:  # finished on the head: the lost worker's items were done again
        info = json.loads((out / "run.json").read_text())
        assert info["requests"]["ray"]["workers_lost"] == 1
    else:
        error = stderr.strip().splitlines()[-1]
        assert error.startswith("error:") and "rerun the same command" in error, stderr[-3000:]

    rerun = rlaif_run(prompts, out, env, "--executor", "ray")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert_same_outputs(out, local)
    with (
        sqlite3.connect(out / "store.sqlite") as db,
        sqlite3.connect(local / "store.sqlite") as ref,
    ):
        query = "SELECT key FROM calls ORDER BY key"
        assert db.execute(query).fetchall() == ref.execute(query).fetchall()


def test_a_wrong_token_gets_one_line_saying_what_to_set(head, reference, tmp_path):
    prompts, _ = reference
    env = {
        **head.env,
        "RAY_ADDRESS": head.address,
        "RAY_AUTH_TOKEN": "not-the-clusters-token",
        # Ray retries joining about once a second for 20 s by default: 2 tries are enough
        "RAY_gcs_server_port_wait_time_s": "2",
    }
    result = rlaif_run(prompts, tmp_path / "ray", env, "--executor", "ray")
    assert result.returncode != 0
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error:"), result.stderr[-3000:]
    assert "RAY_AUTH_MODE=token" in error and "RAY_AUTH_TOKEN" in error
    assert "~/.ray/auth_token" in error and head.address in error
    assert "Traceback" not in result.stderr
