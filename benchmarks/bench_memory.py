"""Python heap per in-flight run, at the peak of a long run, and kept after runs end: this engine
and LangGraph on the same workloads, in one process, measured with `tracemalloc`.

    PYTHONPATH=. python benchmarks/bench_memory.py [--quick] [--sites N]

(a) 1,000 runs of the 5-step chain held at once inside their 3rd step; (b) what stays once they
completed; (c) the peak of one run of a 200- and of a 2,000-step chain; (d) the same for one
step looping 200 and 2,000 times; (e) what stays after the 2,000-step chain. `--sites N` also
prints the N source lines that allocated most in each case (where the memory goes).

tracemalloc counts the bytes of every block Python's allocators hand out (objects, their
buffers, the memory of C extensions that allocate through Python), while the allocation is
alive. It is deterministic, unlike RSS, which depends on the allocator's arenas, fragmentation
and what the OS has paged out; SQLite's own page cache and other C `malloc`s are not counted.
Every measurement is a difference between two readings taken after `gc.collect()`.

Durable means what it means in bench_runtime.py: SQLite in WAL mode with synchronous=NORMAL on
both sides, each step's checkpoint committed before the next step starts (LangGraph with
`durability="sync"`). Each engine writes its own database file in a temporary directory,
removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from typing import Any, Callable

from report import machine, table, where
from runtime_report import IN_FLIGHT_TARGET
from sqlite_size import journal_mode, pragma
from workloads import (
    LANGGRAPH, SYNCHRONOUS, CountState, StepResult, chain_yaml, lg_config, lg_sqlite, loop_yaml, open_ours as open_engine,
    ours_check, peer_available, peer_version, skipped,
)

import orch

SHORT, HOLD = 5, 2  # in-flight runs: a 5-step chain, held inside its 3rd step (s2)
SITE_FRAMES = 1  # tracemalloc frames per allocation (1: the line that allocated)


@dataclass(frozen=True)
class Sizes:
    warm: int  # unmeasured runs before each baseline
    inflight: int  # runs held at once (they are the completed runs of case (b) afterwards)
    short_long: int  # steps of the shorter long run (the growth per step is measured between the two)
    long: int  # steps of the long run, chain and loop


FULL = Sizes(warm=20, inflight=1000, short_long=200, long=2000)
QUICK = Sizes(warm=2, inflight=20, short_long=10, long=50)


class Gate:
    """One shared asyncio.Event every held step awaits, and a count of steps waiting on it."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.release.set()  # open during warm-up
        self.all_in = asyncio.Event()
        self.expected = 0
        self.held = 0

    def close(self, expected: int) -> None:
        self.release.clear()
        self.all_in.clear()
        self.expected, self.held = expected, 0

    async def wait(self) -> None:
        if self.release.is_set():
            return
        self.held += 1
        if self.held == self.expected:
            self.all_in.set()
        await self.release.wait()


class Probe:
    """With --sites: a snapshot taken inside one step (the last one of a long run)."""

    def __init__(self) -> None:
        self.at: str | None = None
        self.snapshot: tracemalloc.Snapshot | None = None

    def hit(self, where: str) -> None:
        if where == self.at:
            self.snapshot = tracemalloc.take_snapshot()


def traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def settle() -> None:
    """Let the loop run the callbacks finished tasks scheduled (gather's among them): until it
    does, the loop's ready queue still holds the tasks."""
    for _ in range(3):
        await asyncio.sleep(0)


def snapshot(sites: int) -> tracemalloc.Snapshot | None:
    if not sites:
        return None
    gc.collect()
    return tracemalloc.take_snapshot()


# -- this engine ----------------------------------------------------------------------------

async def open_ours(path: str, graphs: dict[str, str], gate: Gate, probe: Probe) -> orch.Engine:
    """As bench_runtime.py (WAL, synchronous=NORMAL), with this benchmark's graphs and an
    executor that holds step 3 (s2) of `held` at the gate. The lease is an hour, so the
    heartbeat (every lease/3) never fires mid-measurement."""

    async def executor(ctx: Any) -> StepResult:
        step_id = ctx.step.spec.id
        if step_id == f"s{HOLD}" and ctx.graph.id == "held":
            await gate.wait()
        if probe.at is not None:
            probe.hit(f"{ctx.graph.id}:{ctx.iteration}:{step_id}")
        return StepResult(output=1)

    return await open_engine(path, graphs, synchronous=SYNCHRONOUS, executor=executor, lease_seconds=3600.0)


