"""The house rules, checked: the package's modules point one way (no import cycle, no private
name used across modules), every module and public name has a caller outside the tests, no
default is repeated outside the schema, and building the DAG writes no file.

Read with ``ast`` (nothing is imported), so the checks are fast and also see the
imports inside functions, which is where a cycle used to hide.
"""

from __future__ import annotations

import ast
import functools
import os
import re
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from cxrflow.config import schema_defaults
from workflow_helpers import REPO, fresh_repo, snakemake_command, tiny_config

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
                return path[path.index(nxt) :] + [nxt]
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


def callers() -> dict[Path, str]:
    """Every file that may call the package, tests excluded: the package itself, the rule scripts,
    the rules, the Snakefile and the benchmarks."""
    files = [*PACKAGE.glob("*.py"), *SCRIPTS.glob("*.py"), *(REPO / "workflow" / "rules").glob("*.smk"),
             REPO / "Snakefile", *(REPO / "bench").glob("*.py")]  # fmt: skip
    return {path: path.read_text(encoding="utf-8") for path in files}


def test_every_module_has_a_caller_outside_the_tests() -> None:
    texts = callers()
    lonely = []
    for module in sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"):
        imported = re.compile(rf"(from \.|from cxrflow\.|import cxrflow\.){module}\b"
                              rf"|from (\.|cxrflow) import [^\n]*\b{module}\b")  # fmt: skip
        if not any(imported.search(text) for path, text in texts.items() if path != PACKAGE / f"{module}.py"):
            lonely.append(module)
    assert not lonely, f"modules no rule, script, module or benchmark imports: {lonely}"


def public_names(path: Path) -> list[str]:
    """Top-level functions, classes and constants of a module, private ones (``_x``) left out."""
    names = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return [n for n in names if not n.startswith("_")]


def test_no_name_is_used_only_by_the_tests() -> None:
    """A public name that nothing but its own definition mentions (outside the tests) is dead code or
    a test's private helper living in the package."""
    words = Counter(re.findall(r"\w+", "\n".join(callers().values())))
    unused = [f"{path.stem}.{name}" for path in sorted(PACKAGE.glob("*.py")) for name in public_names(path)
              if words[name] < 2]  # fmt: skip
    assert not unused, f"defined but used by no rule, script, module or benchmark: {unused}"


def repeated_defaults(tree: Any, defaults: Any, path: str = "") -> list[str]:
    """Keys of ``tree`` whose value is the schema's default (experiments compared with an all-default one)."""
    found = []
    for key, value in tree.items():
        schema_key = "default" if path == "experiments" else key
        if not isinstance(defaults, dict) or schema_key not in defaults:
            continue
        where = f"{path}.{key}" if path else key
        if isinstance(value, dict) and value and isinstance(defaults[schema_key], dict):
            found += repeated_defaults(value, defaults[schema_key], where)
        elif value == defaults[schema_key]:
            found.append(where)
    return found


def test_the_finder_sees_a_repeated_default() -> None:
    defaults = schema_defaults()
    tree = {"split": {"seed": defaults["split"]["seed"], "folds": 7}, "experiments": {"x": {"arch": "vgg19"}}}
    assert repeated_defaults(tree, defaults) == ["split.seed", "experiments.x.arch"]


@pytest.mark.parametrize("name", ["config.yaml", "workflow/demo.yaml"])
def test_no_default_repeated_outside_the_schema(name: str) -> None:
    """A shipped settings file that repeats a default pins it: a changed schema default would not take effect."""
    repeated = repeated_defaults(yaml.safe_load((REPO / name).read_text()), schema_defaults())
    assert not repeated, f"{name} repeats the schema's defaults of {repeated}"


def test_the_schema_ships_with_the_package() -> None:
    """A non-editable install finds the schema: it sits in the package and pyproject lists it as package data."""
    import tomllib

    from cxrflow.config import SCHEMA

    assert SCHEMA.parent == PACKAGE and SCHEMA.is_file()
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert SCHEMA.name in setuptools["package-data"]["cxrflow"]


def tree_of(root: Path) -> dict[str, int]:
    """Every file under ``root`` with its size; Snakemake's own bookkeeping (.snakemake/) and Python's
    byte code left out."""
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*")
            if p.is_file() and not {".snakemake", "__pycache__"} & set(p.relative_to(root).parts)}  # fmt: skip


@pytest.mark.slow
def test_no_file_written_while_the_dag_is_built(tmp_path: Path) -> None:
    """`-n`, `--lint` and `--unlock` only read: the tree of a fresh copy is the same after each."""
    work = fresh_repo(tmp_path / "repo")
    config = tiny_config()
    del config["preprocess"]["batch_size"]  # the default: crop jobs in batches
    (work / "my.yaml").write_text(yaml.safe_dump(config))
    before = tree_of(work)
    for flag in ("-n", "--lint", "--unlock"):
        proc = subprocess.run(snakemake_command(flag), cwd=work, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONPATH": str(work / "scripts")})  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        written = sorted(set(tree_of(work).items()) - set(before.items()))
        assert not written, f"snakemake {flag} wrote {written}"


@functools.cache
def package_imports(path: Path) -> set[str]:
    """Top-level modules ``path`` imports by absolute name (third-party and standard library)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@functools.cache
def package_modules_imported(path: Path) -> tuple[str, ...]:
    return tuple(module for module, _, _ in internal_imports(path))


def reached_modules(path: Path) -> set[Path]:
    """``path`` and every package module it imports, directly or not (imports inside functions too)."""
    reached, todo = {path}, [path]
    while todo:
        for module in package_modules_imported(todo.pop()):
            target = PACKAGE / f"{module}.py"
            if target.is_file() and target not in reached:
                reached.add(target)
                todo.append(target)
    return reached


def rule_scripts() -> list[tuple[str, Path, Path]]:
    """(rule, its script, its conda env file) of every rule that runs a script in a conda env."""
    found = []
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for rule in re.finditer(r"^rule (\w+):(.*?)(?=^rule |\Z)", smk.read_text(), re.S | re.M):
            env = re.search(r'conda:\s*"([^"]+)"', rule[2])
            script = re.search(r'script:\s*"([^"]+)"', rule[2])
            if env and script:
                found.append((rule[1], (smk.parent / script[1]).resolve(), (smk.parent / env[1]).resolve()))
    return found


def test_every_rule_env_lists_matplotlib_where_its_script_draws() -> None:
    rules = rule_scripts()
    assert len(rules) > 20  # the walk found the rules
    missing = [f"{rule} ({env.name})" for rule, script, env in rules
               if "matplotlib" in set().union(*(package_imports(p) for p in reached_modules(script)))
               and "matplotlib" not in env.read_text()]  # fmt: skip
    assert not missing, f"rules whose script imports matplotlib but whose conda env lacks it: {missing}"


def test_the_package_docstring_names_every_module() -> None:
    """The module list a newcomer reads first (scripts/cxrflow/__init__.py) stays complete."""
    listed = set(re.findall(r"``(\w+)``", ast.get_docstring(ast.parse((PACKAGE / "__init__.py").read_text())) or ""))
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert modules <= listed, f"modules missing from the package docstring: {sorted(modules - listed)}"


def test_report_categories_come_from_the_layout() -> None:
    """A category typed into a rule drifts from the one the Verdict page and report views use."""
    typed = [f"{p.name}: {m.group(0)}" for p in sorted((REPO / "workflow").rglob("*.smk"))
             for m in re.finditer(r"\bcategory=[\"'][^\"']*[\"']", p.read_text())]  # fmt: skip
    assert not typed, f"report categories typed in rules instead of cxrflow.layout's constants: {typed}"
