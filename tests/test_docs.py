"""The docs site: it builds with ``mkdocs build --strict`` (a broken link or anchor, a page left
out of the navigation, a missing included file all fail), its generated pages match the code,
and the README stays short, with links that resolve and every model string."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from rlaif.backends.specs import MODEL_SPECS

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def test_generated_pages_are_current():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_cli_docs.py"), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr


def test_site_builds_strictly(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "reference" / "cli.html").is_file()


def test_readme_is_short():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 250


def test_readme_links_resolve():
    text = README.read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    local = [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:", t) and t[0] != "#"]
    assert local, "the README links to no docs page"
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, missing


def test_readme_names_every_model_string():
    text = README.read_text(encoding="utf-8")
    assert [s.form for s in MODEL_SPECS if f"`{s.form}`" not in text] == []