def sqlite_settings(path: str) -> str:
    """journal/synchronous of this engine's database: the file's journal mode, and the level
    its connections are set to (`Settings.sqlite_synchronous`: a connection's own setting is
    not visible from outside the engine)."""
    return f"{journal_mode(path)}/{SYNCHRONOUS}"


async def ours_inflight(path: str, sizes: Sizes, sites: int) -> dict[str, Any]:
    """(a) and (b): `sizes.inflight` runs held in step 3, then released and finished."""
    gate, n = Gate(), sizes.inflight
    engine = await open_ours(path, {"held": chain_yaml("held", SHORT)}, gate, Probe())
    check = ours_check(SHORT)
    try:
        for _ in range(sizes.warm):
            check(await engine.run("held"))
        gate.close(n)
        snap0 = snapshot(sites)
        before = traced()
        ids = await asyncio.gather(*(engine.start("held") for _ in range(n)))
        await gate.all_in.wait()
        held = traced()
        snap1 = snapshot(sites)
        gate.release.set()
        results = await asyncio.gather(*(engine.wait(run_id) for run_id in ids))
        for r in results:
            check(r)
        del results, ids
        await settle()
        after = traced()
        snap2 = snapshot(sites)
        return {"inflight": (held - before) / n, "retained": (after - before) / n, "sqlite": sqlite_settings(path),
                "sites": (snap0, snap1, snap2)}
    finally:
        await engine.close()


LONG_CASES = ("chain", "loop")


async def ours_long(path: str, sizes: Sizes, sites: int,
                    kinds: tuple[str, ...] = LONG_CASES) -> dict[tuple[str, int], dict[str, Any]]:
    """(c), (d) and (e): one measured run of each long graph, after one unmeasured run of it;
    the peak over the baseline, and what stays once it completed."""
    probe = Probe()
    lengths = (sizes.short_long, sizes.long)
    make = {"chain": chain_yaml, "loop": loop_yaml}
    graphs = {f"{kind}{k}": make[kind](f"{kind}{k}", k) for kind in kinds for k in lengths}
    engine = await open_ours(path, graphs, Gate(), probe)
    out: dict[tuple[str, int], dict[str, Any]] = {}
    try:
        for kind in kinds:
            for k in lengths:
                gid = f"{kind}{k}"
                ours_check(k)(await engine.run(gid))  # warm-up: the first run of a graph fills caches
                if sites and k == sizes.long:  # inside the last step
                    probe.at = f"{gid}:{k}:s0" if kind == "loop" else f"{gid}:1:s{k - 1}"
                snap0 = snapshot(sites) if probe.at else None
                before = traced()
                tracemalloc.reset_peak()
                result = await engine.run(gid)
                peak = tracemalloc.get_traced_memory()[1]
                ours_check(k)(result)
                del result
                out[kind, k] = {"peak": peak - before, "retained": traced() - before,
                                "sites": (snap0, probe.snapshot)}
                probe.at = probe.snapshot = None
        return out
    finally:
        await engine.close()


# -- LangGraph ------------------------------------------------------------------------------

def lg_chain_with(length: int, checkpointer: Any, special: dict[int, Any], plain: Any) -> Any:
    """workloads.lg_chain, with the nodes at the indexes in `special` replaced."""
    from langgraph.graph import END, START, StateGraph

    g = StateGraph(CountState)
    for i in range(length):
        g.add_node(f"s{i}", special.get(i, plain))
    g.add_edge(START, "s0")
    for i in range(length - 1):
        g.add_edge(f"s{i}", f"s{i + 1}")
    g.add_edge(f"s{length - 1}", END)
    return g.compile(checkpointer=checkpointer)


