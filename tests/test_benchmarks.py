"""Every benchmark script runs in --quick mode, as a subprocess, and prints its figures: a
refactor of the engine cannot silently break them. The peers (LangGraph, pydantic-graph) are in
the `test` extra, so the comparisons run too; each script that uses a peer also runs with the
peers hidden, as on a machine without them, and must still print this engine's figures.

The benchmarks drive the engine through the public `orch` namespace only: a test reads their
source and refuses imports from inside the package and private attributes.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import orch

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
NUM = r"-?[\d,]+(?:\.\d+)?"
X = rf"{NUM}×"

# Runs a benchmark script as `python script --quick …` would, with langgraph and pydantic_graph
# unimportable, as if they were not installed.
WITHOUT_PEERS = """\
import importlib.abc, os, runpy, sys

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("langgraph", "pydantic_graph"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(sys.argv[0]))
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run(script: str, *args: str, peers: bool = True, timeout: float = 120) -> str:
    path = str(BENCH / script)
    cmd = [sys.executable, path, "--quick", *args] if peers else [sys.executable, "-c", WITHOUT_PEERS, path,
                                                                   "--quick", *args]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{script} exited with {out.returncode}\n{out.stdout}\n{out.stderr}"
    return out.stdout


def row(text: str, label: str, *cells: str) -> None:
    """A table row: the label, then cells separated by blanks (regular expressions)."""
    pattern = r"^ *" + re.escape(label) + r"\s+" + r"\s+".join(cells) + r"\s*$"
    assert re.search(pattern, text, re.M), f"no row matching {pattern!r} in:\n{text}"


def test_bench_runtime_prints_every_row_of_the_issue_table_against_both_peers() -> None:
    out = run("bench_runtime.py")
    assert "not installed" not in out
    assert re.search(r"· langgraph [\d.]+ · pydantic-graph [\d.]+ · ", out), out
    row(out, "(a) 5-step chain, durable", "µs/run", NUM, NUM, X, NUM, X, "≥ 10× · ≥ 1.2×", r"(yes|no) · (yes|no)")
    row(out, "(b) 200-step chain, durable", "µs/step", NUM, NUM, X, "—", "—", "≥ 8×", "(yes|no)")
    row(out, "(c) fan-out of 64 + join, durable", "µs/run", NUM, NUM, X, "—", "—", "≥ 8×", "(yes|no)")
    row(out, "gate round trip, durable ¹", "µs/run", NUM, NUM, X, "—", "—", "≥ 6×", "(yes|no)")
    for phase in ("Engine.start", "Engine.wait → paused", "Engine.resume", "Engine.wait → completed"):
        row(out, f"  {phase}", "µs", NUM)
    row(out, "  Engine.resume in step costs ²", "steps", NUM, "≤ 2", "(yes|no)")
    row(out, "(d) 50 concurrent 5-step runs, durable ³", "runs/s", NUM, NUM, X, NUM, X, "≥ 25× · ≥ 3×",
        r"(yes|no) · (yes|no)")
    row(out, "memory in flight, per held run ⁴", "KB", NUM, NUM, X, "—", "—", "≤ 4 KB", "(yes|no)")
    row(out, "peak memory growth per iteration, looping step ⁵", "B", NUM, NUM, rf"({X}|—)", "—", "—",
        "≤ LangGraph", "(yes|no)")
    row(out, "gate: resume → completed", "µs", NUM, NUM, X)
    row(out, "(e) bytes per step, database pages ⁷", "B/step", NUM, NUM, X)
    row(out, "LangGraph: 5-step chain, no checkpointer", "µs/run", NUM)


def test_bench_runtime_without_the_peers_prints_this_engines_figures() -> None:
    out = run("bench_runtime.py", peers=False)
    assert "LangGraph not installed: skipped" in out and "pydantic-graph not installed: skipped" in out, out
    row(out, "(a) 5-step chain, durable", "µs/run", NUM, "—", "—", "—", "—", "≥ 10× · ≥ 1.2×", "— · —")
    row(out, "gate round trip, durable ¹", "µs/run", NUM, "—", "—", "—", "—", "≥ 6×", "—")
    row(out, "  Engine.resume", "µs", NUM)
    row(out, "memory in flight, per held run ⁴", "KB", NUM, "—", "—", "—", "—", "≤ 4 KB", "(yes|no)")
    row(out, "(e) bytes per step, row payload ⁷", "B/step", NUM, "—", "—")
    assert "reference figures" not in out


