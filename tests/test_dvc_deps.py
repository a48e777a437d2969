"""dvc.yaml's code deps are exactly each stage script plus the project modules it imports.

A missing dep serves stale results silently; an extra one reruns work for nothing. Imports are
followed transitively with ast, so a lazy import inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CODE_ROOTS = ("saln", "stages")


def module_file(name: str) -> Path | None:
    """The project file of a dotted module name (``_common`` is a stage-local module), or None."""
    if name == "_common":
        return Path("stages/_common.py")
    parts = name.split(".")
    if parts[0] != "saln":
        return None
    for candidate in (Path(*parts).with_suffix(".py"), Path(*parts) / "__init__.py"):
        if (ROOT / candidate).is_file():
            return candidate
    return None


def imported_files(path: Path) -> set[Path]:
    """Project files that ``path`` imports directly, including the packages on the way."""
    found = set()
    for node in ast.walk(ast.parse((ROOT / path).read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__
                f = module_file(".".join(parts[:i]))
                if f is not None:
                    found.add(f)
    return found


def import_closure(script: Path) -> set[Path]:
    seen, todo = set(), [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo.extend(imported_files(path) - seen)
    return seen


def import_graph() -> dict[Path, set[Path]]:
    """Module -> the modules it imports, less the packages that contain it.

    A module importing a sibling runs its own package's __init__ first, which Python allows as
    the package is already being imported; only real loops between modules are cycles.
    """
    files = [p.relative_to(ROOT) for root in CODE_ROOTS for p in (ROOT / root).rglob("*.py")]
    return {f: {g for g in imported_files(f) - {f}
                if not (g.name == "__init__.py" and f.is_relative_to(g.parent))} for f in files}


def declared_code_deps(stage: dict) -> set[Path]:
    return {Path(d) for d in stage.get("deps", []) if d.endswith(".py")}


def stages() -> dict[str, dict]:
    """Every stage as DVC resolves dvc.yaml (matrix items, ``${...}``, anchors): name -> cmd, deps and
    params, so what is checked is what ``dvc repro`` runs."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        return {stage.addressing: {
            "cmd": stage.cmd,
            "deps": [str(d.def_path) for d in stage.deps if not isinstance(d, ParamsDependency)],
            "params": [p for d in stage.deps if isinstance(d, ParamsDependency) for p in d.params],
        } for stage in repo.index.stages}


@pytest.mark.parametrize("name", sorted(stages()))
def test_stage_code_deps_are_its_import_closure(name):
    stage = stages()[name]
    script = Path(stage["cmd"].split()[1])
    expected = import_closure(script)
    declared = declared_code_deps(stage)
    missing, extra = sorted(map(str, expected - declared)), sorted(map(str, declared - expected))
    assert not missing and not extra, f"stage {name}: missing deps {missing}, extra deps {extra}"


def test_no_directory_deps_on_code():
    """A folder of code as a dep (saln/selection) would hide which modules a stage really reads."""
    for name, stage in stages().items():
        for dep in stage.get("deps", []):
            assert not (dep.startswith(CODE_ROOTS) and (ROOT / dep).is_dir()), f"stage {name}: folder dep {dep}"


def test_the_library_has_no_import_cycle():
    graph = import_graph()
    state: dict[Path, str] = {}

    def visit(node: Path, path: list[Path]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, set())):
            if state.get(nxt) == "open":
                cycle = path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
                pytest.fail("import cycle: " + " -> ".join(map(str, cycle)))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_the_closure_follows_lazy_imports(tmp_path):
    """An import inside a function is a dependency as much as one at the top."""
    assert Path("saln/errors.py") in import_closure(Path("stages/validate.py"))


@pytest.mark.parametrize("name", sorted(stages()))
def test_stages_depend_on_the_folders_of_the_files_they_read(name):
    """A state dict lives under weights/, a data file under data/sources/ (validate enforces it):
    a stage that builds a network depends on weights/, one that reads data sources on data/sources/."""
    stage = stages()[name]
    closure = import_closure(Path(stage["cmd"].split()[1]))
    deps = set(stage.get("deps", []))
    builds_networks = Path("saln/backbones.py") in closure and name != "validate"  # validate only checks paths
    assert ("weights" in deps) == builds_networks, name
    reads_sources = Path("stages/prepare.py") in closure
    assert ("data/sources" in deps) == reads_sources, name
