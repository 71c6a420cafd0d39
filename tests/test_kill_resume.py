"""SIGKILL of the whole run at several random points, then resume: the same final records.

One uninterrupted run is the reference. A second run in a new directory is killed with SIGKILL
after k calls have reached its store, for several k drawn with a fixed seed across the stages
(generating the responses, labelling the pairs in both orders) plus one after the last call
(recording the labels or publishing the outputs); after each kill the same command starts
again. The run that finally completes
must publish byte-identical data files, every call exactly once in the store, and count as
answered from the store every call an earlier attempt had paid for.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

RLAIF = [sys.executable, "-m", "rlaif"]
ARGS = ["--limit", "1", "--n-responses", "3", "--revisions", "0", "--max-tokens", "16", "--quiet"]
DATA_FILES = (
    "preferences.jsonl",
    "low_margin.jsonl",
    "unreadable.jsonl",
    "sft.jsonl",
    "revisions.jsonl",
)
KILLS = 3
SEED = 6
STEP_TIMEOUT_S = 600
POLL_S = 0.05


def _env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}


def _stored(store: Path) -> int:
    """Calls in a run store, read without disturbing the writer (0 before it exists)."""
    if not store.exists():
        return 0
    try:
        db = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=1)
        try:
            return db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def _data(run_dir: Path) -> dict[str, bytes]:
    return {name: (run_dir / name).read_bytes() for name in DATA_FILES}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "reference"
    proc = subprocess.run(
        [*RLAIF, "run", *ARGS, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT_S,
        env=_env(),
    )
    assert proc.returncode == 0, proc.stderr
    return out


def _kill_after(out: Path, calls: int) -> tuple[bool, int]:
    """Start the run, SIGKILL it once ``calls`` calls are stored; (killed, calls stored then)."""
    proc = subprocess.Popen(
        [*RLAIF, "run", *ARGS, "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_env(),
    )
    deadline = time.monotonic() + STEP_TIMEOUT_S
    try:
        while _stored(out / "store.sqlite") < calls:
            if proc.poll() is not None:
                return False, _stored(out / "store.sqlite")
            assert time.monotonic() < deadline, f"{calls} calls never reached the store"
            time.sleep(POLL_S)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode == -signal.SIGKILL, _stored(out / "store.sqlite")


def test_sigkill_at_random_points_then_resume_gives_the_same_records(reference, tmp_path):
    info = json.loads((reference / "run.json").read_text())
    total = info["model_calls"]
    assert total == _stored(reference / "store.sqlite") >= 7  # 3 responses, >= 2 pairs
    points = sorted(random.Random(SEED).sample(range(1, total), KILLS)) + [total]
    out = tmp_path / "killed"
    killed = []
    for k in points:
        was_killed, stored = _kill_after(out, k)
        if was_killed:
            killed.append(stored)
            if (out / "run.json").exists():
                # An unfinished run is never mistaken for a finished one: run.json may only be
                # there when the kill after the last call landed after the run published its
                # files, and then every call is stored and the records are the reference's.
                assert k == total and stored == total, (k, stored)
                assert _data(out) == _data(reference)
        else:
            # only the last point may let the run finish before the kill lands
            assert k == total, f"the run ended before {k} calls were stored"
    assert len(killed) >= KILLS, killed
    before_last = _stored(out / "store.sqlite")
    proc = subprocess.run(
        [*RLAIF, "run", *ARGS, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT_S,
        env=_env(),
    )
    assert proc.returncode == 0, proc.stderr
    finished = json.loads((out / "run.json").read_text())
    assert _data(out) == _data(reference)
    assert not list(out.glob("*.tmp"))
    # every call once: nothing lost, nothing paid twice
    assert _stored(out / "store.sqlite") == total
    assert finished["cached_calls"] == before_last
    assert finished["model_calls"] == total - before_last
    assert finished["labels"] == info["labels"]
    with sqlite3.connect(out / "store.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
