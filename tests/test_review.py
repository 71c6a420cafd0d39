"""`rlaif review` and `rlaif export` on a small real run, driven by headless Chromium.

The run is made once per module by the real CLI on the embedded model. The review server is
the real CLI in a subprocess on 127.0.0.1; Selenium drives the system Chromium through the
system chromedriver (no download), clicking buttons and pressing keys.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from rlaif.review.queue import as_text

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
PAGE_TIMEOUT_S = 30.0


def rlaif(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "RLAIF_N_THREADS": os.environ.get("RLAIF_N_THREADS", "1")}
    return subprocess.run(
        [sys.executable, "-m", "rlaif", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished real run: 2 prompts x 3 responses = 6 labelled pairs."""
    out = tmp_path_factory.mktemp("review") / "run"
    proc = rlaif(
        "run",
        "--out",
        str(out),
        "--limit",
        "2",
        "--n-responses",
        "3",
        "--revisions",
        "0",
        "--max-tokens",
        "32",
        "--quiet",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "run.json").exists()
    return out


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running `rlaif review` subprocess and the URL it printed."""

    def __init__(self, proc: subprocess.Popen, url: str, lines: queue.Queue) -> None:
        self.proc = proc
        self.url = url
        self.lines = lines
        self.base = url.split("?")[0].rstrip("/")
        self.token = url.split("token=", 1)[1]

    def stop(self) -> str:
        """Stop the server (SIGTERM) and return the rest of its output."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rest = []
        while True:
            try:
                line = self.lines.get(timeout=5)
            except queue.Empty:
                break
            if line is None:
                break
            rest.append(line)
        return "".join(rest)