def test_bench_memory() -> None:
    out = run("bench_memory.py")
    row(out, "(a) in flight: 20 5-step runs, each held in step 3 ¹", "B/run", NUM, NUM, X, "≤ 4,000")
    row(out, "(d) peak growth per step, 10 → 50 steps", "B/step", NUM, NUM, rf"({X}|—)", "≤ LangGraph")
    row(out, "(c) peak, chain of 50 steps ³", "KiB", NUM, NUM, rf"({X}|—)")
    out = run("bench_memory.py", peers=False)
    assert "LangGraph not installed: skipped" in out
    row(out, "(a) in flight: 20 5-step runs, each held in step 3 ¹", "B/run", NUM, "—", "—", "≤ 4,000")


def test_sqlite_size() -> None:
    out = run("sqlite_size.py")
    row(out, "(e) bytes per step, database pages", "B/step", NUM, NUM)
    row(out, "this engine: events", "13", NUM)
    row(out, "LangGraph: checkpoints", NUM, NUM)
    out = run("sqlite_size.py", peers=False)
    assert "LangGraph not installed: skipped" in out
    row(out, "(e) bytes per step, row payload", "B/step", NUM, "—")


def test_bench_compile() -> None:
    out = run("bench_compile.py")
    assert "1,000-step graph: 1,000 steps, 1,259 edges" in out and ", 0 problems" in out, out
    assert re.search(r"compile \+ validate\s+[\d.]+ ms", out), out


def test_bench_server() -> None:
    out = run("bench_server.py")
    row(out, "1", NUM, NUM, NUM, NUM, NUM, "0", r"\d+%", r"\d+%")
    row(out, "16", NUM, NUM, NUM, NUM, NUM, "0", r"\d+%", r"\d+%")
    assert re.search(r"^10 of 10 streams measured, 0 errors$", out, re.M), out


def test_bench_transform() -> None:
    out = run("bench_transform.py")
    row(out, "unisolated", NUM, NUM, NUM, NUM)
    if shutil.which("bwrap"):
        row(out, "isolated", NUM, NUM, NUM, NUM)
        assert re.search(r"^isolation adds -?[\d.]+ ms per transform \(median\)$", out, re.M), out


def test_profile_runtime() -> None:
    out = run("profile_runtime.py", "--top", "5")
    row(out, "one step: (25-step − 5-step) ÷ 20", "µs/step", NUM, NUM)
    row(out, "gate round trip (s0 → gate → s1): resume", "µs", NUM, NUM)
    row(out, "gate: Engine.resume in step costs", "steps", NUM, NUM)
    row(out, "floor: sqlite3 INSERT + COMMIT, WAL, synchronous=NORMAL", "µs", NUM)
    for phase in ("5-step chain, durable: Engine.run, 20 runs one after another",
                  "gate, start → paused: Engine.start + Engine.wait",
                  "gate, resume → completed: Engine.resume + Engine.wait"):
        assert re.search(rf"^== {re.escape(phase)}: [\d,]+ µs wall, [\d,]+ µs CPU per (run|resume) under the profiler",
                         out, re.M), out
    assert re.search(r"^-- event-loop thread: [\d,]+ µs busy and [\d,]+ µs waiting per resume \(CPU time", out, re.M), out


# -- the public API only ------------------------------------------------------------------

# The one import from inside `orch` the benchmarks still need: custom executors are public
# (`orch.open_engine(..., executors=…)`) but the StepResult they return is not exported.
NOT_YET_PUBLIC: set[tuple[str, str, str]] = set()


def private_uses(path: Path) -> list[str]:
    """Imports from inside `orch` and `._name` attributes in one benchmark file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("orch."):
            found += [f"{path.name}: from {node.module} import {a.name}" for a in node.names
                      if (path.name, node.module, a.name) not in NOT_YET_PUBLIC or hasattr(orch, a.name)]
        elif isinstance(node, ast.Import):
            found += [f"{path.name}: import {a.name}" for a in node.names if a.name.startswith("orch.")]
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            found.append(f"{path.name}:{node.lineno}: .{node.attr}")
    return found


def test_benchmarks_use_only_the_public_api() -> None:
    files = sorted(BENCH.glob("*.py"))
    assert {f.name for f in files} >= {"bench_runtime.py", "bench_memory.py", "profile_runtime.py", "workloads.py"}
    assert [use for f in files for use in private_uses(f)] == []


@pytest.mark.parametrize("script", sorted(p.name for p in BENCH.glob("*.py") if p.name.startswith(("bench_", "profile_"))
                                          or p.name == "sqlite_size.py"))
def test_every_benchmark_script_has_a_quick_mode_and_a_smoke_test(script: str) -> None:
    assert "--quick" in (BENCH / script).read_text(encoding="utf-8")
    tested = Path(__file__).read_text(encoding="utf-8")
    assert f'run("{script}"' in tested, f"{script} has no smoke test here"