async def lg_inflight(path: str, sizes: Sizes, sites: int) -> dict[str, Any]:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    gate, n = Gate(), sizes.inflight

    async def plain(state: CountState) -> dict[str, int]:
        return {"count": 1}

    async def held(state: CountState) -> dict[str, int]:
        await gate.wait()
        return {"count": 1}

    async with AsyncSqliteSaver.from_conn_string(path) as saver:
        await saver.setup()
        await saver.conn.execute(f"PRAGMA synchronous={SYNCHRONOUS}")
        async with saver.conn.execute("PRAGMA journal_mode") as cur:
            journal = (await cur.fetchone())[0]
        async with saver.conn.execute("PRAGMA synchronous") as cur:
            sync_level = {0: "OFF", 1: "NORMAL", 2: "FULL"}[(await cur.fetchone())[0]]
        graph = lg_chain_with(SHORT, saver, {HOLD: held}, plain)
        counter = iter(range(10**9))

        async def once() -> Any:
            return await graph.ainvoke({"count": 0}, lg_config(f"t{next(counter)}", SHORT), durability="sync")

        for _ in range(sizes.warm):
            assert await once() == {"count": SHORT}
        gate.close(n)
        snap0 = snapshot(sites)
        before = traced()
        tasks = [asyncio.ensure_future(once()) for _ in range(n)]
        await gate.all_in.wait()
        in_flight = traced()
        snap1 = snapshot(sites)
        gate.release.set()
        outs = await asyncio.gather(*tasks)
        for out in outs:
            assert out == {"count": SHORT}, out
        del outs, tasks
        await settle()
        after = traced()
        snap2 = snapshot(sites)
    return {"inflight": (in_flight - before) / n, "retained": (after - before) / n,
            "sqlite": f"{journal}/{sync_level}", "sites": (snap0, snap1, snap2)}


def lg_loop(checkpointer: Any, node: Any, limit: list[int]) -> Any:
    """One node whose conditional edge leads back to itself until `count` reaches limit[0]."""
    from langgraph.graph import END, START, StateGraph

    g = StateGraph(CountState)
    g.add_node("s0", node)
    g.add_edge(START, "s0")
    g.add_conditional_edges("s0", lambda state: "s0" if state["count"] < limit[0] else END, ["s0", END])
    return g.compile(checkpointer=checkpointer)


def lg_long(path: str, sizes: Sizes, sites: int, kinds: tuple[str, ...] = LONG_CASES) -> dict[Any, Any]:
    """The long runs on SqliteSaver with invoke, as bench_runtime's durable case (b)."""
    saver, conn = lg_sqlite(path)
    probe = Probe()

    def plain(state: CountState) -> dict[str, int]:
        return {"count": 1}

    def last(state: CountState) -> dict[str, int]:
        if probe.at is not None:
            probe.hit("chain")
        return {"count": 1}

    def looped(state: CountState) -> dict[str, int]:
        if probe.at is not None:
            probe.hit(f"loop:{state['count'] + 1}")
        return {"count": 1}

    lengths = (sizes.short_long, sizes.long)
    limit = [20]
    out: dict[Any, Any] = {}
    try:
        graphs = {("chain", k): lg_chain_with(k, saver, {k - 1: last}, plain) for k in lengths if "chain" in kinds}
        loop = lg_loop(saver, looped, limit)
        graphs.update({("loop", k): loop for k in lengths})
        # warm-up: LangGraph builds some structures on a node's first run. The loop is one
        # graph (the limit is read at run time): a short run warms it.
        assert loop.invoke({"count": 0}, lg_config("warm-loop", limit[0]), durability="sync") == {"count": limit[0]}
        for kind in kinds:
            for k in lengths:
                graph = graphs[kind, k]
                limit[0] = k
                if kind == "chain":
                    r = graph.invoke({"count": 0}, lg_config(f"warm{k}", k), durability="sync")
                    assert r == {"count": k}, r
                if sites and k == sizes.long:
                    probe.at = "chain" if kind == "chain" else f"loop:{k}"
                snap0 = snapshot(sites) if probe.at else None
                before = traced()
                tracemalloc.reset_peak()
                result = graph.invoke({"count": 0}, lg_config(f"{kind}{k}", k), durability="sync")
                peak = tracemalloc.get_traced_memory()[1]
                assert result == {"count": k}, result
                del result
                out[kind, k] = {"peak": peak - before, "retained": traced() - before,
                                "sites": (snap0, probe.snapshot)}
                probe.at = probe.snapshot = None
        out["sqlite"] = f"{pragma(conn, 'journal_mode')}/{pragma(conn, 'synchronous')}"
        return out
    finally:
        conn.close()


