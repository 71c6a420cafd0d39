"""The loop benchmark's --merge counts each (configuration, seed) once.

A row's mean and interval are over its seeds; a seed kept in two folders (the repository's
data file and a run folder) must not be counted twice, and two different results for one seed
must not be averaged silently.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import loop_effect  # noqa: E402


def _folder(path: Path, results: list[dict]) -> Path:
    path.mkdir()
    (path / "results.json").write_text(json.dumps(results))
    return path


def test_a_seed_in_two_folders_is_counted_once(tmp_path):
    a = _folder(tmp_path / "a", [{"config": "ai", "seed": 0, "x": 1}])
    b = _folder(
        tmp_path / "b", [{"config": "ai", "seed": 0, "x": 1}, {"config": "ai", "seed": 1, "x": 2}]
    )
    merged = loop_effect.merged_results([a, b])
    assert [(r["config"], r["seed"]) for r in merged] == [("ai", 0), ("ai", 1)]


def test_two_different_results_for_one_seed_are_refused(tmp_path):
    a = _folder(tmp_path / "a", [{"config": "ai", "seed": 0, "x": 1}])
    b = _folder(tmp_path / "b", [{"config": "ai", "seed": 0, "x": 2}])
    with pytest.raises(ValueError, match="ai seed 0 is in both"):
        loop_effect.merged_results([a, b])
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "loop_effect.py"), "--merge", str(a), str(b)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "ai seed 0 is in both" in done.stderr and str(b) in done.stderr
