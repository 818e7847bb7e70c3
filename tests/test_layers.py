"""The package's modules point one way: no import cycle, no private name used across modules.

Read with ``ast`` (nothing is imported), so the check is fast and also sees the
imports inside functions, which is where a cycle used to hide.
"""

from __future__ import annotations

import ast
from pathlib import Path

from workflow_helpers import REPO

PACKAGE = REPO / "scripts" / "cxrflow"
SCRIPTS = REPO / "scripts"


def _from_import(node: ast.ImportFrom, alias: str) -> tuple[str, str] | None:
    """(cxrflow module, imported name) of ``from .x import y`` -> (x, y); ``from . import x`` -> (x, "")."""
    base = node.module or ""
    if node.level == 0 and not (base == "cxrflow" or base.startswith("cxrflow.")):
        return None
    base = base.removeprefix("cxrflow").lstrip(".") if node.level == 0 else base
    return (base.split(".")[0], alias) if base else (alias, "")


def internal_imports(path: Path) -> list[tuple[str, str, int]]:
    """(module, imported name, line) of every cxrflow import in ``path``; name "" for a whole module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            found += [(*hit, node.lineno) for a in node.names if (hit := _from_import(node, a.name))]
        elif isinstance(node, ast.Import):
            found += [(a.name.split(".")[1], "", node.lineno) for a in node.names if a.name.startswith("cxrflow.")]
    return found


def private_attributes(path: Path) -> list[tuple[str, int]]:
    """``module._name`` uses where ``module`` is a cxrflow module imported whole."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    modules = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if (_from_import(node, alias.name) or ("", "x"))[1] == ""
    }
    return [
        (f"{node.value.id}.{node.attr}", node.lineno)
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in modules
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
    ]


def import_graph() -> dict[str, set[str]]:
    graph = {p.stem: set() for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    for path in PACKAGE.glob("*.py"):
        if path.stem == "__init__":
            continue
        graph[path.stem] |= {m for m, _, _ in internal_imports(path) if m in graph and m != path.stem}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_finder_sees_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_among_the_package_modules() -> None:
    graph = import_graph()
    assert "data" in graph and graph["shortcut"]  # the walk found the package and its imports
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_no_private_name_crosses_a_module() -> None:
    files = sorted(PACKAGE.glob("*.py")) + sorted(SCRIPTS.glob("*.py"))
    bad = [
        f"{path.relative_to(REPO)}:{line} imports {name} from {module}"
        for path in files
        for module, name, line in internal_imports(path)
        if name.startswith("_")
    ]
    bad += [f"{path.relative_to(REPO)}:{line} uses {attr}" for path in files for attr, line in private_attributes(path)]
    assert not bad, "\n".join(bad)


def test_the_loader_does_not_depend_on_an_audit() -> None:
    """data loading sits at the bottom: it imports no other cxrflow module."""
    assert import_graph()["data"] == set()


# Import name -> the distribution pyproject.toml declares for it.
DISTRIBUTIONS = {"cv2": "opencv-python-headless", "sklearn": "scikit-learn", "yaml": "pyyaml", "PIL": "pillow"}
# Installed with a declared package and imported only where that package needs it.
INDIRECT = {
    "h5py": "keras (its legacy .h5 format)",
    "torch": "the torch Keras backend, installed by hand from PyTorch's CPU index (tests skip without it)",
}


def third_party_imports() -> dict[str, str]:
    """Top-level module -> first file importing it, over the package (imports inside functions included)."""
    import sys

    found: dict[str, str] = {}
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                     else [])  # fmt: skip
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("cxrflow", "__future__"):
                    found.setdefault(top, path.name)
    return found


def test_every_imported_package_is_declared() -> None:
    """pyproject's dependencies name what the package imports; the conda envs list no package it does not."""
    import tomllib

    import yaml

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {
        dep.split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip().lower()
        for dep in [*project["dependencies"], *project["optional-dependencies"]["jax"]]
    }
    imports = third_party_imports()
    assert {"scipy", "sklearn", "cv2"} <= set(imports)  # the walk sees the package's imports
    missing = sorted(f"{m} ({f})" for m, f in imports.items()
                     if m not in INDIRECT and DISTRIBUTIONS.get(m, m).lower() not in declared)  # fmt: skip
    assert not missing, f"imported but not in pyproject.toml's dependencies: {missing}"
    for env in sorted((REPO / "envs").glob("*.yaml")):
        listed = {str(d).split()[0] for d in yaml.safe_load(env.read_text())["dependencies"] if isinstance(d, str)}
        assert "imagehash" not in listed, f"{env.name} lists imagehash, which the code does not use (dedup.py)"
        assert "scipy" in listed, f"{env.name} lacks scipy, which split, dedup, audit and uncertainty import"
