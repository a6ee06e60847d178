"""Run the same no-op workloads on this engine, on LangGraph and on pydantic-graph, in one
process, and print per-run latency, per-step cost, the human-gate round trip, throughput under
concurrency, memory per held run and bytes stored per step, against the targets of issue 9.

    PYTHONPATH=. python benchmarks/bench_runtime.py [--quick] [--no-memory]

Durable means: the step's checkpoint is committed to SQLite (WAL, synchronous=NORMAL on both
sides) before the next step starts. LangGraph runs with `durability="sync"` for that reason
(its default, "async", writes checkpoints in the background while the next step runs).
pydantic-graph has no durable store at all: it runs the chain in memory, and is the reference
for what the orchestration itself costs without persistence.

This engine is driven through the public API only (`orch.open_engine`, `Engine.run`,
`start`, `wait`, `resume`). A peer that is not installed is skipped, with a line saying so.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import bench_memory
import workloads
from report import machine, table, us
from runtime_report import Figures, Phases, issue_table, more_table
from sqlite_size import journal_mode, lg_stored, ours_stored, pragma, stored_rows
from workloads import (
    CHAIN, DURABLE_CASES as CASES, GATE_ANSWER, LANGGRAPH, LONG_CHAIN, PYDANTIC_GRAPH, SYNCHRONOUS, WIDTH, PgState,
    chain_yaml, fanout_yaml, gate_yaml, lg_chain, lg_config, lg_fanout, lg_gate, lg_sqlite, open_ours, ours_check,
    peer_available, peer_version, pg_chain, skipped,
)

import orch

GRAPHS = {"chain5": chain_yaml("chain5", CHAIN), "chain200": chain_yaml("chain200", LONG_CHAIN),
          "fan64": fanout_yaml("fan64", WIDTH), "gate": gate_yaml("gate")}
EXPECTED = {"chain5": CHAIN, "chain200": LONG_CHAIN, "fan64": WIDTH + 1, "gate": 2}
LG_STEPS = {"chain5": CHAIN, "chain200": LONG_CHAIN, "fan64": 3, "gate": 3}  # supersteps, for recursion_limit
PER = {"chain200": LONG_CHAIN}  # the 200-step chain is reported per step


@dataclass(frozen=True)
class Sizes:
    """How many runs each case measures (after `warm` unmeasured ones)."""

    warm: int
    chain: int
    long_chain: int
    fanout: int
    gate: int
    concurrent: int
    concurrent_warm: int
    stored: int
    rounds: int  # alternating rounds of the durable cases
    collect: bool  # gc.collect() before each block of runs (~65 ms each with the peers loaded)


FULL = Sizes(warm=30, chain=400, long_chain=16, fanout=64, gate=400, concurrent=1000, concurrent_warm=50,
             stored=400, rounds=8, collect=True)
QUICK = Sizes(warm=3, chain=16, long_chain=2, fanout=4, gate=16, concurrent=50, concurrent_warm=5, stored=10,
              rounds=2, collect=False)


def runs_of(sizes: Sizes, case: str) -> int:
    return {"chain5": sizes.chain, "chain200": sizes.long_chain, "fan64": sizes.fanout, "gate": sizes.gate}[case]


Once = Callable[[], Awaitable[Phases]]


# -- the durable cases, alternating ---------------------------------------------------------

def ours_cases(engine: orch.Engine) -> dict[str, Once]:
    def run(case: str) -> Once:
        async def once() -> Phases:
            t = time.perf_counter()
            result = await engine.run(case)
            elapsed = time.perf_counter() - t
            ours_check(EXPECTED[case])(result)
            return {"run": elapsed}

        return once

    async def gate() -> Phases:
        t0 = time.perf_counter()
        run_id = await engine.start("gate")
        t1 = time.perf_counter()
        paused = await engine.wait(run_id)
        t2 = time.perf_counter()
        await engine.resume(run_id, GATE_ANSWER)
        t3 = time.perf_counter()
        done = await engine.wait(run_id)
        t4 = time.perf_counter()
        assert paused.status == "paused" and paused.shared_state.get("count") == 1, paused
        ours_check(2, answer=GATE_ANSWER)(done)
        return {"run": t4 - t0, "start": t1 - t0, "wait_paused": t2 - t1, "resume": t3 - t2, "wait_done": t4 - t3,
                "to_paused": t2 - t0, "to_done": t4 - t2}

    return {**{c: run(c) for c in CASES if c != "gate"}, "gate": gate}


def lg_cases(saver: Any) -> dict[str, Once]:
    from langgraph.types import Command

    graphs = {"chain5": lg_chain(CHAIN, saver), "chain200": lg_chain(LONG_CHAIN, saver),
              "fan64": lg_fanout(WIDTH, saver)}
    gate_graph = lg_gate(saver)
    threads = iter(range(10**9))

    def run(case: str) -> Once:
        graph = graphs[case]

        async def once() -> Phases:
            config = lg_config(f"{case}-{next(threads)}", LG_STEPS[case])
            t = time.perf_counter()
            out = graph.invoke({"count": 0}, config, durability="sync")
            elapsed = time.perf_counter() - t
            assert out == {"count": EXPECTED[case]}, out
            return {"run": elapsed}

        return once

    async def gate() -> Phases:
        config = lg_config(f"gate-{next(threads)}", LG_STEPS["gate"])
        t0 = time.perf_counter()
        paused = gate_graph.invoke({"count": 0}, config, durability="sync")
        t1 = time.perf_counter()
        done = gate_graph.invoke(Command(resume=GATE_ANSWER), config, durability="sync")
        t2 = time.perf_counter()
        assert paused.get("count") == 1 and "__interrupt__" in paused, paused
        assert done == {"count": 2, "answer": GATE_ANSWER}, done
        return {"run": t2 - t0, "to_paused": t1 - t0, "to_done": t2 - t1}

    return {**{c: run(c) for c in graphs}, "gate": gate}


def pg_cases() -> dict[str, Once]:
    graph = pg_chain(CHAIN)

    async def chain5() -> Phases:
        state = PgState()
        t = time.perf_counter()
        await graph.run(state=state)
        elapsed = time.perf_counter() - t
        assert state.count == CHAIN, state
        return {"run": elapsed}

    return {"chain5": chain5}


async def durable_rounds(disk: str, sizes: Sizes, have_lg: bool,
                         have_pg: bool) -> tuple[dict[str, dict[str, Phases]], dict[str, str]]:
    """The durable cases on every side in alternating rounds, each round one block of runs per
    side, the side going first rotating and garbage collected before each block, so a slow
    stretch of the shared machine (its disk mostly) falls on every side alike instead of on
    whichever ran then. Median seconds per side, case and phase (per step for the 200-step
    chain), and LangGraph's SQLite settings as its connection reports them."""
    engine = await open_ours(os.path.join(disk, "ours.db"), GRAPHS)
    conn = None
    try:
        sides: dict[str, dict[str, Once]] = {"ours": ours_cases(engine)}
        if have_lg:
            saver, conn = lg_sqlite(os.path.join(disk, "lg.db"))
            sides["lg"] = lg_cases(saver)
        if have_pg:
            sides["pg"] = pg_cases()
        samples: dict[str, dict[str, dict[str, list[float]]]] = {s: {} for s in sides}
        for case in CASES:
            for side in sides.values():
                if case in side:
                    for _ in range(1 if case == "chain200" else sizes.warm):
                        await side[case]()
        for r in range(sizes.rounds):
            for case in CASES:
                per_round = max(1, runs_of(sizes, case) // sizes.rounds)
                order = [s for s in sides if case in sides[s]]
                order = order[r % len(order):] + order[:r % len(order)]
                for name in order:
                    if sizes.collect:
                        gc.collect()  # no side pays for another's garbage
                    for _ in range(per_round):
                        for phase, seconds in (await sides[name][case]()).items():
                            samples[name].setdefault(case, {}).setdefault(phase, []).append(seconds)
        out: dict[str, dict[str, Phases]] = {}
        for name, cases in samples.items():
            out[name] = {case: {phase: statistics.median(v) / PER.get(case, 1) for phase, v in phases.items()}
                         for case, phases in cases.items()}
        lg_sqlite_settings = {} if conn is None else {"synchronous": pragma(conn, "synchronous"),
                                                      "journal": pragma(conn, "journal_mode")}
        return out, lg_sqlite_settings
    finally:
        await engine.close()
        if conn is not None:
            conn.close()


# -- the other cases ------------------------------------------------------------------------

async def median_of(fn: Callable[[], Awaitable[Any]], warm: int, n: int, check: Callable[[Any], None]) -> float:
    """Median seconds of `n` sequential calls, after `warm` unmeasured ones."""
    for _ in range(warm):
        check(await fn())
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        out = await fn()
        samples.append(time.perf_counter() - t)
        check(out)
    return statistics.median(samples)


async def ours_not_durable(path: str, sizes: Sizes) -> float:
    """The 5-step chain with SQLite's synchronous=OFF (on tmpfs where there is one)."""
    engine = await open_ours(path, {"chain5": GRAPHS["chain5"]}, synchronous="OFF")
    try:
        return await median_of(lambda: engine.run("chain5"), sizes.warm, sizes.chain, ours_check(CHAIN))
    finally:
        await engine.close()


async def ours_concurrent(path: str, sizes: Sizes) -> float:
    """Runs per second of `sizes.concurrent` 5-step runs started at once."""
    engine = await open_ours(path, {"chain5": GRAPHS["chain5"]})
    check = ours_check(CHAIN)
    try:
        for r in await asyncio.gather(*(engine.run("chain5") for _ in range(sizes.concurrent_warm))):
            check(r)
        t = time.perf_counter()
        results = await asyncio.gather(*(engine.run("chain5") for _ in range(sizes.concurrent)))
        elapsed = time.perf_counter() - t
        for r in results:
            check(r)
        return sizes.concurrent / elapsed
    finally:
        await engine.close()


async def pg_concurrent(sizes: Sizes) -> float:
    graph = pg_chain(CHAIN)
    for state in [PgState() for _ in range(sizes.concurrent_warm)]:
        await graph.run(state=state)
    states = [PgState() for _ in range(sizes.concurrent)]
    t = time.perf_counter()
    await asyncio.gather(*(graph.run(state=s) for s in states))
    elapsed = time.perf_counter() - t
    assert all(s.count == CHAIN for s in states)
    return sizes.concurrent / elapsed


def lg_sync_chain(saver: Any, sizes: Sizes, **kw: Any) -> float:
    """Median seconds of LangGraph's 5-step chain with `invoke` on `saver` (None: none)."""
    graph = lg_chain(CHAIN, saver)
    counter = iter(range(10**9))

    async def once() -> Any:
        return graph.invoke({"count": 0}, lg_config(f"t{next(counter)}", CHAIN), **kw)

    def check(out: Any) -> None:
        assert out == {"count": CHAIN}, out

    return asyncio.run(median_of(once, sizes.warm, sizes.chain, check))


def lg_reference(disk: str, sizes: Sizes) -> dict[str, Any]:
    """The chain on LangGraph's in-memory saver, with no checkpointer, and with SqliteSaver as
    shipped (SQLite's default synchronous=FULL, LangGraph's default durability "async")."""
    from langgraph.checkpoint.memory import InMemorySaver

    saver, conn = lg_sqlite(os.path.join(disk, "lg-default.db"), synchronous=None)
    try:
        shipped = lg_sync_chain(saver, sizes)
        shipped_sync = pragma(conn, "synchronous")
    finally:
        conn.close()
    return {"memory": lg_sync_chain(InMemorySaver(), sizes, durability="sync"), "none": lg_sync_chain(None, sizes),
            "shipped": shipped, "shipped_synchronous": shipped_sync}


async def lg_async(path: str, sizes: Sizes) -> dict[str, Any]:
    """The async saver: sequential 5-step runs, then `sizes.concurrent` runs at once."""
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    async with AsyncSqliteSaver.from_conn_string(path) as saver:
        await saver.setup()
        await saver.conn.execute(f"PRAGMA synchronous={SYNCHRONOUS}")
        graph = lg_chain(CHAIN, saver, is_async=True)
        counter = iter(range(10**9))

        async def once() -> Any:
            return await graph.ainvoke({"count": 0}, lg_config(f"a{next(counter)}", CHAIN), durability="sync")

        def check(out: Any) -> None:
            assert out == {"count": CHAIN}, out

        latency = await median_of(once, sizes.warm, sizes.chain, check)
        for out in await asyncio.gather(*(once() for _ in range(sizes.concurrent_warm))):
            check(out)
        t = time.perf_counter()
        outs = await asyncio.gather(*(once() for _ in range(sizes.concurrent)))
        rate = sizes.concurrent / (time.perf_counter() - t)
        for out in outs:
            check(out)
        return {"chain5": latency, "concurrent": rate}


def memory(disk: str, quick: bool, have_lg: bool) -> dict[str, float | None]:
    """bench_memory.py's cases (a) in flight and (d) the looping step, under tracemalloc."""
    sizes = bench_memory.QUICK if quick else bench_memory.FULL
    k0, k = sizes.short_long, sizes.long
    tracemalloc.start(bench_memory.SITE_FRAMES)
    try:
        gc.collect()
        ours_a = asyncio.run(bench_memory.ours_inflight(os.path.join(disk, "mem-ours-a.db"), sizes, 0))
        gc.collect()
        ours_d = asyncio.run(bench_memory.ours_long(os.path.join(disk, "mem-ours-d.db"), sizes, 0, kinds=("loop",)))
        lg_a: dict[str, Any] = {}
        lg_d: dict[Any, Any] = {}
        if have_lg:
            gc.collect()
            lg_a = asyncio.run(bench_memory.lg_inflight(os.path.join(disk, "mem-lg-a.db"), sizes, 0))
            gc.collect()
            lg_d = bench_memory.lg_long(os.path.join(disk, "mem-lg-d.db"), sizes, 0, kinds=("loop",))
    finally:
        tracemalloc.stop()

    def growth(side: dict[Any, Any]) -> float:
        return (side["loop", k]["peak"] - side["loop", k0]["peak"]) / (k - k0)

    return {"inflight": ours_a["inflight"], "lg_inflight": lg_a["inflight"] if have_lg else None,
            "loop": growth(ours_d), "lg_loop": growth(lg_d) if have_lg else None, "held": sizes.inflight,
            "k0": k0, "k": k}


# -- measuring everything --------------------------------------------------------------------

def measure(sizes: Sizes, quick: bool, with_memory: bool, have_lg: bool, have_pg: bool) -> Figures:
    disk = tempfile.mkdtemp(prefix="orch-bench-")
    ram = tempfile.mkdtemp(prefix="orch-bench-", dir="/dev/shm") if os.path.isdir("/dev/shm") else disk
    try:
        gc.collect()
        durable, lg_sqlite_settings = asyncio.run(durable_rounds(disk, sizes, have_lg, have_pg))
        gc.collect()
        ours_off = asyncio.run(ours_not_durable(os.path.join(ram, "ours-off.db"), sizes))
        gc.collect()
        ours_rate = asyncio.run(ours_concurrent(os.path.join(disk, "ours-conc.db"), sizes))
        gc.collect()
        ours_bytes = asyncio.run(ours_stored(os.path.join(disk, "ours-size.db"), sizes.stored))
        fig = Figures(sizes, have_lg, have_pg, durable["ours"], durable.get("lg", {}), durable.get("pg", {}),
                      lg_sqlite_settings, journal_mode(os.path.join(disk, "ours.db")), ours_off, ours_rate, ours_bytes)
        if have_lg:
            gc.collect()
            fig.lg_ref = lg_reference(disk, sizes)
            gc.collect()
            fig.lg_aio = asyncio.run(lg_async(os.path.join(disk, "lg-async.db"), sizes))
            fig.lg_bytes = lg_stored(os.path.join(disk, "lg-size.db"), sizes.stored)
        if have_pg:
            gc.collect()
            fig.pg_rate = asyncio.run(pg_concurrent(sizes))
        if with_memory:
            gc.collect()
            fig.memory = memory(disk, quick, have_lg)
        return fig
    finally:
        shutil.rmtree(disk, ignore_errors=True)
        if ram != disk:
            shutil.rmtree(ram, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few runs of each case: a smoke run of a few seconds")
    parser.add_argument("--no-memory", action="store_true", help="leave out the two memory rows (tracemalloc)")
    parser.add_argument("--observe", choices=["off", "server", "traced"], default="off",
                        help="watch this engine's runs as a library (off), as a server does with tracing off "
                             "(logs, metrics), or with tracing on too (spans exported to nowhere)")
    args = parser.parse_args()
    workloads.OBSERVE = args.observe
    sizes = QUICK if args.quick else FULL
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    have_lg, have_pg = peer_available(LANGGRAPH), peer_available(PYDANTIC_GRAPH)
    f = measure(sizes, args.quick, not args.no_memory, have_lg, have_pg)

    versions = "".join(f" · {p.lower()} {peer_version(p)}" for p, have in ((LANGGRAPH, have_lg),
                                                                         (PYDANTIC_GRAPH, have_pg)) if have)
    print(machine("quick" if args.quick else "full", load_before, versions))
    if args.observe != "off":
        print(f"this engine observed: {args.observe} (--observe)")
    lg_text = (f", LangGraph={f.lg_sqlite['synchronous']} (journal {f.lg_sqlite['journal']}), LangGraph "
               "durability=\"sync\"") if have_lg else ""
    print(f"durable: SQLite journal {f.ours_journal}, synchronous this engine={SYNCHRONOUS} "
          f"(Settings.sqlite_synchronous){lg_text}; database files in {tempfile.gettempdir()}; "
          "pydantic-graph persists nothing")
    for peer, have in ((LANGGRAPH, have_lg), (PYDANTIC_GRAPH, have_pg)):
        if not have:
            print(skipped(peer))
    print()
    print(issue_table(f))
    print()
    print(more_table(f))
    print()
    print(stored_rows(f.ours_bytes, f.lg_bytes, sizes.stored))
    if have_lg:
        print()
        ref = [
            ["LangGraph: 5-step chain, no checkpointer", "µs/run", us(f.lg_ref["none"])],
            [f"LangGraph: 5-step chain, SqliteSaver as shipped (synchronous={f.lg_ref['shipped_synchronous']}, "
             "durability=\"async\")", "µs/run", us(f.lg_ref["shipped"])],
        ]
        print(table(["reference figures (not like for like)", "unit", "value"], ref))
    print(f"\ntotal {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
