"""bench_runtime.py's report: what one run measured, and the tables it prints, the first one
the table of issue 9 (every case against both peers, with its target)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from report import table, times, us
from workloads import CHAIN, DURABLE_CASES as CASES, LONG_CHAIN, WIDTH

IN_FLIGHT_TARGET = 4000  # B per held run: "memory in flight, per held run ≤ 4 KB"
Phases = dict[str, float]  # "run" (the whole run) and, for the gate, its phases; seconds


@dataclass
class Figures:
    """What one run of this script measured; a peer's figures are empty when it is missing."""

    sizes: Any  # bench_runtime.Sizes
    have_lg: bool
    have_pg: bool
    ours: dict[str, Phases]
    lg: dict[str, Phases]
    pg: dict[str, Phases]
    lg_sqlite: dict[str, str]
    ours_journal: str
    ours_off: float
    ours_rate: float
    ours_bytes: dict[str, Any]
    lg_ref: dict[str, Any] = field(default_factory=dict)
    lg_aio: dict[str, Any] = field(default_factory=dict)
    lg_bytes: dict[str, Any] | None = None
    pg_rate: float | None = None
    memory: dict[str, float | None] | None = None


def ratio(value: float | None) -> str:
    return "—" if value is None else times(value)


def met(*checks: bool | None) -> str:
    return " · ".join("—" if ok is None else ("yes" if ok else "no") for ok in checks)


def at_least(x: float | None, goal: float) -> bool | None:
    return None if x is None else x >= goal


