"""The package's layers (docs/architecture.md): the import contract holds, and catches a breach.

``lint-imports`` (import-linter, configured in pyproject.toml) checks that every import goes
down the layers. These tests run it on the real tree, then on a copy with one upward import
added, which it must reject; and they check two rules it does not: no module imports the
package's face (``rlaif/__init__.py``), and every module opens with a docstring.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "rlaif"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_the_import_contract_holds():
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    shutil.copytree(PACKAGE, tmp_path / "rlaif", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    store = tmp_path / "rlaif" / "store.py"
    # the store (bottom layer) reaching up into the main job: what the contract forbids
    store.write_text(store.read_text() + "\n\ndef _up():\n    from rlaif.pipeline import job\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
    assert "rlaif.store -> rlaif.pipeline.job" in result.stdout


def test_no_module_imports_the_package_face():
    offenders = []
    for path in _modules():
        if path == PACKAGE / "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import) and any(a.name == "rlaif" for a in node.names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: import rlaif")
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "rlaif":
                for alias in node.names:
                    name = alias.name
                    if not ((PACKAGE / f"{name}.py").is_file() or (PACKAGE / name).is_dir()):
                        where = f"{path.relative_to(ROOT)}:{node.lineno}"
                        offenders.append(f"{where}: from rlaif import {name}")
    assert not offenders, "import from the module that defines it:\n" + "\n".join(offenders)


def test_every_module_opens_with_a_docstring():
    missing = [
        str(p.relative_to(ROOT))
        for p in _modules()
        if not ast.get_docstring(ast.parse(p.read_text()))
    ]
    assert not missing, "modules without an opening docstring: " + ", ".join(missing)
