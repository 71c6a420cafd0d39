"""Count the package's import graph: nodes, levels, edges, cycles and imports of the face.

Counted as docs/architecture.md states it: each top-level module of ``rlaif/`` is a node, each
sub-package one node, ``benchmarks/`` one node; the package face (``rlaif/__init__.py``), the
tests and folders without an import in or out (``rlaif/data/``) are left out; imports inside
functions count. A node's level is the length of the longest import chain above it plus one,
so ``levels`` is the number of floors the graph stands on. Run:
``.venv/bin/python scripts/import_graph.py`` (``--edges`` lists every edge).
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "rlaif"


def node_of(module: str) -> str | None:
    """The graph node of a dotted module name, or None outside the project."""
    parts = module.split(".")
    if parts[0] == "benchmarks":
        return "benchmarks/"
    if parts[0] != "rlaif":
        return None
    if len(parts) == 1:
        return "rlaif (face)"
    return parts[1] + "/" if (PACKAGE / parts[1]).is_dir() else parts[1]


def module_name(path: Path) -> str:
    """Dotted name of a source file below the root."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every dotted module name a file imports, names imported from a package included."""
    name = module_name(path)
    out = set()
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.Import):
            out.update(a.name for a in n.names)
        elif isinstance(n, ast.ImportFrom):
            base = n.module or ""
            if n.level:
                pkg = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - n.level + 1]
                base = ".".join(pkg + ([n.module] if n.module else []))
            for a in n.names:
                sub = f"{base}.{a.name}"
                top = sub.split(".")
                is_module = len(top) > 1 and (
                    (PACKAGE.joinpath(*top[1:]).with_suffix(".py")).is_file()
                    or PACKAGE.joinpath(*top[1:]).is_dir()
                )
                out.add(sub if base.startswith("rlaif") and is_module else base)
    return out


def graph() -> dict[str, set[str]]:
    """node -> the nodes it imports (no self edges)."""
    files = [p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts]
    files += sorted((ROOT / "benchmarks").glob("*.py"))
    edges: dict[str, set[str]] = defaultdict(set)
    for path in files:
        src = node_of(module_name(path))
        if src == "rlaif (face)":
            continue
        edges.setdefault(src, set())
        for mod in imported(path):
            dst = node_of(mod)
            if dst and dst != src:
                edges[src].add(dst)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def levels(edges: dict[str, set[str]], circles: list[list[str]]) -> dict[str, int]:
    """Level of every node: 1 + the longest chain of importers above it; the nodes of a cycle
    stand on one level together (the graph's condensation)."""
    rep = {n: c[0] for c in circles for n in c}
    dag: dict[str, set[str]] = defaultdict(set)
    for s, ds in edges.items():
        dag[rep.get(s, s)].update(rep.get(d, d) for d in ds if rep.get(d, d) != rep.get(s, s))
    nodes = set(dag) | {d for ds in dag.values() for d in ds}
    importers = {n: {s for s, ds in dag.items() if n in ds} for n in nodes}
    level: dict[str, int] = {}

    def of(n: str, seen: frozenset) -> int:
        if n not in level:
            above = [of(s, seen | {n}) for s in importers[n] if s not in seen]
            level[n] = 1 + max(above, default=0)
        return level[n]

    for n in nodes:
        of(n, frozenset())
    return {n: level[rep.get(n, n)] for n in set(edges) | {d for ds in edges.values() for d in ds}}


def main() -> int:
    """Print the counts (and with --edges every edge); exit 1 on a cycle."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", action="store_true", help="also list every edge")
    args = parser.parse_args()
    edges = graph()
    face = sorted(s for s, ds in edges.items() if "rlaif (face)" in ds)
    for ds in edges.values():
        ds.discard("rlaif (face)")
    found = cycles(edges)
    level = levels(edges, found)
    nodes = {s for s, ds in edges.items() if ds} | {d for ds in edges.values() for d in ds}
    print(f"nodes   {len(nodes)}")
    print(f"edges   {sum(len(ds) for ds in edges.values())}")
    note = " (the nodes of a cycle on one level)" if found else ""
    print(f"levels  {max(level.values(), default=0)}{note}")
    print(f"cycles  {len(found)} {found if found else ''}".rstrip())
    print(f"face    {len(face)} modules import the package face {face if face else ''}".rstrip())
    for n in sorted(nodes, key=lambda n: (level.get(n, 0), n)):
        print(f"  {level[n]:>2}  {n}")
        if args.edges:
            for d in sorted(edges.get(n, ())):
                print(f"        -> {d}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