def div(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def issue_table(f: Figures) -> str:
    """The table of issue 9: every case, against both peers where they run it, and the target."""
    ours, lg, g = f.ours, f.lg, f.ours["gate"]

    def lg_cells(case: str) -> list[str]:
        return [us(lg[case]["run"]), times(lg[case]["run"] / ours[case]["run"])] if f.have_lg else ["—", "—"]

    lg_x = {c: div(lg[c]["run"], ours[c]["run"]) if f.have_lg else None for c in CASES}
    pg_x = div(f.pg["chain5"]["run"], ours["chain5"]["run"]) if f.have_pg else None
    resume_steps = g["resume"] / ours["chain200"]["run"]
    lg_rate = f.lg_aio.get("concurrent")
    phase = ["", "", "", "", "", ""]
    rows = [
        ["(a) 5-step chain, durable", "µs/run", us(ours["chain5"]["run"]), *lg_cells("chain5"),
         us(f.pg["chain5"]["run"]) if f.have_pg else "—", ratio(pg_x), "≥ 10× · ≥ 1.2×",
         met(at_least(lg_x["chain5"], 10), at_least(pg_x, 1.2))],
        [f"(b) {LONG_CHAIN}-step chain, durable", "µs/step", us(ours["chain200"]["run"]), *lg_cells("chain200"),
         "—", "—", "≥ 8×", met(at_least(lg_x["chain200"], 8))],
        [f"(c) fan-out of {WIDTH} + join, durable", "µs/run", us(ours["fan64"]["run"]), *lg_cells("fan64"), "—", "—",
         "≥ 8×", met(at_least(lg_x["fan64"], 8))],
        ["gate round trip, durable ¹", "µs/run", us(g["run"]), *lg_cells("gate"), "—", "—", "≥ 6×",
         met(at_least(lg_x["gate"], 6))],
        ["  Engine.start", "µs", us(g["start"]), *phase],
        ["  Engine.wait → paused", "µs", us(g["wait_paused"]), *phase],
        ["  Engine.resume", "µs", us(g["resume"]), *phase],
        ["  Engine.wait → completed", "µs", us(g["wait_done"]), *phase],
        ["  Engine.resume in step costs ²", "steps", f"{resume_steps:.1f}", "", "", "", "", "≤ 2",
         met(resume_steps <= 2)],
        [f"(d) {f.sizes.concurrent:,} concurrent 5-step runs, durable ³", "runs/s", f"{f.ours_rate:,.0f}",
         f"{lg_rate:,.0f}" if lg_rate else "—", ratio(div(f.ours_rate, lg_rate)),
         f"{f.pg_rate:,.0f}" if f.pg_rate else "—", ratio(div(f.ours_rate, f.pg_rate)), "≥ 25× · ≥ 3×",
         met(at_least(div(f.ours_rate, lg_rate), 25), at_least(div(f.ours_rate, f.pg_rate), 3))],
    ]
    m = f.memory
    if m is not None:
        held, loop, lg_held, lg_loop = m["inflight"], m["loop"], m["lg_inflight"], m["lg_loop"]
        assert held is not None and loop is not None
        rows += [
            ["memory in flight, per held run ⁴", "KB", f"{held / 1000:,.1f}",
             f"{lg_held / 1000:,.1f}" if lg_held is not None else "—", ratio(div(lg_held, held)), "—", "—",
             "≤ 4 KB", met(held <= IN_FLIGHT_TARGET)],
            ["peak memory growth per iteration, looping step ⁵", "B", f"{loop:,.0f}",
             f"{lg_loop:,.0f}" if lg_loop is not None else "—", ratio(div(lg_loop, loop) if loop > 0 else None),
             "—", "—", "≤ LangGraph", met(None if lg_loop is None else loop <= lg_loop)],
        ]
    notes = [
        "ratio: how many times faster (for memory: smaller) this engine is than the peer; below 1× the peer wins. "
        "LangGraph: SqliteSaver, invoke, durability=\"sync\"; pydantic-graph: in memory, nothing persisted.",
        "¹ this engine: s0 → human gate → s1; Engine.start, Engine.wait (paused), Engine.resume, Engine.wait "
        "(completed), each phase's median below. LangGraph: s0 → a node calling interrupt() → s1; invoke, then "
        "invoke(Command(resume=…)) on the same thread_id.",
        f"² Engine.resume ÷ the cost of one step, (b) µs/step ({us(ours['chain200']['run'])} µs).",
        "³ this engine: asyncio.gather of Engine.run; LangGraph: AsyncSqliteSaver, asyncio.gather of ainvoke, one "
        "thread_id per run; pydantic-graph: asyncio.gather of Graph.run.",
    ]
    if m is not None:
        notes += [
            f"⁴ bench_memory.py (a): tracemalloc, {m['held']:,.0f} runs held inside their 3rd step at once, ÷ runs "
            "(KB = 1,000 B); LangGraph: AsyncSqliteSaver, ainvoke.",
            f"⁵ bench_memory.py (d): peak traced memory of one step looping {m['k']:,.0f} times minus looping "
            f"{m['k0']:,.0f} times, ÷ {m['k'] - m['k0']:,.0f}; LangGraph: a node with a conditional edge back to "
            "itself.",
        ]
    headers = ["case", "unit", "this engine", "LangGraph", "ratio", "pydantic-graph", "ratio", "target", "met"]
    return "\n".join([table(headers, rows), *notes])


def more_table(f: Figures) -> str:
    ours, g = f.ours, f.ours["gate"]
    lg_aio, lg_ref, lg_bytes = f.lg_aio, f.lg_ref, f.lg_bytes

    def lg_gate(phase: str) -> list[str]:
        if not f.have_lg:
            return ["—", "—"]
        return [us(f.lg["gate"][phase]), times(f.lg["gate"][phase] / g[phase])]

    steps = f.sizes.stored * CHAIN
    ours_rows = sum(b for _, b in f.ours_bytes["rows"].values())
    lg_rows = sum(b for _, b in lg_bytes["rows"].values()) if lg_bytes else None
    pg_run = f.pg["chain5"]["run"] if f.have_pg else None
    rows = [
        ["(a) 5-step chain, durable, LangGraph async saver", "µs/run", us(ours["chain5"]["run"]),
         us(lg_aio["chain5"]) if lg_aio else "—", ratio(div(lg_aio.get("chain5"), ours["chain5"]["run"])), "", ""],
        ["(a) 5-step chain, no durable checkpoint ⁶", "µs/run", us(f.ours_off),
         us(lg_ref["memory"]) if lg_ref else "—", ratio(div(lg_ref.get("memory"), f.ours_off)),
         us(pg_run) if pg_run else "—", ratio(div(pg_run, f.ours_off))],
        ["gate: start → paused", "µs", us(g["to_paused"]), *lg_gate("to_paused"), "", ""],
        ["gate: resume → completed", "µs", us(g["to_done"]), *lg_gate("to_done"), "", ""],
        ["(e) bytes per step, database pages ⁷", "B/step", f"{f.ours_bytes['pages'] / steps:,.0f}",
         f"{lg_bytes['pages'] / steps:,.0f}" if lg_bytes else "—",
         ratio(div(lg_bytes["pages"], f.ours_bytes["pages"]) if lg_bytes else None), "", ""],
        ["(e) bytes per step, row payload ⁷", "B/step", f"{ours_rows / steps:,.0f}",
         f"{lg_rows / steps:,.0f}" if lg_rows is not None else "—", ratio(div(lg_rows, ours_rows)), "", ""],
    ]
    notes = [
        "ratio: how many times faster (or smaller) this engine is; gate phases: this engine's medians of "
        "start + wait and of resume + wait, LangGraph's of its two invokes.",
        "⁶ this engine: SQLite synchronous=OFF on tmpfs, still one commit per step; LangGraph: InMemorySaver; "
        "pydantic-graph: as above.",
        f"⁷ {f.sizes.stored:,} runs of the 5-step chain: growth of page_count × page_size after "
        "wal_checkpoint(TRUNCATE); row payload = text/blob lengths + 8 B per number.",
    ]
    headers = ["more figures", "unit", "this engine", "LangGraph", "ratio", "pydantic-graph", "ratio"]
    return "\n".join([table(headers, rows), *notes])
