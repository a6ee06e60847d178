"""Run the same no-op workloads on this engine and on LangGraph, in one process, and print
per-run latency, per-step cost, throughput under concurrency and bytes stored per step.

    PYTHONPATH=. python benchmarks/bench_runtime.py [--quick]

Durable means: the step's checkpoint is committed to SQLite (WAL, synchronous=NORMAL on both
sides) before the next step starts. LangGraph runs with `durability="sync"` for that reason
(its default, "async", writes checkpoints in the background while the next step runs).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from sqlite_size import checkpointed_size, pragma, row_payload
from workloads import chain_yaml, fanout_yaml, lg_chain, lg_fanout, noop

from orch.run import scheduler
from orch.definition.compile import CompiledGraph, compile_catalog
from orch.definition.loader import Catalog, load_text
from orch.run.engine import Engine
from orch.services import build_services
from orch.settings import Settings
from orch.store.sql import SQLStore

CHAIN, LONG_CHAIN, WIDTH = 5, 200, 64
GRAPHS = {"chain5": chain_yaml("chain5", CHAIN), "chain200": chain_yaml("chain200", LONG_CHAIN),
          "fan64": fanout_yaml("fan64", WIDTH)}
OUR_TABLES = ("runs", "step_records", "events")
LG_TABLES = ("checkpoints", "writes")


@dataclass(frozen=True)
class Sizes:
    """How many runs each case measures (after `warm` unmeasured ones)."""

    warm: int
    chain: int
    long_chain: int
    fanout: int
    concurrent: int
    stored: int


FULL = Sizes(warm=30, chain=400, long_chain=16, fanout=64, concurrent=1000, stored=400)
QUICK = Sizes(warm=10, chain=96, long_chain=8, fanout=16, concurrent=200, stored=100)


# -- this engine ----------------------------------------------------------------------------

def compiled_graphs() -> dict[str, CompiledGraph]:
    catalog = Catalog()
    for gid, text in GRAPHS.items():
        load_text(text, f"{gid}.yaml", catalog)
    out = {}
    for gid, result in compile_catalog(catalog).items():
        assert result.graph is not None, [str(p) for p in result.problems]
        out[gid] = result.graph
    return out


async def open_engine(path: str, synchronous: str) -> Engine:
    url = f"sqlite:///{path}"
    settings = Settings(database_url=url, sandbox_root=os.path.join(os.path.dirname(path), "sandbox"),
                        sqlite_synchronous=synchronous)
    engine = Engine(SQLStore(url, synchronous=synchronous), build_services(settings), executors={"agent": noop})
    await engine.open()
    for graph in compiled_graphs().values():
        await engine.add_graph(graph)
    return engine


def store_synchronous(engine: Engine) -> str:
    with engine.store._engine.connect() as conn:  # the pool applies the same pragmas as the writer
        return pragma(conn.connection.dbapi_connection, "synchronous")  # type: ignore[arg-type]


async def timed(fn: Callable[[], Awaitable[Any]], warm: int, n: int, check: Callable[[Any], None]) -> float:
    """Median seconds of `n` sequential calls, after `warm` unmeasured ones."""
    for _ in range(warm):
        check(await fn())
    times = []
    for _ in range(n):
        t = time.perf_counter()
        out = await fn()
        times.append(time.perf_counter() - t)
        check(out)
    return statistics.median(times)


def ours_check(expected: int) -> Callable[[Any], None]:
    def check(result: Any) -> None:
        assert result.status == "completed" and result.shared_state == {"count": expected}, result

    return check


async def ours_latency(path: str, synchronous: str, sizes: Sizes, cases: tuple[str, ...]) -> dict[str, Any]:
    engine = await open_engine(path, synchronous)
    try:
        out: dict[str, Any] = {"synchronous": store_synchronous(engine)}
        if "chain5" in cases:
            out["chain5"] = await timed(lambda: engine.run("chain5"), sizes.warm, sizes.chain, ours_check(CHAIN))
        if "chain200" in cases:
            out["chain200"] = await timed(lambda: engine.run("chain200"), 1, sizes.long_chain,
                                          ours_check(LONG_CHAIN)) / LONG_CHAIN
        if "fan64" in cases:
            out["fan64"] = await timed(lambda: engine.run("fan64"), sizes.warm, sizes.fanout, ours_check(WIDTH + 1))
        return out
    finally:
        await engine.close()


ROUNDS = 8


async def durable_latency(disk: str, sizes: Sizes, cases: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The durable cases on both engines in alternating rounds (which side goes first
    alternates too), so a slow stretch of the shared machine, its disk mostly, falls on both
    alike instead of on whichever side happened to run then. Median per run (per step for the
    200-step chain)."""
    engine = await open_engine(os.path.join(disk, "ours.db"), "NORMAL")
    saver, conn = lg_sqlite(os.path.join(disk, "lg.db"), "NORMAL")
    plan = {  # case: (expected count, LangGraph graph, its steps, runs, warm-up runs, steps per run)
        "chain5": (CHAIN, lg_chain(CHAIN, saver), CHAIN, sizes.chain, sizes.warm, 1),
        "chain200": (LONG_CHAIN, lg_chain(LONG_CHAIN, saver), LONG_CHAIN, sizes.long_chain, 1, LONG_CHAIN),
        "fan64": (WIDTH + 1, lg_fanout(WIDTH, saver), 3, sizes.fanout, sizes.warm, 1),
    }
    threads = iter(range(10**9))

    async def ours_once(case: str) -> float:
        t = time.perf_counter()
        result = await engine.run(case)
        elapsed = time.perf_counter() - t
        ours_check(plan[case][0])(result)
        return elapsed

    def lg_once(case: str) -> float:
        expected, graph, steps = plan[case][:3]
        t = time.perf_counter()
        out = graph.invoke({"count": 0}, lg_config(f"{case}-{next(threads)}", steps), durability="sync")
        elapsed = time.perf_counter() - t
        assert out == {"count": expected}, out
        return elapsed

    try:
        ours_times: dict[str, list[float]] = {c: [] for c in cases}
        lg_times: dict[str, list[float]] = {c: [] for c in cases}
        for case in cases:
            for _ in range(plan[case][4]):
                await ours_once(case)
                lg_once(case)
        for r in range(ROUNDS):
            for case in cases:
                per_round = max(1, plan[case][3] // ROUNDS)
                ours_first = r % 2 == 0
                if not ours_first:
                    gc.collect()  # neither side pays for the other's garbage
                    lg_times[case] += [lg_once(case) for _ in range(per_round)]
                gc.collect()
                ours_times[case] += [await ours_once(case) for _ in range(per_round)]
                if ours_first:
                    gc.collect()
                    lg_times[case] += [lg_once(case) for _ in range(per_round)]
        ours: dict[str, Any] = {"synchronous": store_synchronous(engine)}
        lg: dict[str, Any] = {"synchronous": pragma(conn, "synchronous"), "journal": pragma(conn, "journal_mode")}
        for case in cases:
            per = plan[case][5]
            ours[case] = statistics.median(ours_times[case]) / per
            lg[case] = statistics.median(lg_times[case]) / per
        return ours, lg
    finally:
        await engine.close()
        conn.close()


async def ours_concurrent(path: str, n: int) -> float:
    engine = await open_engine(path, "NORMAL")
    check = ours_check(CHAIN)
    try:
        for r in await asyncio.gather(*(engine.run("chain5") for _ in range(50))):
            check(r)
        t = time.perf_counter()
        results = await asyncio.gather(*(engine.run("chain5") for _ in range(n)))
        elapsed = time.perf_counter() - t
        for r in results:
            check(r)
        return n / elapsed
    finally:
        await engine.close()


async def ours_stored(path: str, runs: int) -> dict[str, Any]:
    engine = await open_engine(path, "NORMAL")
    await engine.close()
    before, rows_before = checkpointed_size(path), row_payload(path, OUR_TABLES)
    engine = await open_engine(path, "NORMAL")
    try:
        for _ in range(runs):
            ours_check(CHAIN)(await engine.run("chain5"))
    finally:
        await engine.close()
    return {"pages": checkpointed_size(path) - before, "rows": _row_growth(row_payload(path, OUR_TABLES), rows_before)}


def scheduler_per_step(graph: CompiledGraph, reps: int) -> float:
    """Seconds per step of the scheduler's bookkeeping alone: loop guard, iteration count and
    `advance` over the compiled graph; no executor, no event, no store."""
    steps = 0
    t = time.perf_counter()
    for _ in range(reps):
        f = scheduler.start(graph)
        while f.tokens:
            tok = next(iter(f.tokens.values()))
            scheduler.loop_guard(graph, f, tok.step_id)
            scheduler.count_iteration(f, tok.step_id)
            scheduler.advance(graph, f, tok, None)
            steps += 1
    return (time.perf_counter() - t) / steps


# -- LangGraph ------------------------------------------------------------------------------

def lg_config(thread: str, steps: int) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}, "recursion_limit": steps + 10}


