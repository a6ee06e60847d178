"""The benchmark workloads, built the same way for this engine and for its peers.

Every step is a no-op that adds 1 to an int key `count` whose reducer sums writes, so every
engine carries the same state and (where it persists anything) the same one-key delta per
step: here an `add` reducer in `state_schema`, in LangGraph `Annotated[int, operator.add]`, in
pydantic-graph a step adding 1 to a dataclass field.

This engine is used only through the public `orch` namespace: `orch.open_engine` over a
directory of graph files written here, with `orch.Settings`. The peers are optional (the
`bench` extra); `peer_available` says whether one can be imported, and the scripts print
"<peer> not installed: skipped" for the figures they cannot take without it.
"""

from __future__ import annotations

import importlib
import operator
import os
from dataclasses import dataclass
from typing import Annotated, Any, Awaitable, Callable, TypedDict

import orch

# Custom executors are part of the public API (`orch.open_engine(..., executors=…)`), the
# value they return is not exported by `orch` yet: the one import from inside the package.
from orch import StepResult

LANGGRAPH, PYDANTIC_GRAPH = "LangGraph", "pydantic-graph"
_PEER_MODULES = {LANGGRAPH: ("langgraph.graph", "langgraph.types", "langgraph.checkpoint.sqlite"),
                 PYDANTIC_GRAPH: ("pydantic_graph",)}


def peer_available(peer: str) -> bool:
    """Whether the peer's modules import (the `bench` extra installs them)."""
    try:
        for module in _PEER_MODULES[peer]:
            importlib.import_module(module)
    except ImportError:
        return False
    return True


def peer_version(peer: str) -> str:
    from importlib.metadata import version

    return version({LANGGRAPH: "langgraph", PYDANTIC_GRAPH: "pydantic-graph"}[peer])


def skipped(peer: str) -> str:
    return f"{peer} not installed: skipped"


# -- this engine ---------------------------------------------------------------------------

_HEADER = """\
id: {id}
name: {id}
max_total_turns: 100000
state_schema:
  count: {{type: int, default: 0, reducer: add}}
steps:
"""

GATE_ANSWER = "yes"
CHAIN, LONG_CHAIN, WIDTH = 5, 200, 64  # the chains' lengths and the fan-out's width
DURABLE_CASES = ("chain5", "chain200", "fan64", "gate")  # bench_runtime's cases in alternating rounds
SYNCHRONOUS = "NORMAL"  # SQLite's synchronous level of the durable cases, on every side


async def noop(ctx: Any) -> StepResult:
    """The executor for every `agent` step of the workloads: no work, one write."""
    return StepResult(output=1)


def chain_yaml(graph_id: str, length: int) -> str:
    lines = [_HEADER.format(id=graph_id)]
    for i in range(length):
        nxt = f"\n    next_step_id: s{i + 1}" if i + 1 < length else ""
        lines.append(f"  - id: s{i}\n    type: agent\n    name: s{i}\n    output_key: count{nxt}\n")
    return "".join(lines)


def fanout_yaml(graph_id: str, width: int) -> str:
    """A `parallel` step starting `width` branches that all meet at one join step."""
    branches = ", ".join(f"[b{i}]" for i in range(width))
    lines = [_HEADER.format(id=graph_id),
             f"  - id: fan\n    type: parallel\n    name: fan\n    parallel_branches: [{branches}]\n"
             "    next_step_id: join\n"]
    for i in range(width):
        lines.append(f"  - id: b{i}\n    type: agent\n    name: b{i}\n    output_key: count\n    next_step_id: join\n")
    lines.append("  - id: join\n    type: agent\n    name: join\n    output_key: count\n")
    return "".join(lines)


def gate_yaml(graph_id: str) -> str:
    """A step, a human gate whose answer goes to `answer`, a step: s0 → ask → s1."""
    return (_HEADER.format(id=graph_id).replace("steps:\n", "  answer: {type: str, default: ''}\nsteps:\n")
            + "  - id: s0\n    type: agent\n    name: s0\n    output_key: count\n    next_step_id: ask\n"
            + "  - id: ask\n    type: human\n    name: ask\n    human_prompt: Go on?\n    output_key: answer\n"
            + "    next_step_id: s1\n"
            + "  - id: s1\n    type: agent\n    name: s1\n    output_key: count\n")


def loop_yaml(graph_id: str, times: int) -> str:
    """One `agent` step whose next step is itself, run `times` times: its loop guard
    (`max_iterations`) skips it after that and the run ends."""
    return chain_yaml(graph_id, 1) + f"    max_iterations: {times}\n    next_step_id: s0\n"


async def open_ours(db_path: str, graphs: dict[str, str], *, synchronous: str = SYNCHRONOUS,
                    executor: Callable[[Any], Awaitable[StepResult]] = noop,
                    lease_seconds: float | None = None) -> orch.Engine:
    """`orch.open_engine` on a SQLite file, serving `graphs` (id → YAML text) from a folder of
    graph files beside it, with `executor` running every `agent` step."""
    root = db_path + ".d"
    graphs_dir = os.path.join(root, "graphs")
    os.makedirs(graphs_dir, exist_ok=True)
    for gid, text in graphs.items():
        with open(os.path.join(graphs_dir, f"{gid}.yaml"), "w", encoding="utf-8") as f:
            f.write(text)
    settings = orch.Settings(database_url=f"sqlite:///{db_path}", graphs_dir=graphs_dir,
                             sqlite_synchronous=synchronous, sandbox_root=os.path.join(root, "sandbox"))
    if lease_seconds is not None:
        settings.lease_seconds = lease_seconds
    engine, report = await orch.open_engine(settings, graphs=[graphs_dir], executors={"agent": executor})
    if OBSERVE != "off":
        observe(engine)
    missing = sorted(set(graphs) - set(report.graphs))
    if missing:
        await engine.close()
        problems = [str(p) for ps in report.rejected.values() for p in ps] + [str(p) for p in report.problems]
        raise RuntimeError(f"benchmark graphs not served: {missing}: {problems}")
    return engine