@contextmanager
def review_server(run: Path, *args: str) -> Iterator[Server]:
    """Start `rlaif review RUN --no-browser ARGS...`, wait for its URL line, always stop it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rlaif", "review", str(run), "--no-browser", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: queue.Queue = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    server = None
    try:
        seen = []
        while server is None:
            try:
                line = lines.get(timeout=START_TIMEOUT_S)
            except queue.Empty:
                pytest.fail(f"rlaif review printed no URL; output so far: {''.join(seen)}")
            if line is None:
                pytest.fail(f"rlaif review exited ({proc.wait()}): {''.join(seen)}")
            seen.append(line)
            if "http://" in line:
                url = line[line.index("http://") :].split()[0]
                server = Server(proc, url, lines)
        yield server
    finally:
        if server is not None:
            server.stop()
        elif proc.poll() is None:
            proc.kill()
            proc.wait()


def _status(url: str, *, data: bytes | None = None, headers: dict | None = None) -> int:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


# -- access, binding, errors ------------------------------------------------------------------


def test_review_needs_the_token_and_listens_on_127_0_0_1_only(run_dir):
    port = _free_port()
    with review_server(run_dir, "--port", str(port)) as server:
        assert server.url.startswith(f"http://127.0.0.1:{port}/?token=")
        assert len(server.token) >= 24
        base = server.base
        assert _status(server.url) == 200
        assert _status(f"{base}/api/stats?token={server.token}") == 200
        assert _status(f"{base}/api/stats", headers={"X-Review-Token": server.token}) == 200
        for url in (f"{base}/", f"{base}/api/stats", f"{base}/api/decisions"):
            assert _status(url) == 403
            assert _status(url + "?token=wrong-" + server.token) == 403
        form = b"item_id=x&choice=left&left=first"
        assert _status(f"{base}/decide?token=nope", data=form) == 403
        assert _status(f"{base}/decide", data=form) == 403
        # every listening socket of the server process is on 127.0.0.1
        listening = [
            c
            for c in psutil.Process(server.proc.pid).net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        ]
        assert listening, "the server listens on no socket"
        assert {c.laddr.ip for c in listening} == {"127.0.0.1"}
        assert {c.laddr.port for c in listening} == {port}
    # nothing was decided by the refused requests
    db = sqlite3.connect(run_dir / "store.sqlite")
    try:
        assert db.execute("SELECT COUNT(*) FROM reviews").fetchone()[0] == 0
    finally:
        db.close()


def test_review_refuses_other_hosts_unless_allowed(run_dir):
    proc = rlaif("review", str(run_dir), "--no-browser", "--host", "0.0.0.0", timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: refusing to listen on 0.0.0.0")
    assert "--allow-remote" in proc.stderr
    assert "http://" not in proc.stdout


def test_review_and_export_refuse_an_unfinished_run(tmp_path):
    half = tmp_path / "half"
    half.mkdir()
    (half / "preferences.jsonl.tmp").write_text("")
    for args in (("review", str(half), "--no-browser"), ("export", str(half), "--out", "x")):
        proc = rlaif(*args, timeout=60)
        assert proc.returncode == 1
        assert proc.stderr.strip().startswith(f"error: {half}: not a finished rlaif run")
        assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_review_and_export_help():
    for command in ("review", "export"):
        proc = rlaif(command, "--help", timeout=60)
        assert proc.returncode == 0
        assert "RUN_DIR" in proc.stdout


# -- the browser ---------------------------------------------------------------------------------


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Headless system Chromium driven by the system chromedriver (no driver download)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        pytest.fail("chromium and chromedriver are needed; `make test` installs them (apt-get)")
    monkeypatch.setenv("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    driver.set_page_load_timeout(PAGE_TIMEOUT_S)
    try:
        yield driver
    finally:
        driver.quit()


def _shown(driver) -> dict:
    """The pair on the page: its id, which side is left, and the two texts as served."""
    script = """
        const item = document.getElementById('item');
        if (!item) return null;
        const text = (id) => document.getElementById(id).lastChild.textContent;
        return {id: item.dataset.itemId, left: item.dataset.left,
                left_text: text('left'), right_text: text('right')};
    """
    return driver.execute_script(script)


def _is_gone(old_element) -> bool:
    """Whether the page that held `old_element` has been replaced.

    Selenium's `staleness_of` only expects StaleElementReferenceException; Chrome may instead
    answer a query about an element of a document being torn down with "Node with given id
    does not belong to the document", which means the same thing here.
    """
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    try:
        old_element.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as e:
        if "does not belong to the document" in (e.msg or ""):
            return True
        raise
    return False


def _next_page(driver, old_element) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, PAGE_TIMEOUT_S).until(lambda _: _is_gone(old_element))
    WebDriverWait(driver, PAGE_TIMEOUT_S).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )


def _press(driver, key: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(key).perform()


def test_review_in_the_browser_then_export(run_dir, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    records = [
        json.loads(line) for line in (run_dir / "preferences.jsonl").read_text().splitlines()
    ]
    assert len(records) == 6
    # records are conversational (one assistant message per response); the page shows text
    by_texts = {frozenset((as_text(r["chosen"]), as_text(r["rejected"]))): r for r in records}

    def record_of(shown: dict) -> dict:
        return by_texts[frozenset((shown["left_text"], shown["right_text"]))]

    decided: list[tuple[dict, str, str]] = []  # (what was shown, choice, comment)
    with review_server(run_dir, "--reviewer", "tester") as server:
        browser.get(server.url)
        assert "rlaif review" in browser.title
        assert browser.find_element(By.ID, "reviewed").text == "0 of 6"
        first = _shown(browser)
        # the queue starts with the least certain label
        margins = sorted(abs(r["p_chosen"] - 0.5) for r in records)
        inconsistent = [r for r in records if r["position_consistent"] is False]
        head = record_of(first)
        if inconsistent:
            assert head["position_consistent"] is False
            assert abs(head["p_chosen"] - 0.5) == min(
                abs(r["p_chosen"] - 0.5) for r in inconsistent
            )
        else:
            assert abs(head["p_chosen"] - 0.5) == margins[0]
        assert "p(left better)" in browser.find_element(By.ID, "ai").text
        assert head["principle_id"] in browser.find_element(By.ID, "principle").text

        # 1. a click on "Left is better"
        page = browser.find_element(By.ID, "item")
        browser.find_element(By.ID, "btn-left").click()
        decided.append((first, "left", ""))
        _next_page(browser, page)

        # 2. the right arrow key
        second = _shown(browser)
        assert second["id"] != first["id"]
        page = browser.find_element(By.ID, "item")
        _press(browser, Keys.ARROW_RIGHT)
        decided.append((second, "right", ""))
        _next_page(browser, page)

        # 3. a comment typed after pressing "c" (keys in the box do not decide), then "t"
        third = _shown(browser)
        page = browser.find_element(By.ID, "item")
        _press(browser, "c")
        _press(browser, "both say the same; s and t typed here do nothing")
        assert _shown(browser)["id"] == third["id"]
        _press(browser, Keys.ESCAPE)
        _press(browser, "t")
        decided.append((third, "tie", "both say the same; s and t typed here do nothing"))
        _next_page(browser, page)

        # 4. "s" skips
        fourth = _shown(browser)
        page = browser.find_element(By.ID, "item")
        _press(browser, "s")
        decided.append((fourth, "skip", ""))
        _next_page(browser, page)
        fifth = _shown(browser)
        assert len({d[0]["id"] for d in decided} | {fifth["id"]}) == 5

        # every decision is in the store at once, while the server runs
        db = sqlite3.connect(run_dir / "store.sqlite")
        try:
            rows = db.execute(
                "SELECT item_id, reviewer, choice, comment, shown, created FROM reviews ORDER BY id"
            ).fetchall()
        finally:
            db.close()
        assert [(r[0], r[2], r[3]) for r in rows] == [(s["id"], c, m) for s, c, m in decided]
        assert {r[1] for r in rows} == {"tester"}
        for (shown, _, _), row in zip(decided, rows, strict=True):
            assert json.loads(row[4])["left"] == shown["left"]  # the random order, recorded
            assert json.loads(row[4])["ai_visible"] is True

        # a reload repeats nothing and shows the same next pair and the panel's counts
        browser.refresh()
        assert _shown(browser)["id"] == fifth["id"]
        assert browser.find_element(By.ID, "reviewed").text == "4 of 6"
        assert browser.find_element(By.ID, "skipped").text == "1 / 1"
        agree = sum(
            (shown["left_text"] if choice == "left" else shown["right_text"])
            == as_text(record_of(shown)["chosen"])
            for shown, choice, _ in decided[:2]
        )
        agreement = browser.find_element(By.ID, "agreement").text
        assert agreement.startswith(f"{agree} of 2 = {50 * agree:.0f}%")
        assert "95% CI" in agreement
        assert browser.find_element(By.ID, "flips").text == f"{2 - agree} of 6"
        stats = json.loads(
            urllib.request.urlopen(f"{server.base}/api/stats?token={server.token}").read()
        )
        assert stats["reviewed"] == 4 and stats["compared"] == 2 and stats["agree"] == agree

        # change the skipped pair's decision from the history list
        browser.find_element(By.LINK_TEXT, fourth["id"][:8]).click()
        assert _shown(browser)["id"] == fourth["id"]
        assert "already decided: skip" in browser.find_element(By.ID, "item").text
        changed = _shown(browser)
        page = browser.find_element(By.ID, "item")
        _press(browser, "1")
        decided[3] = (changed, "left", "")
        _next_page(browser, page)
        assert browser.find_element(By.ID, "reviewed").text == "4 of 6"
        browser.save_screenshot(str(tmp_path / "review.png"))
        output = server.stop()
    assert server.proc.returncode == 0
    assert "Stopped. 4 of 6 pairs reviewed" in output
    assert (tmp_path / "review.png").read_bytes().startswith(b"\x89PNG")

    # export: human decisions override the AI labels, each record says where its label came from
    out = tmp_path / "merged.jsonl"
    proc = rlaif("export", str(run_dir), "--out", str(out), timeout=120)
    assert proc.returncode == 0, proc.stderr
    merged = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(merged) == 5  # the tie is left out
    by_pair = {frozenset((as_text(m["chosen"]), as_text(m["rejected"]))): m for m in merged}
    tie = decided[2][0]
    assert frozenset((tie["left_text"], tie["right_text"])) not in by_pair
    human_pairs = set()
    for shown, choice, _ in (decided[0], decided[1], decided[3]):
        pair = frozenset((shown["left_text"], shown["right_text"]))
        human_pairs.add(pair)
        m = by_pair[pair]
        winner = shown["left_text"] if choice == "left" else shown["right_text"]
        assert as_text(m["chosen"]) == winner
        ai = record_of(shown)
        expected = "ai+human agree" if as_text(ai["chosen"]) == winner else "human"
        assert m["label_source"] == expected
        assert m["human"]["reviewer"] == "tester"
        # the human's label counts in full; the judge's probability for chosen is kept beside it
        p = ai["p_chosen"] if expected == "ai+human agree" else 1 - ai["p_chosen"]
        assert m["p_chosen"] == 1.0 and m["p_chosen_ai"] == pytest.approx(p, abs=1e-6)
    for pair, m in by_pair.items():
        if pair not in human_pairs:
            assert m["label_source"] == "ai"
            assert m == {**by_texts[pair], "label_source": "ai"}
    assert f"{out}: 5 records" in proc.stdout
    assert "1 human ties" in proc.stdout