def lg_timed(graph: Any, label: str, steps: int, expected: int, warm: int, n: int, **kw: Any) -> float:
    def once(i: int) -> float:
        t = time.perf_counter()
        out = graph.invoke({"count": 0}, lg_config(f"{label}-{i}", steps), **kw)
        elapsed = time.perf_counter() - t
        assert out == {"count": expected}, out
        return elapsed

    for i in range(warm):
        once(-1 - i)
    return statistics.median(once(i) for i in range(n))


def lg_sqlite(path: str, synchronous: str | None) -> tuple[Any, sqlite3.Connection]:
    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(path, check_same_thread=False)
    saver = SqliteSaver(conn)
    saver.setup()
    if synchronous is not None:
        conn.execute(f"PRAGMA synchronous={synchronous}")
    return saver, conn


def lg_latency(path: str, sizes: Sizes, cases: tuple[str, ...], synchronous: str | None = "NORMAL",
               durability: str | None = "sync") -> dict[str, Any]:
    saver, conn = lg_sqlite(path, synchronous)
    kw = {"durability": durability} if durability else {}
    try:
        out: dict[str, Any] = {"synchronous": pragma(conn, "synchronous"), "journal": pragma(conn, "journal_mode")}
        if "chain5" in cases:
            out["chain5"] = lg_timed(lg_chain(CHAIN, saver), "c5", CHAIN, CHAIN, sizes.warm, sizes.chain, **kw)
        if "chain200" in cases:
            out["chain200"] = lg_timed(lg_chain(LONG_CHAIN, saver), "c200", LONG_CHAIN, LONG_CHAIN, 1,
                                       sizes.long_chain, **kw) / LONG_CHAIN
        if "fan64" in cases:
            out["fan64"] = lg_timed(lg_fanout(WIDTH, saver), "f64", 3, WIDTH + 1, sizes.warm, sizes.fanout, **kw)
        return out
    finally:
        conn.close()