# What watches this engine's runs (bench_runtime --observe): "off", as a library embeds it;
# "server", the logs and metrics a server keeps, tracing off (OTEL_* unset); "traced", those and
# OpenTelemetry spans of every run, step and call, exported in batches to nowhere.
OBSERVE = "off"


def observe(engine: orch.Engine) -> None:
    provider = None
    if OBSERVE == "traced":
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

        class Nowhere(SpanExporter):
            def export(self, spans: Any) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(Nowhere()))
    orch.observe_engine(engine, provider)


def ours_check(expected: int, **more: Any) -> Callable[[Any], None]:
    """A check that a result is a completed run whose state holds `count` == expected (and
    `more` keys with those values)."""
    def check(result: Any) -> None:
        state = result.shared_state
        assert result.status == "completed" and state.get("count") == expected, result
        assert all(state.get(k) == v for k, v in more.items()), result

    return check


# -- LangGraph ----------------------------------------------------------------------------

class CountState(TypedDict):
    count: Annotated[int, operator.add]


class GateState(TypedDict, total=False):
    count: Annotated[int, operator.add]
    answer: str


def _node(state: CountState) -> dict[str, int]:
    return {"count": 1}


async def _anode(state: CountState) -> dict[str, int]:
    return {"count": 1}


def _ask(state: GateState) -> dict[str, str]:
    from langgraph.types import interrupt

    return {"answer": interrupt("Go on?")}


def lg_config(thread: str, steps: int) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}, "recursion_limit": steps + 10}


def lg_chain(length: int, checkpointer: Any, *, is_async: bool = False) -> Any:
    from langgraph.graph import END, START, StateGraph

    g = StateGraph(CountState)
    fn = _anode if is_async else _node
    for i in range(length):
        g.add_node(f"s{i}", fn)
    g.add_edge(START, "s0")
    for i in range(length - 1):
        g.add_edge(f"s{i}", f"s{i + 1}")
    g.add_edge(f"s{length - 1}", END)
    return g.compile(checkpointer=checkpointer)


def lg_fanout(width: int, checkpointer: Any, *, is_async: bool = False) -> Any:
    """fan → `width` branches → join, the join waiting for every branch."""
    from langgraph.graph import END, START, StateGraph

    g = StateGraph(CountState)
    fn = _anode if is_async else _node
    g.add_node("fan", lambda state: {})
    branch_ids = [f"b{i}" for i in range(width)]
    for b in branch_ids:
        g.add_node(b, fn)
        g.add_edge("fan", b)
    g.add_node("join", fn)
    g.add_edge(branch_ids, "join")
    g.add_edge(START, "fan")
    g.add_edge("join", END)
    return g.compile(checkpointer=checkpointer)


def lg_gate(checkpointer: Any) -> Any:
    """s0 → ask → s1, where `ask` calls `interrupt()`: `invoke` returns at the interrupt, and
    `invoke(Command(resume=answer))` on the same thread runs `ask` again (now returning the
    answer) and then s1."""
    from langgraph.graph import END, START, StateGraph

    g = StateGraph(GateState)
    g.add_node("s0", _node)
    g.add_node("ask", _ask)
    g.add_node("s1", _node)
    g.add_edge(START, "s0")
    g.add_edge("s0", "ask")
    g.add_edge("ask", "s1")
    g.add_edge("s1", END)
    return g.compile(checkpointer=checkpointer)


def lg_sqlite(path: str, synchronous: str | None = SYNCHRONOUS) -> tuple[Any, Any]:
    """LangGraph's `SqliteSaver` on its own connection (WAL, as `setup()` sets it), with
    `PRAGMA synchronous` set unless None (then SQLite's default, FULL, as shipped)."""
    import sqlite3

    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(path, check_same_thread=False)
    saver = SqliteSaver(conn)
    saver.setup()
    if synchronous is not None:
        conn.execute(f"PRAGMA synchronous={synchronous}")
    return saver, conn


# -- pydantic-graph -----------------------------------------------------------------------

@dataclass
class PgState:
    count: int = 0


async def _pg_add(ctx: Any) -> None:
    ctx.state.count += 1


def pg_chain(length: int) -> Any:
    """`length` steps in a row, start → s0 → … → end, each adding 1 to `state.count`. Nothing
    is persisted: pydantic-graph keeps a run's state in memory only."""
    from pydantic_graph import GraphBuilder

    g: Any = GraphBuilder(name=f"chain{length}", state_type=PgState)
    steps = [g.step(_pg_add, node_id=f"s{i}") for i in range(length)]
    g.add_edge(g.start_node, steps[0])
    for a, b in zip(steps, steps[1:]):
        g.add_edge(a, b)
    g.add_edge(steps[-1], g.end_node)
    return g.build()
