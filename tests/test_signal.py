"""Labels without signal are said so: in the ``rlaif run`` summary, run.json and the report.

The criterion on constructed records (clear labels raise nothing), then a real small run whose
judge is the embedded model, which is at chance, through the real CLI in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlaif.stats import no_signal_warning

RLAIF = str(Path(sys.executable).with_name("rlaif"))
RUN_ARGS = ["--limit", "2", "--n-responses", "2", "--revisions", "0", "--max-tokens", "24"]
REMEDIES = ("stronger judge", "--mode pointwise", "principles with concrete checks")


def _records(ps: list[float], consistent: list[bool | None], mode: str = "pairwise") -> list:
    return [
        {"p_chosen": p, "position_consistent": c, "mode": mode}
        for p, c in zip(ps, consistent, strict=True)
    ]


def test_clear_labels_raise_nothing():
    assert no_signal_warning(_records([0.9, 0.8, 0.7, 0.95], [True, True, False, True])) is None
    # exactly half consistent is not "under 50%"; half under the margin is not "most"
    assert no_signal_warning(_records([0.9, 0.52, 0.8, 0.51], [True, False, True, False])) is None
    assert no_signal_warning([]) is None


def test_pointwise_labels_are_judged_by_margin_alone():
    # pointwise records carry no position figure (null), and a True one is not read either
    for flag in (None, True):
        clear = _records([0.9, 0.8, 0.7], [flag] * 3, mode="pointwise")
        assert no_signal_warning(clear) is None
        flat = _records([0.51, 0.52, 0.9], [flag] * 3, mode="pointwise")
        warning = no_signal_warning(flat)
        assert warning and "2 of 3 pairs within 0.05" in warning
        assert "position consistency" not in warning


def test_position_inconsistency_alone_is_no_signal():
    warning = no_signal_warning(_records([0.9, 0.8, 0.7], [False, False, True]))
    assert warning and "position consistency 33% over 3 pairs" in warning
    assert "coin flip" not in warning
    assert all(r in warning for r in REMEDIES)
    assert "\n" not in warning  # one line


def test_min_margin_widens_the_margin_it_checks():
    records = _records([0.6, 0.62, 0.9], [True, True, True])
    assert no_signal_warning(records) is None
    warning = no_signal_warning(records, min_margin=0.15)
    assert warning and "2 of 3 pairs within 0.15 of a coin flip" in warning


def _rlaif(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [RLAIF, *args],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.mark.slow
def test_a_run_with_the_embedded_judge_says_its_labels_carry_no_signal(tmp_path):
    out = tmp_path / "run"
    proc = _rlaif("run", *RUN_ARGS, "--out", str(out), "--quiet")
    [line] = [x for x in proc.stdout.splitlines() if x.startswith("warning: ")]
    assert "labels carry no signal" in line and all(r in line for r in REMEDIES)
    info = json.loads((out / "run.json").read_text())
    assert info["warnings"] == [line.removeprefix("warning: ")]
    assert info["stats"]["position_consistency_rate"] < 0.5  # the judge follows positions

    _rlaif("report", str(out))
    assert f"warning: {line.removeprefix('warning: ')}" in _report_text(out)

    # a rerun makes no model call and says the same
    again = _rlaif("run", *RUN_ARGS, "--out", str(out), "--quiet")
    assert line in again.stdout.splitlines()
    assert json.loads((out / "run.json").read_text())["model_calls"] == 0

    # a run directory from before run.json listed warnings: the report works it out
    del info["warnings"]
    (out / "run.json").write_text(json.dumps(info))
    _rlaif("report", str(out))
    assert f"warning: {line.removeprefix('warning: ')}" in _report_text(out)


def _report_text(out: Path) -> str:
    import html

    return html.unescape((out / "report.html").read_text())