def lg_in_memory(sizes: Sizes) -> dict[str, float]:
    from langgraph.checkpoint.memory import InMemorySaver

    return {
        "memory": lg_timed(lg_chain(CHAIN, InMemorySaver()), "m", CHAIN, CHAIN, sizes.warm, sizes.chain,
                           durability="sync"),
        "none": lg_timed(lg_chain(CHAIN, None), "n", CHAIN, CHAIN, sizes.warm, sizes.chain),
    }


async def lg_async(path: str, sizes: Sizes) -> dict[str, Any]:
    """The async saver: sequential 5-step runs, then `sizes.concurrent` runs at once."""
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    async with AsyncSqliteSaver.from_conn_string(path) as saver:
        await saver.setup()
        await saver.conn.execute("PRAGMA synchronous=NORMAL")
        async with saver.conn.execute("PRAGMA synchronous") as cur:
            sync_level = {0: "OFF", 1: "NORMAL", 2: "FULL"}[(await cur.fetchone())[0]]
        graph = lg_chain(CHAIN, saver, is_async=True)
        counter = iter(range(10**9))

        async def once() -> Any:
            return await graph.ainvoke({"count": 0}, lg_config(f"a{next(counter)}", CHAIN), durability="sync")

        def check(out: Any) -> None:
            assert out == {"count": CHAIN}, out

        latency = await timed(once, sizes.warm, sizes.chain, check)
        for out in await asyncio.gather(*(once() for _ in range(50))):
            check(out)
        t = time.perf_counter()
        outs = await asyncio.gather(*(once() for _ in range(sizes.concurrent)))
        rate = sizes.concurrent / (time.perf_counter() - t)
        for out in outs:
            check(out)
        return {"chain5": latency, "concurrent": rate, "synchronous": sync_level}