# -- the report -----------------------------------------------------------------------------

def kib(n: float) -> str:
    return f"{n / 1024:,.1f}" if abs(n) < 10 * 1024 else f"{n / 1024:,.0f}"


def num(n: float) -> str:
    return f"{n:,.0f}"


def ratio(ours: float, lg: float) -> str:
    if ours <= 0 or lg <= 0:
        return "—"
    return "<0.01×" if lg / ours < 0.005 else f"{lg / ours:.2f}×"


def print_sites(title: str, first: tracemalloc.Snapshot | None, second: tracemalloc.Snapshot | None, top: int,
                per: int) -> None:
    if first is None or second is None:
        return
    skip = [tracemalloc.Filter(False, tracemalloc.__file__)]
    stats = second.filter_traces(skip).compare_to(first.filter_traces(skip), "lineno")
    stats = [s for s in stats if s.size_diff > 0]
    total = sum(s.size_diff for s in stats)
    print(f"{title}: lines that grew, {total / per:,.0f} B{' per run' if per > 1 else ''} in all; the top {top}:")
    rows = []
    for s in stats[:top]:
        frame = s.traceback[0]
        rows.append([f"{where(frame.filename)}:{frame.lineno}", f"{s.size_diff / per:,.0f}", f"{s.count_diff / per:,.1f}",
                     f"{100 * s.size_diff / total:.1f}%"])
    print(table(["allocated at", "B" if per == 1 else "B/run", "blocks" if per == 1 else "blocks/run", "share"], rows))
    by_pkg: dict[str, int] = {}
    for s in stats:
        name = where(s.traceback[0].filename)
        pkg = name.split("/")[0] if not name.startswith("engine/") else "/".join(name.split("/")[:2])
        by_pkg[pkg] = by_pkg.get(pkg, 0) + s.size_diff
    pk = sorted(by_pkg.items(), key=lambda kv: -kv[1])[:8]
    print("  by file or package: " + ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in pk))
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, a smoke run of a few seconds")
    parser.add_argument("--sites", type=int, default=0, metavar="N",
                        help="also print the N lines that allocated most, per case and engine")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    have_lg = peer_available(LANGGRAPH)
    tracemalloc.start(SITE_FRAMES)
    disk = tempfile.mkdtemp(prefix="orch-bench-mem-")
    none: dict[Any, Any] = {}
    try:
        gc.collect()
        ours_a = asyncio.run(ours_inflight(os.path.join(disk, "ours-inflight.db"), sizes, args.sites))
        gc.collect()
        lg_a = asyncio.run(lg_inflight(os.path.join(disk, "lg-inflight.db"), sizes, args.sites)) if have_lg else none
        gc.collect()
        ours_c = asyncio.run(ours_long(os.path.join(disk, "ours-long.db"), sizes, args.sites))
        gc.collect()
        lg_c = lg_long(os.path.join(disk, "lg-long.db"), sizes, args.sites) if have_lg else none
    finally:
        shutil.rmtree(disk, ignore_errors=True)
    tracing_overhead = tracemalloc.get_tracemalloc_memory()
    tracemalloc.stop()

    n, k0, k = sizes.inflight, sizes.short_long, sizes.long
    print(machine("quick" if args.quick else "full", load_before,
                  f" · langgraph {peer_version(LANGGRAPH)}" if have_lg else ""))
    print("memory: tracemalloc, bytes of live Python heap allocations, each reading after gc.collect(); deterministic, "
          "unlike RSS (no allocator arenas, fragmentation or paging); SQLite's own page cache is not counted")
    lg_sqlite_text = (f", LangGraph={lg_a['sqlite']} (async saver), {lg_c['sqlite']} (sync saver); "
                      "LangGraph durability=\"sync\"") if have_lg else ""
    print(f"durable: SQLite journal/synchronous this engine={ours_a['sqlite']}{lg_sqlite_text}; database files in "
          f"{tempfile.gettempdir()}")
    if not have_lg:
        print(skipped(LANGGRAPH))
    print()

    def growth(side: dict[Any, Any], kind: str) -> float:
        return (side[kind, k]["peak"] - side[kind, k0]["peak"]) / (k - k0)

    def row(label: str, unit: str, ours: float, lg: float | None, fmt: Callable[[float], str] = num,
            target: str = "") -> list[str]:
        return [label, unit, fmt(ours), "—" if lg is None else fmt(lg), "—" if lg is None else ratio(ours, lg), target]

    def lg_at(side: dict[Any, Any], *key: Any, field: str) -> float | None:
        return side[key[0] if len(key) == 1 else key][field] if side else None

    rows = [
        row(f"(a) in flight: {n:,} 5-step runs, each held in step 3 ¹", "B/run", ours_a["inflight"],
            lg_a["inflight"] if have_lg else None, target=f"≤ {IN_FLIGHT_TARGET:,}"),
        row(f"(b) kept after those {n:,} runs completed ²", "B/run", ours_a["retained"],
            lg_a["retained"] if have_lg else None),
    ]
    for kind, label, mark in (("chain", "chain of {} steps", "(c)"), ("loop", "one step looping {} times", "(d)")):
        for m in (k0, k):
            rows.append(row(f"{mark} peak, {label.format(f'{m:,}')} ³", "KiB", ours_c[kind, m]["peak"],
                            lg_at(lg_c, kind, m, field="peak"), kib))
        rows.append(row(f"{mark} peak growth per step, {k0:,} → {k:,} steps", "B/step", growth(ours_c, kind),
                        growth(lg_c, kind) if have_lg else None,
                        target="≤ LangGraph" if kind == "loop" else ""))
    rows.append(row(f"(e) kept after the {k:,}-step chain completed ²", "KiB", ours_c["chain", k]["retained"],
                    lg_at(lg_c, "chain", k, field="retained"), kib))
    print(table(["case", "unit", "this engine", "LangGraph", "ratio", "target"], rows))
    print("ratio: LangGraph ÷ this engine; above 1× this engine uses less memory, below 1× LangGraph uses less; "
          "— where a side kept nothing (a few KiB either way is noise).")
    print(f"¹ traced memory with all {n:,} runs waiting inside their 3rd step on one shared asyncio.Event, minus before "
          f"they started, ÷ {n:,}. this engine: Engine.start × {n:,}; LangGraph: AsyncSqliteSaver, {n:,} concurrent "
          "ainvoke, one thread_id each. Then released: every run completed.")
    print("² traced memory once the runs completed and the benchmark dropped their results, minus before they started. "
          "It includes tables sized for the peak that do not shrink (asyncio's set of tasks).")
    print(f"³ highest traced memory during one run (tracemalloc.reset_peak before it) minus before it, each graph run "
          "once unmeasured first; this engine: Engine.run, LangGraph: SqliteSaver, invoke. Growth per step: the "
          f"difference of the two peaks ÷ {k - k0:,}. Loop: this engine, a step whose next step is itself "
          "(max_iterations); LangGraph, a node with a conditional edge back to itself.")
    print(f"tracemalloc's own bookkeeping at the end: {tracing_overhead / 2**20:,.1f} MiB (not in the figures).")
    if args.sites:
        print()
        print_sites("this engine, (a) in flight", ours_a["sites"][0], ours_a["sites"][1], args.sites, n)
        if have_lg:
            print_sites("LangGraph, (a) in flight", lg_a["sites"][0], lg_a["sites"][1], args.sites, n)
        print_sites("this engine, (b) kept after completion", ours_a["sites"][0], ours_a["sites"][2], args.sites, n)
        if have_lg:
            print_sites("LangGraph, (b) kept after completion", lg_a["sites"][0], lg_a["sites"][2], args.sites, n)
        for kind, mark in (("chain", "(c)"), ("loop", "(d)")):
            for side, cases in (("this engine", ours_c), ("LangGraph", lg_c)):
                if not cases:
                    continue
                first, last = cases[kind, k]["sites"]
                print_sites(f"{side}, {mark} inside the last step of the {k:,}-step {kind}", first, last, args.sites, 1)
    print(f"\ntotal {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
