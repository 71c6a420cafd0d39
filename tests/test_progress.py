"""Long commands say where they are when their output is not a terminal (CI logs, `| tee`)."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys

from rich.console import Console

from rlaif.progress import LineProgress, make_progress


def test_line_progress_prints_start_counts_and_end():
    out = io.StringIO()
    with LineProgress(stream=out, interval=0.0) as progress:
        task = progress.add_task("label", total=3)
        progress.advance(task)
        progress.update(task, advance=1, info="loss 0.5")
        progress.advance(task)
        progress.advance(task)  # past the end: no second closing line
    lines = out.getvalue().splitlines()
    assert lines[0] == "label: started (3 to do)"
    assert lines[1] == "label: 1/3"
    assert lines[2] == "label: 2/3 (loss 0.5)"
    assert re.fullmatch(r"label: 3/3 in \d+\.\d s \(loss 0\.5\)", lines[3]), lines
    assert len(lines) == 4


def test_line_progress_is_quiet_between_intervals_and_closes_open_tasks():
    out = io.StringIO()
    progress = LineProgress(stream=out, interval=3600.0)
    task = progress.add_task("generate", total=None)
    for _ in range(50):
        progress.advance(task)
    progress.stop()
    lines = out.getvalue().splitlines()
    assert lines[0] == "generate: started"
    assert re.fullmatch(r"generate: 50/\? in \d+\.\d s", lines[1]), lines
    assert len(lines) == 2


def test_line_progress_removes_a_task_as_rich_does():
    """``rlaif train reward``'s held-out evaluation removes its task (it crashed piped)."""
    out = io.StringIO()
    progress = LineProgress(stream=out, interval=3600.0)
    first = progress.add_task("evaluate", total=4)
    progress.advance(first)
    progress.remove_task(first)
    second = progress.add_task("reward", total=1)
    assert second != first
    progress.advance(second)
    progress.stop()
    lines = out.getvalue().splitlines()
    assert re.fullmatch(r"evaluate: 1/4 in \d+\.\d s", lines[1]), lines
    assert len(lines) == 4 and lines[2] == "reward: started (1 to do)"


def test_make_progress_picks_lines_off_a_terminal():
    assert isinstance(make_progress(console=Console(file=io.StringIO())), LineProgress)
    terminal = Console(file=io.StringIO(), force_terminal=True)
    assert not isinstance(make_progress(console=terminal), LineProgress)
    silent = make_progress(console=Console(file=io.StringIO()), disable=True)
    assert not isinstance(silent, LineProgress)


def test_rlaif_run_piped_prints_every_stage(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "rlaif", "run", "--limit", "1", "--n-responses", "2"]
        + ["--revisions", "1", "--max-tokens", "16", "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for stage in ("generate", "revise", "label"):
        assert f"{stage}: started" in proc.stdout, proc.stdout
        assert re.search(rf"^{stage}\s*: \d+/\d+ in \d+\.\d s", proc.stdout, re.M), proc.stdout
