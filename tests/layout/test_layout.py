"""The layout shows the architecture (docs/design.md, "Layout"): every import of wsim/ and models/ runs
downward between the rooms below, and no module is in an import circle. Read from the source with ast,
so an import inside a function counts as much as one at the top of a module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# room -> the rooms it may import (its floor is one more than the highest of them)
ALLOWED = {
    "wsim.errors": set(),
    "models": set(),
    "wsim.cluster": {"wsim.errors", "models"},
    "wsim.gpu": {"wsim.errors", "models"},
    "wsim.engine": {"wsim.errors", "models", "wsim.cluster"},
    "wsim.functional": {"wsim.errors", "models", "wsim.cluster", "wsim.engine"},
    "wsim.studies": {"wsim.errors", "models", "wsim.cluster", "wsim.engine", "wsim.gpu",
                     "wsim.functional"},
    "wsim.commands": {"wsim.errors", "models", "wsim.cluster", "wsim.engine", "wsim.gpu",
                      "wsim.functional", "wsim.studies"},
}


def modules() -> dict[str, Path]:
    out = {}
    for pkg in ("wsim", "models"):
        for f in (ROOT / pkg).rglob("*.py"):
            name = ".".join(f.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = f
    return out


def room(module: str) -> str | None:
    for r in ALLOWED:
        if module == r or module.startswith(r + "."):
            return r
    return None  # the package face ``wsim`` itself


def imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph = {m: set() for m in mods}
    for m, f in mods.items():
        pkg = m if f.name == "__init__.py" else m.rpartition(".")[0]
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = pkg.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            else:
                continue
            for t in targets:
                r = resolve(t)
                if r and r != m and not m.startswith(r + "."):
                    if f.name == "__init__.py" and r.startswith(m + "."):
                        continue  # a package's face handing on its own children
                    graph[m].add(r)
    return graph


def room_edges() -> dict[str, set[str]]:
    """Which rooms each room really imports (read from the code, not from ``ALLOWED``)."""
    edges = {r: set() for r in ALLOWED}
    for m, targets in imports(modules()).items():
        for t in targets:
            if room(m) and room(t) and room(t) != room(m):
                edges[room(m)].add(room(t))
    return edges


def floors() -> dict[str, int]:
    """A room's floor: one above the highest room it imports (0 for a room that imports none)."""
    edges, out = room_edges(), {}

    def floor(r: str) -> int:
        if r not in out:
            out[r] = 1 + max((floor(d) for d in edges[r]), default=-1)
        return out[r]

    for r in ALLOWED:
        floor(r)
    return out


# outside the rooms: the package's face and ``python -m wsim`` (the CLI of wsim.commands, run as a module)
FACES = ("wsim", "wsim.__main__")


def test_every_module_has_a_room():
    homeless = [m for m in modules() if m not in FACES and room(m) is None]
    assert not homeless, f"modules outside the layout's rooms: {homeless}"


def test_no_import_runs_upward():
    mods = modules()
    bad = []
    for m, targets in imports(mods).items():
        rm = room(m)
        for t in targets:
            rt = room(t)
            if rm is None or rt is None or rt == rm:
                continue
            if rt not in ALLOWED[rm]:
                bad.append(f"{m} -> {t}")
    assert not bad, "imports against the layout:\n" + "\n".join(sorted(bad))


def test_no_import_circle():
    graph = imports(modules())
    index, low, stack, on, circles = {}, {}, [], set(), []
    counter = [0]

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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
                circles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


def test_floors_are_as_documented():
    # docs/design.md draws these floors; a new dependency between rooms must be drawn there too
    assert floors() == {"wsim.errors": 0, "models": 0, "wsim.cluster": 1, "wsim.gpu": 1,
                        "wsim.engine": 2, "wsim.functional": 3, "wsim.studies": 3,
                        "wsim.commands": 4}


@pytest.mark.parametrize("name", ["simulate", "train", "generate", "gpu", "analytic", "hardware"])
def test_contract_names_still_reachable(name):
    import wsim

    assert getattr(wsim, name) is not None
