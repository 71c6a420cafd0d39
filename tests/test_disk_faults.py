"""A full disk or a read-only run directory: one clear error line, the store intact, and the
same command finishing the run once the fault is gone.

"Disk full" is made two ways. Everywhere: ``RLIMIT_FSIZE`` set in the run's process (through
``preexec_fn``), so a write past the limit fails with EFBIG, as a full disk fails with ENOSPC.
Where the tests run as root and may mount: a real tmpfs of a few hundred kilobytes, filled
until little is left, so writes fail with ENOSPC. "Read-only" is a read-only mount of the run
directory when running as root (permissions do not stop root), and ``chmod`` otherwise.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

RLAIF = [sys.executable, "-m", "rlaif"]
ARGS = ["--limit", "1", "--n-responses", "2", "--revisions", "0", "--max-tokens", "16", "--quiet"]
DATA_FILES = ("preferences.jsonl", "low_margin.jsonl", "unreadable.jsonl", "sft.jsonl")
#: bytes a file of the failing run may grow to: the store's write-ahead log passes this after
#: a few calls (a complete run of ARGS needs about 100 kB)
FILE_SIZE_LIMIT = 70_000
#: bytes left free on the small tmpfs
TMPFS_FREE = 96 * 1024


def rlaif(*args: str, preexec_fn=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*RLAIF, *args],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"},
        preexec_fn=preexec_fn,
    )


def _one_error_line(proc: subprocess.CompletedProcess, pattern: str) -> str:
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert pattern in lines[0], lines[0]
    return lines[0]


def _data(run_dir: Path) -> dict[str, bytes]:
    return {name: (run_dir / name).read_bytes() for name in (*DATA_FILES, "revisions.jsonl")}


def _store_ok(run_dir: Path) -> int:
    """Calls in the store, after SQLite's own integrity check of the file."""
    with sqlite3.connect(run_dir / "store.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]


def _mount(*args: str) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


def _umount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)  # detach when busy


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "reference"
    proc = rlaif("run", *ARGS, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


def _finishes_like_reference(out: Path, reference: Path, stored_before: int) -> None:
    proc = rlaif("run", *ARGS, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    info = json.loads((out / "run.json").read_text())
    assert info["cached_calls"] == stored_before  # nothing paid for was lost
    assert _data(out) == _data(reference)
    assert _store_ok(out) == json.loads((reference / "run.json").read_text())["model_calls"]


def test_file_size_limit_mid_run(reference, tmp_path):
    out = tmp_path / "run"

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))

    proc = rlaif("run", *ARGS, "--out", str(out), preexec_fn=limit_file_size)
    line = _one_error_line(proc, "cannot write the run directory")
    assert "rerun the same command" in line
    assert not (out / "run.json").exists()
    stored = _store_ok(out)
    assert stored < json.loads((reference / "run.json").read_text())["model_calls"]
    _finishes_like_reference(out, reference, stored)


def test_full_tmpfs_mid_run(reference, tmp_path):
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if not _mount("-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount_point)):
        pytest.skip("needs root and mount for a real full disk; test_file_size_limit_mid_run ran")
    try:
        free = os.statvfs(mount_point).f_bavail * os.statvfs(mount_point).f_frsize
        filler = mount_point / "filler"
        filler.write_bytes(b"\0" * (free - TMPFS_FREE))
        out = mount_point / "run"
        line = _one_error_line(rlaif("run", *ARGS, "--out", str(out)), "cannot write the")
        assert "space" in line or "full" in line, line
        assert not (out / "run.json").exists()
        stored = _store_ok(out)
        filler.unlink()
        _finishes_like_reference(out, reference, stored)
    finally:
        _umount(mount_point)


def test_read_only_run_directory(reference, tmp_path):
    """A finished run made read-only, then rerun: refused clearly, nothing changed."""
    mount_point = tmp_path / "ro"
    mount_point.mkdir()
    root = os.geteuid() == 0
    if root and not _mount("-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount_point)):
        pytest.skip("as root, a read-only directory needs a read-only mount, and mount failed")
    out = mount_point / "run"
    try:
        shutil.copytree(reference, out)
        for name in ("run.json", "preferences.jsonl"):
            (out / name).unlink()  # as if the run had stopped before publishing
        before = {p.name: p.read_bytes() for p in out.iterdir()}
        if root:
            assert _mount("-o", "remount,ro", str(mount_point))
        else:
            out.chmod(0o555)
        _one_error_line(rlaif("run", *ARGS, "--out", str(out)), "cannot write the run directory")
        fresh = out / "new"
        _one_error_line(rlaif("run", *ARGS, "--out", str(fresh)), "cannot create")
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
        if root:
            assert _mount("-o", "remount,rw", str(mount_point))
        else:
            out.chmod(0o755)
        _finishes_like_reference(out, reference, _store_ok(out))
    finally:
        if root:
            _umount(mount_point)
        elif out.exists():
            out.chmod(0o755)