def lg_stored(path: str, runs: int) -> dict[str, Any]:
    saver, conn = lg_sqlite(path, "NORMAL")
    conn.close()
    before, rows_before = checkpointed_size(path), row_payload(path, LG_TABLES)
    saver, conn = lg_sqlite(path, "NORMAL")
    graph = lg_chain(CHAIN, saver)
    try:
        for i in range(runs):
            assert graph.invoke({"count": 0}, lg_config(f"s{i}", CHAIN), durability="sync") == {"count": CHAIN}
    finally:
        conn.close()
    return {"pages": checkpointed_size(path) - before, "rows": _row_growth(row_payload(path, LG_TABLES), rows_before)}


def _row_growth(after: dict[str, tuple[int, int]], before: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    return {t: (after[t][0] - before[t][0], after[t][1] - before[t][1]) for t in after}


# -- the report -----------------------------------------------------------------------------

def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f}" if seconds < 1e-4 else f"{seconds * 1e6:,.0f}"


def times(x: float) -> str:
    return f"{x:.2f}×"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (well under 30 s)")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    disk = tempfile.mkdtemp(prefix="orch-bench-")
    ram = tempfile.mkdtemp(prefix="orch-bench-", dir="/dev/shm") if os.path.isdir("/dev/shm") else disk
    cases = ("chain5", "chain200", "fan64")
    try:
        gc.collect()
        ours, lg = asyncio.run(durable_latency(disk, sizes, cases))
        gc.collect()
        ours_off = asyncio.run(ours_latency(os.path.join(ram, "ours-off.db"), "OFF", sizes, ("chain5",)))
        gc.collect()
        lg_mem = lg_in_memory(sizes)
        gc.collect()
        lg_shipped = lg_latency(os.path.join(disk, "lg-default.db"), sizes, ("chain5",), synchronous=None,
                                durability=None)
        gc.collect()
        lg_aio = asyncio.run(lg_async(os.path.join(disk, "lg-async.db"), sizes))
        gc.collect()
        ours_rate = asyncio.run(ours_concurrent(os.path.join(disk, "ours-conc.db"), sizes.concurrent))
        gc.collect()
        ours_bytes = asyncio.run(ours_stored(os.path.join(disk, "ours-size.db"), sizes.stored))
        lg_bytes = lg_stored(os.path.join(disk, "lg-size.db"), sizes.stored)
        graphs = compiled_graphs()
        sched = {gid: scheduler_per_step(g, 20000 // len(g.steps) + 1) for gid, g in graphs.items()}
    finally:
        shutil.rmtree(disk, ignore_errors=True)
        if ram != disk:
            shutil.rmtree(ram, ignore_errors=True)

    import langgraph.version

    print(f"{dt.date.today().isoformat()} · Python {platform.python_version()} · SQLite {sqlite3.sqlite_version} · "
          f"langgraph {langgraph.version.__version__} · {os.cpu_count()} cores · {'quick' if args.quick else 'full'} run · "
          f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    print(f"durable: SQLite WAL, synchronous this engine={ours['synchronous']}, LangGraph={lg['synchronous']} "
          f"(journal {lg['journal']}), LangGraph durability=\"sync\"; database files in {tempfile.gettempdir()}")
    print()
    steps_stored = sizes.stored * CHAIN
    per_step = lambda b: b / steps_stored  # noqa: E731
    ours_rows = sum(b for _, b in ours_bytes["rows"].values())
    lg_rows = sum(b for _, b in lg_bytes["rows"].values())
    rows = [
        ["(a) 5-step chain, durable", "µs/run", us(ours["chain5"]), us(lg["chain5"]), times(lg["chain5"] / ours["chain5"])],
        ["(a) 5-step chain, durable, LangGraph async saver", "µs/run", us(ours["chain5"]), us(lg_aio["chain5"]),
         times(lg_aio["chain5"] / ours["chain5"])],
        ["(a) 5-step chain, no durable checkpoint ¹", "µs/run", us(ours_off["chain5"]), us(lg_mem["memory"]),
         times(lg_mem["memory"] / ours_off["chain5"])],
        ["(b) 200-step chain, durable", "µs/step", us(ours["chain200"]), us(lg["chain200"]),
         times(lg["chain200"] / ours["chain200"])],
        [f"(c) fan-out of {WIDTH} + join, durable", "µs/run", us(ours["fan64"]), us(lg["fan64"]),
         times(lg["fan64"] / ours["fan64"])],
        [f"(d) {sizes.concurrent:,} concurrent 5-step runs, durable ²", "runs/s", f"{ours_rate:,.0f}",
         f"{lg_aio['concurrent']:,.0f}", times(ours_rate / lg_aio["concurrent"])],
        ["(e) bytes per step, database pages ³", "B/step", f"{per_step(ours_bytes['pages']):,.0f}",
         f"{per_step(lg_bytes['pages']):,.0f}", times(lg_bytes["pages"] / ours_bytes["pages"])],
        ["(e) bytes per step, row payload ³", "B/step", f"{per_step(ours_rows):,.0f}", f"{per_step(lg_rows):,.0f}",
         times(lg_rows / ours_rows)],
    ]
    print(table(["case", "unit", "this engine", "LangGraph", "advantage"], rows))
    print("advantage: how many times faster (or smaller) this engine is; below 1× LangGraph wins.")
    print(f"¹ this engine: SQLite synchronous={ours_off['synchronous']} on tmpfs ({ram}), still one commit per step; "
          "LangGraph: InMemorySaver.")
    print("² this engine: asyncio.gather of Engine.run; LangGraph: AsyncSqliteSaver, asyncio.gather of ainvoke, "
          "one thread_id per run.")
    print(f"³ {sizes.stored:,} runs of the 5-step chain ({steps_stored:,} steps): growth of page_count × page_size "
          "after wal_checkpoint(TRUNCATE); row payload = text/blob lengths + 8 B per number.")
    print()
    detail = [[f"this engine: {t}", f"{n / sizes.stored:g}", f"{per_step(b):,.1f}"] for t, (n, b) in ours_bytes["rows"].items()]
    detail += [[f"LangGraph: {t}", f"{n / sizes.stored:g}", f"{per_step(b):,.1f}"] for t, (n, b) in lg_bytes["rows"].items()]
    print(table(["stored rows (e)", "rows/run", "payload B/step"], detail))
    print()
    ref = [
        ["this engine: scheduler bookkeeping only, 5-step chain (no executor, no I/O)", "µs/step", us(sched["chain5"])],
        ["this engine: scheduler bookkeeping only, 200-step chain", "µs/step", us(sched["chain200"])],
        [f"this engine: scheduler bookkeeping only, fan-out of {WIDTH} + join", "µs/step", us(sched["fan64"])],
        ["LangGraph: 5-step chain, no checkpointer", "µs/run", us(lg_mem["none"])],
        [f"LangGraph: 5-step chain, SqliteSaver as shipped (synchronous={lg_shipped['synchronous']}, "
         "durability=\"async\")", "µs/run", us(lg_shipped["chain5"])],
    ]
    print(table(["reference figures (not like for like)", "unit", "value"], ref))
    print(f"\ntotal {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
