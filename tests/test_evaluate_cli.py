"""``rlaif eval agreement`` and ``rlaif report`` as a user runs them: the real console script,
the real embedded judge, a real shared gold file, and the report opened in headless Chromium."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from html import escape as html_escape
from pathlib import Path

import pytest

from rlaif.evaluate.gold import load_gold
from rlaif.evaluate.summary import read_pairs, summarize

RLAIF = Path(sys.executable).with_name("rlaif")
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
LLMBAR = SHARED / "data" / "preferences" / "llmbar-natural.json"
TIMEOUT_S = 900
STRATEGIES = ("one-order", "both-orders", "pointwise")  # the verdict: test_evaluate_strategies
CONTRACT_KEYS = {
    "n",
    "agreement",
    "agreement_ci",
    "kappa",
    "position_consistency",
    "first_position_rate",
    "ece",
}
DATA_URI = re.compile(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"')

needs_llmbar = pytest.mark.skipif(
    not LLMBAR.is_file(), reason=f"shared gold data not found at {LLMBAR}"
)


def rlaif(*args: str) -> subprocess.CompletedProcess:
    assert RLAIF.is_file(), f"the rlaif console script is not installed at {RLAIF}"
    return subprocess.run(
        [str(RLAIF), *args], capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )


def eval_args(out: Path) -> list[str]:
    args = ["eval", "agreement", "--gold", str(LLMBAR), "--judge", "smollm2", "--limit", "3"]
    for s in STRATEGIES:
        args += ["--strategy", s]
    return [*args, "--out", str(out), "--quiet", "--bootstrap", "200"]


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory) -> Path:
    """One evaluation of 3 LLMBar pairs with the strategies that generate little."""
    if not LLMBAR.is_file():
        pytest.skip(f"shared gold data not found at {LLMBAR}")
    out = tmp_path_factory.mktemp("eval") / "llmbar"
    proc = rlaif(*eval_args(out))
    assert proc.returncode == 0, proc.stderr
    assert "| strategy | n | agreement |" in proc.stdout  # the table is printed
    # pointwise never shows an order: its position consistency and first-slot rate are n/a
    assert re.search(r"\| pointwise \| 3 \|[^|]*\|[^|]*\| n/a \| n/a \|", proc.stdout), proc.stdout
    return out


@needs_llmbar
def test_metrics_json_follows_the_contract(eval_dir):
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    assert list(metrics) == list(STRATEGIES)
    for name, entry in metrics.items():
        assert CONTRACT_KEYS <= entry.keys(), name
        assert entry["n"] == 3
        low, high = entry["agreement_ci"]
        assert 0.0 <= low <= entry["agreement"] <= high <= 1.0
        assert entry["unreadable"] + entry["errors"] <= 3
    assert metrics["one-order"]["position_consistency"] is None  # it never swaps
    pointwise = metrics["pointwise"]
    assert pointwise["position_consistency"] is None  # no order was shown: not measured
    assert pointwise["first_position_rate"] is None
    info = json.loads((eval_dir / "eval.json").read_text())
    assert (info["format"], info["pairs"], info["judge"]) == ("llmbar", 3, "smollm2")


@needs_llmbar
def test_pairs_jsonl_holds_the_human_labels_and_recomputes_the_metrics(eval_dir):
    records = read_pairs(eval_dir / "pairs.jsonl")
    assert len(records) == 3 * len(STRATEGIES)
    gold = load_gold(LLMBAR, limit=3)
    by = {(r["strategy"], r["pair_id"]): r for r in records}
    for pair in gold.pairs:
        for s in STRATEGIES:
            assert by[s, pair.index]["human"] == pair.human  # llmbar label 1 -> a, 2 -> b
        one, both = by["one-order", pair.index], by["both-orders", pair.index]
        assert one["p_a"] == pytest.approx(both["p_a_order_ab"])  # the same question
        assert one["p_a_order_ba"] is None
        assert both["p_a"] == pytest.approx((both["p_a_order_ab"] + both["p_a_order_ba"]) / 2)
        pw = by["pointwise", pair.index]
        assert pw["p_a_order_ab"] is None and pw["p_a_order_ba"] is None
        assert pw["position_consistent"] is None
        if pw["p_a"] is not None:  # the two scores are kept under their own names
            ya, yb = pw["p_yes_a"], pw["p_yes_b"]
            assert pw["p_a"] == pytest.approx(1 / (1 + (yb / (1 - yb)) / (ya / (1 - ya))))
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    again = summarize(records, resamples=200, seed=0)
    for name, entry in again.items():
        for key, value in entry.items():
            assert metrics[name][key] == value, (name, key)


@needs_llmbar
def test_rerun_is_answered_by_the_store(eval_dir):
    before = (eval_dir / "pairs.jsonl").read_text()
    proc = rlaif(*eval_args(eval_dir))
    assert proc.returncode == 0, proc.stderr
    info = json.loads((eval_dir / "eval.json").read_text())
    assert all(t["model_calls"] == 0 for t in info["timings"].values())
    assert (eval_dir / "pairs.jsonl").read_text() == before


def test_bad_input_is_one_line_and_exit_1(tmp_path):
    bad = tmp_path / "gold.json"
    bad.write_text(json.dumps([{"question": "q"}]))
    proc = rlaif("eval", "agreement", "--gold", str(bad), "--out", str(tmp_path / "o"))
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and "cannot tell the format" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = rlaif("report", str(tmp_path))
    assert proc.returncode == 1 and "neither an evaluation directory" in proc.stderr
    proc = rlaif("eval", "agreement", "--gold", str(bad), "--out", "o", "--strategy", "best")
    assert proc.returncode == 2 and "best" in proc.stderr


def _images(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in DATA_URI.findall(html)]


@needs_llmbar
def test_report_of_an_eval_dir_embeds_its_figures(eval_dir):
    proc = rlaif("report", str(eval_dir))
    assert proc.returncode == 0, proc.stderr
    path = eval_dir / "report.html"
    assert proc.stdout.strip() == str(path)
    html = path.read_text()
    images = _images(html)
    assert len(images) == 6  # agreement, position, reliability, confidence, length, tokens
    assert all(img.startswith(b"\x89PNG\r\n\x1a\n") for img in images)
    assert "http://" not in html and "https://" not in html  # self-contained
    for name in STRATEGIES:
        assert f"<td>{name}</td>" in html
    row = html[html.index("<td>pointwise</td>") :]
    row = row[: row.index("</tr>")]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row)  # strategy, n, agreement, kappa, ...
    assert cells[4:6] == ["n/a", "n/a"]  # position consistency, first-slot rate: no number
    verdict = html[html.index('<p class="note">') :]
    verdict = verdict[: verdict.index("</p>")]
    assert "Highest agreement" in verdict and "Holm-adjusted" in verdict
    assert "Chance here is" in verdict


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("chromium is not installed; `make test` installs it (apt-get install chromium)")
    return path


def _chromium_run(tmp_path: Path, html: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        *args,
        html.resolve().as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def _colored_share(png: Path) -> float:
    """Share of pixels that are clearly colored (not white, gray or black)."""
    import numpy as np
    from PIL import Image

    rgb = np.asarray(Image.open(png).convert("RGB"), dtype=int)
    spread = rgb.max(axis=2) - rgb.min(axis=2)
    return float(np.mean(spread > 60))


@needs_llmbar
def test_report_renders_with_its_images_in_chromium(eval_dir, tmp_path):
    report = eval_dir / "report.html"
    if not report.exists():
        assert rlaif("report", str(eval_dir)).returncode == 0
    dom = _chromium_run(tmp_path, report, "--dump-dom").stdout
    assert len(DATA_URI.findall(dom)) == 6  # the browser parsed every embedded image
    assert "Strategies side by side" in dom
    shot = tmp_path / "report.png"
    _chromium_run(tmp_path, report, f"--screenshot={shot}", "--window-size=1200,2400")
    # the plots' colored bars and lines are drawn: text alone is black, gray and white
    assert _colored_share(shot) > 0.01


def test_report_of_a_run_dir(tmp_path):
    out = tmp_path / "run"
    proc = rlaif(
        "run",
        "--limit",
        "1",
        "--n-responses",
        "2",
        "--revisions",
        "0",
        "--max-tokens",
        "24",
        "--out",
        str(out),
        "--quiet",
    )
    assert proc.returncode == 0, proc.stderr
    proc = rlaif("report", str(out))
    assert proc.returncode == 0, proc.stderr
    html = (out / "report.html").read_text()
    images = _images(html)
    assert len(images) >= 4 and all(i.startswith(b"\x89PNG") for i in images)
    labelled = [
        json.loads(line)
        for f in ("preferences.jsonl", "low_margin.jsonl", "unreadable.jsonl")
        for line in (out / f).read_text().splitlines()
    ]
    assert len(labelled) >= 1
    assert "Example pairs" in html
    prompt = labelled[0]["prompt"]  # TRL's conversational form: a list of messages
    text = prompt if isinstance(prompt, str) else prompt[-1]["content"]
    assert html_escape(text) in html  # the example pairs show the real texts
    dom = _chromium_run(tmp_path, out / "report.html", "--dump-dom").stdout
    assert len(DATA_URI.findall(dom)) == len(images)


def test_pointwise_run_records_and_reports_no_position_figures(tmp_path):
    """A pointwise run shows no order: null order fields, null consistency, "n/a" in the
    report, and each response's own p(Yes) under its name."""
    out = tmp_path / "run"
    args = ["run", "--mode", "pointwise", "--limit", "1", "--n-responses", "2"]
    proc = rlaif(*args, "--revisions", "0", "--max-tokens", "24", "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    info = json.loads((out / "run.json").read_text())
    assert info["stats"]["position_consistency_rate"] is None  # was 1.0: never measured
    labelled = [
        json.loads(line)
        for f in ("preferences.jsonl", "low_margin.jsonl")
        for line in (out / f).read_text().splitlines()
    ]
    unreadable = [json.loads(line) for line in (out / "unreadable.jsonl").read_text().splitlines()]
    assert labelled or unreadable
    for r in labelled:
        assert r["mode"] == "pointwise" and r["position_consistent"] is None
        assert r["p_chosen_shown_first"] is None and r["p_chosen_shown_second"] is None
        yc, yr = r["p_yes_chosen"], r["p_yes_rejected"]
        assert yc >= yr  # chosen is the response with the higher p(Yes)
        assert r["p_chosen"] == pytest.approx(1 / (1 + (yr / (1 - yr)) / (yc / (1 - yc))), abs=1e-5)
    for r in unreadable:
        assert "p_yes_a" in r and "p_yes_b" in r
    proc = rlaif("report", str(out))
    assert proc.returncode == 0, proc.stderr
    html = (out / "report.html").read_text()
    assert "<th>position consistency</th><td>n/a</td>" in html
    assert "<td>True</td>" not in html  # the examples' "consistent" column says n/a
