"""The shape of the code: no import circle among the modules of engine/ and server/ (imports
inside functions and under TYPE_CHECKING count too), the engine never imports the server, no
module grows past what one job needs, and the public namespace is what it says."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import networkx as nx

import orch

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 460  # modules over ~350 lines (360 with some slack) are on the list below, to be split
LONG_MODULES = {"orch.run.driver", "orch.run.engine", "orch.store.sql"}


def module_name(path: Path) -> str:
    """The installed name of a source file: engine/ is `orch`, server/ is `orch.server`."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    parts = ["orch", *parts[1:]] if parts[0] == "engine" else ["orch", "server", *parts[1:]]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_modules() -> dict[str, Path]:
    return {module_name(p): p for top in ("engine", "server") for p in (ROOT / top).rglob("*.py")}


def import_graph() -> "nx.DiGraph[str]":
    modules = source_modules()
    graph: nx.DiGraph[str] = nx.DiGraph()
    for name, path in modules.items():
        graph.add_node(name)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - node.level + 1]) + (f".{base}" if base else "")
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                # `orch` itself is the public namespace that re-exports everything: not a floor.
                if target and target not in (name, "orch"):
                    graph.add_edge(name, target)
    return graph


def test_no_import_circles() -> None:
    graph = import_graph()
    circles = [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]
    assert circles == [], [nx.find_cycle(graph.subgraph(c)) for c in circles]


def test_the_engine_never_imports_the_server() -> None:
    graph = import_graph()
    upward = [(a, b) for a, b in graph.edges if not a.startswith("orch.server") and b.startswith("orch.server")]
    assert upward == []


def test_only_the_public_namespace_reexports_the_engine() -> None:
    users = sorted(name for name, path in source_modules().items()
                   if name != "orch" and any(isinstance(n, ast.ImportFrom) and n.module == "orch" and n.level == 0
                                             for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))))
    assert users == []  # modules inside import from where things live, never from `orch`


def test_modules_stay_small() -> None:
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in source_modules().items()}
    assert {n: s for n, s in sizes.items() if s > MAX_LINES} == {}
    assert {n: s for n, s in sizes.items() if s > 360 and n not in LONG_MODULES} == {}


def test_public_names_are_importable_and_listed() -> None:
    assert sorted(orch.__all__) == sorted(set(orch.__all__))
    assert [name for name in orch.__all__ if not hasattr(orch, name)] == []
    exported = {name for name in dir(orch) if not name.startswith("_") and not isinstance(getattr(orch, name), type(orch))}
    assert exported - set(orch.__all__) - {"annotations", "Path"} == set()
    for name in ("Engine", "load", "compile", "open_engine", "RunResult", "EngineError", "MemoryStore", "SQLStore",
                 "Run", "RunStatus", "StepRecord", "Gate", "RunStore", "Settings"):
        assert name in orch.__all__


def test_every_error_is_an_engine_error() -> None:
    errors = [v for v in vars(orch).values() if isinstance(v, type) and issubclass(v, Exception)]
    assert errors and all(issubclass(e, orch.EngineError) for e in errors)
    from orch.definition.expressions import ExpressionError
    from orch.definition.state import TypeParseError

    assert issubclass(ExpressionError, orch.EngineError) and issubclass(TypeParseError, orch.EngineError)


def test_no_generic_top_level_packages_are_installed(tmp_path: Path) -> None:
    """Outside the checkout, the install provides `orch` and no top-level `engine` or `server`."""
    probe = ("import importlib.util as u, orch, orch.server.app; "
             "print(u.find_spec('engine'), u.find_spec('server'), orch.__name__)")
    out = subprocess.run([sys.executable, "-I", "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stdout.split()) == (0, ["None", "None", "orch"]), out.stderr


def test_every_package_folder_is_installed() -> None:
    """pyproject.toml lists packages one by one; a new folder must be added there."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    folders = {module_name(p) for top in ("engine", "server") for p in (ROOT / top).rglob("__init__.py")}
    assert sorted(f for f in folders if f'"{f}"' not in text) == []
