"""Where does a durable run of the 5-step chain spend its time on this engine?

    PYTHONPATH=. python benchmarks/profile_runtime.py [--runs N] [--top N] [--sort tottime|cumulative]
                                                      [--concurrent]

Part 1, wall clock, no profiler: each store call the run awaits is timed where it is awaited
(a chain run awaits them one after another, so the rest of the run's time is work on the
event-loop thread), next to the floors this machine allows: a bare insert + commit through
`sqlite3`, an empty round trip to the writer thread, an empty `asyncio.to_thread`.

Part 2, cProfile, one profile per thread: the event loop (runner, executors, events, result
building), the store's writer thread (checkpoint transactions) and the reader threads
(`asyncio.to_thread` reads behind `Engine.result`). With --concurrent, only part 2, for runs
started all at once.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from typing import Any

from bench_runtime import CHAIN, ours_check
from bench_runtime import open_engine as open_bench_engine

from orch.run.engine import Engine
from orch.store.sql import RUNS, STEPS, Checkpoint, SQLStore

STUBBED = ("create_run", "checkpoint")  # the writes a run makes; replaced by no-ops in loop_only()


def awaited_methods(store: SQLStore) -> list[str]:
    """The store's public coroutine methods: everything a run may await on it."""
    import inspect

    return [n for n, f in inspect.getmembers(type(store), inspect.iscoroutinefunction) if not n.startswith("_")]


async def open_engine(path: str) -> Engine:
    return await open_bench_engine(path, "NORMAL")


# -- part 1: wall clock ---------------------------------------------------------------------

def time_awaits(store: SQLStore, spent: dict[str, list[float]]) -> None:
    """Replace the store's awaited methods on this instance with timed ones."""
    for name in awaited_methods(store):
        time_awaits_one(store, name, spent)


def time_awaits_one(store: SQLStore, name: str, spent: dict[str, list[float]]) -> None:
    method = getattr(store, name)

    async def call(*args: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        try:
            return await method(*args, **kw)
        finally:
            spent[name].append(time.perf_counter() - t)

    setattr(store, name, call)


def capture_writes(store: SQLStore, captured: list[tuple[str, Any]]) -> None:
    """Keep a copy of every run creation and checkpoint the runs ask the store to write."""
    import inspect

    create_run, checkpoint = store.create_run, store.checkpoint
    signature = inspect.signature(type(store).create_run)

    async def create(*args: Any, **kw: Any) -> str:
        given = signature.bind(store, *args, **kw).arguments
        captured.append(("create", (dict(given["row"]), [dict(r) for r in given.get("steps", ())],
                                    list(given.get("events", ())))))
        return await create_run(*args, **kw)

    async def save(cp: Checkpoint) -> None:
        await checkpoint(cp)
        captured.append(("checkpoint", Checkpoint(cp.run_id, cp.epoch, dict(cp.run), [dict(r) for r in cp.steps],
                                                  list(cp.events))))

    store.create_run = create  # type: ignore[method-assign]
    store.checkpoint = save  # type: ignore[method-assign]


def replay(tmp: str, captured: list[tuple[str, Any]]) -> dict[str, float]:
    """The captured writes again, on this thread, one transaction each: through the store's
    SQLAlchemy Core statements, and through `sqlite3` with hand-written SQL. Median µs."""
    from sqlmodel import SQLModel

    def fresh(name: str) -> str:
        path = os.path.join(tmp, name)
        store = SQLStore(f"sqlite:///{path}")
        SQLModel.metadata.create_all(store._engine)
        store._engine.dispose()
        return path

    out: dict[str, list[float]] = defaultdict(list)
    store = SQLStore(f"sqlite:///{fresh('replay-core.db')}")
    with store._engine.connect() as conn:
        for kind, item in captured:
            t = time.perf_counter()
            with conn.begin():
                if kind == "create":
                    row, steps, events = item
                    conn.execute(RUNS.insert(), row)
                    conn.execute(store._insert_step, steps)
                    conn.execute(store._insert_event, [{"run_id": row["id"], "seq": q, "body": b} for q, b in events])
                else:
                    assert store._apply(conn, item) is True
            out[f"core {kind}"].append(time.perf_counter() - t)
    store._engine.dispose()

    raw = sqlite3.connect(fresh("replay-raw.db"), isolation_level=None)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("PRAGMA synchronous=NORMAL")
    step_cols = next(list(r) for kind, item in captured for r in (item[1] if kind == "create" else item.steps))
    insert_step = f"INSERT INTO step_records ({', '.join(step_cols)}) VALUES ({', '.join('?' * len(step_cols))})"
    insert_event = "INSERT INTO events (run_id, seq, body) VALUES (?, ?, ?)"
    updates: dict[tuple[str, ...], str] = {}
    for kind, item in captured:
        t = time.perf_counter()
        raw.execute("BEGIN")
        if kind == "create":
            row, steps, events = item
            raw.execute(f"INSERT INTO runs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
            raw.executemany(insert_step, [[r[c] for c in step_cols] for r in steps])
            raw.executemany(insert_event, [(row["id"], q, b) for q, b in events])
        else:
            cols = tuple(item.run)
            sql = updates.get(cols) or updates.setdefault(
                cols, f"UPDATE runs SET {', '.join(c + ' = ?' for c in cols)} WHERE id = ? AND epoch = ?")
            assert raw.execute(sql, [*item.run.values(), item.run_id, item.epoch]).rowcount == 1
            raw.executemany(insert_step, [[r[c] for c in step_cols] for r in item.steps])
            raw.executemany(insert_event, [(item.run_id, q, b) for q, b in item.events])
        raw.execute("COMMIT")
        out[f"sqlite3 {kind}"].append(time.perf_counter() - t)
    raw.close()
    return {k: statistics.median(v) for k, v in out.items()}


def read_costs(path: str, run_ids: list[str]) -> dict[str, float]:
    """Engine.result's two reads on this thread: building the statement, running it through
    the store's pool, and the same SELECTs through `sqlite3`. Median µs."""
    from sqlalchemy import select

    store = SQLStore(f"sqlite:///{path}")
    out: dict[str, list[float]] = defaultdict(list)
    raw = sqlite3.connect(path)
    raw.row_factory = sqlite3.Row
    for rid in run_ids:
        t0 = time.perf_counter()
        q_run = select(RUNS).where(RUNS.c.id == rid)
        q_steps = select(STEPS).where(STEPS.c.run_id == rid).order_by(STEPS.c.idx)
        t1 = time.perf_counter()
        row = [dict(r) for r in store._read(q_run)]
        steps = [dict(r) for r in store._read(q_steps)]
        t2 = time.perf_counter()
        raw_row = [dict(r) for r in raw.execute("SELECT * FROM runs WHERE id = ?", (rid,))]
        raw_steps = [dict(r) for r in raw.execute("SELECT * FROM step_records WHERE run_id = ? ORDER BY idx", (rid,))]
        t3 = time.perf_counter()
        assert len(row) == len(raw_row) == 1 and len(steps) == len(raw_steps) > 0
        out["build the two select() statements"].append(t1 - t0)
        out["run both through SQLStore._read (pool, Core)"].append(t2 - t1)
        out["the same two SELECTs through sqlite3"].append(t3 - t2)
    raw.close()
    store._engine.dispose()
    return {k: statistics.median(v) for k, v in out.items()}


async def loop_only(tmp: str, runs: int, prof: cProfile.Profile | None = None) -> float:
    """Seconds per run of `Engine.start` + driving the run to its end, with the store's writes
    replaced by no-ops and no `Engine.result`: the event-loop work alone (nothing is stored)."""
    engine = await open_engine(os.path.join(tmp, "stub.db"))

    async def create(row: dict[str, Any], *args: Any, **kw: Any) -> str:
        return str(row["id"])

    async def save(cp: Checkpoint) -> None:
        return None

    engine.store.create_run = create  # type: ignore[method-assign]
    engine.store.checkpoint = save  # type: ignore[method-assign]
    still_real: dict[str, list[float]] = defaultdict(list)
    for name in awaited_methods(engine.store):
        if name not in STUBBED:
            time_awaits_one(engine.store, name, still_real)
    try:
        async def one() -> None:
            run_id = await engine.start("chain5")
            task = engine._tasks.get(run_id)
            assert task is not None and await task == "completed"

        for _ in range(30):
            await one()
        if prof is not None:
            prof.enable()
        t = time.perf_counter()
        for _ in range(runs):
            await one()
        elapsed = (time.perf_counter() - t) / runs
        if prof is not None:
            prof.disable()
        assert not still_real, f"the stubbed runs still awaited {sorted(still_real)}: stub those too"
        return elapsed
    finally:
        await engine.close()


def raw_commit_floor(path: str, n: int = 2000) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v BLOB)")
    times = []
    for i in range(n):
        t = time.perf_counter()
        conn.execute("BEGIN")
        conn.execute("INSERT INTO t VALUES (?, ?)", (f"k{i}", b"x" * 200))
        conn.execute("COMMIT")
        times.append(time.perf_counter() - t)
    conn.close()
    return statistics.median(times)


async def breakdown(tmp: str, runs: int) -> None:
    engine = await open_engine(os.path.join(tmp, "wall.db"))
    check = ours_check(CHAIN)
    try:
        for _ in range(30):
            check(await engine.run("chain5"))
        spent: dict[str, list[float]] = defaultdict(list)
        time_awaits(engine.store, spent)
        t = time.perf_counter()
        run_ids = []
        for _ in range(runs):
            result = await engine.run("chain5")
            check(result)
            run_ids.append(result.run_id)
        per_run = (time.perf_counter() - t) / runs
        spent = {name: list(values) for name, values in spent.items()}
        captured: list[tuple[str, Any]] = []
        capture_writes(engine.store, captured)
        for _ in range(min(runs, 300)):
            check(await engine.run("chain5"))
        hops, threads = [], []
        for _ in range(1000):
            t = time.perf_counter()
            await engine.store._submit(lambda conn: None)
            hops.append(time.perf_counter() - t)
        for _ in range(1000):
            t = time.perf_counter()
            await asyncio.to_thread(lambda: None)
            threads.append(time.perf_counter() - t)
    finally:
        await engine.close()
    floor = raw_commit_floor(os.path.join(tmp, "raw.db"))
    replayed = replay(tmp, captured)
    reads = read_costs(os.path.join(tmp, "wall.db"), run_ids[:300])
    stubbed = await loop_only(tmp, runs)

    print(f"Engine.run of the {CHAIN}-step chain, durable: {per_run * 1e6:,.0f} µs/run (mean of {runs})\n")
    print(f"{'awaited on the event loop':44} {'calls/run':>9} {'median µs':>10} {'µs/run':>8} {'share':>6}")
    awaited = 0.0
    for name in sorted(spent, key=lambda n: -sum(spent[n])):
        values = spent[name]
        total = sum(values) / runs
        awaited += total
        print(f"  store.{name:37} {len(values) / runs:9.1f} {statistics.median(values) * 1e6:10.0f} "
              f"{total * 1e6:8.0f} {total / per_run:6.0%}")
    if not spent:
        print("  (nothing: no store call was awaited)")
    rest = per_run - awaited
    print(f"  {'the rest: event-loop work between awaits':42} {'':9} {'':10} {rest * 1e6:8.0f} {rest / per_run:6.0%}")
    print(f"  (event-loop work alone, store writes stubbed out, no result read: {stubbed * 1e6:,.0f} µs/run)")
    print("\nfloors on this machine (median):")
    print(f"  sqlite3 INSERT + COMMIT, WAL, synchronous=NORMAL       {floor * 1e6:8.1f} µs")
    print(f"  empty request through the store's writer thread        {statistics.median(hops) * 1e6:8.1f} µs")
    print(f"  asyncio.to_thread(lambda: None)                        {statistics.median(threads) * 1e6:8.1f} µs")
    print("\nthe same writes replayed on one thread, one transaction each (median µs):")
    for kind in ("create", "checkpoint"):
        print(f"  {kind:10}  store's SQLAlchemy Core statements {replayed['core ' + kind] * 1e6:7.1f}   "
              f"sqlite3, hand-written SQL {replayed['sqlite3 ' + kind] * 1e6:7.1f}")
    print("\nEngine.result's reads, on one thread (median µs per result):")
    for what, value in reads.items():
        print(f"  {what:46} {value * 1e6:7.1f}")


# -- part 2: cProfile per thread ------------------------------------------------------------

async def profiled(tmp: str, runs: int, concurrent: bool) -> tuple[cProfile.Profile, cProfile.Profile, cProfile.Profile, float]:
    loop_prof, writer_prof, reader_prof = cProfile.Profile(), cProfile.Profile(), cProfile.Profile()
    store_cls_open = SQLStore.open

    async def open_with_profiled_writer(store: SQLStore) -> None:
        write_loop, read = store._write_loop, store._read

        def profiled_write_loop() -> None:
            writer_prof.enable()
            try:
                write_loop()
            finally:
                writer_prof.disable()

        def profiled_read(stmt: Any) -> list[Any]:
            reader_prof.enable()  # reads overlap only with --concurrent; then this view is partial
            try:
                return read(stmt)
            finally:
                reader_prof.disable()

        store._write_loop = profiled_write_loop  # type: ignore[method-assign]
        store._read = profiled_read  # type: ignore[method-assign]
        await store_cls_open(store)

    SQLStore.open = open_with_profiled_writer  # type: ignore[method-assign]
    try:
        engine = await open_engine(os.path.join(tmp, "prof.db"))
    finally:
        SQLStore.open = store_cls_open  # type: ignore[method-assign]
    check = ours_check(CHAIN)
    for _ in range(30):
        check(await engine.run("chain5"))
    loop_prof.enable()
    t = time.perf_counter()
    if concurrent:
        for result in await asyncio.gather(*(engine.run("chain5") for _ in range(runs))):
            check(result)
    else:
        for _ in range(runs):
            check(await engine.run("chain5"))
    elapsed = time.perf_counter() - t
    loop_prof.disable()
    await engine.close()
    return loop_prof, writer_prof, reader_prof, elapsed


def report(prof: cProfile.Profile, sort: str, top: int) -> str:
    out = io.StringIO()
    try:
        stats = pstats.Stats(prof, stream=out)
    except TypeError:  # nothing ran on this thread
        return "(no calls)\n"
    stats.strip_dirs().sort_stats(sort).print_stats(top)
    text = out.getvalue()
    return text[text.index("   ncalls"):] if "   ncalls" in text else text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--sort", default="tottime", choices=["tottime", "cumulative"])
    parser.add_argument("--concurrent", action="store_true",
                        help="profile --runs runs started at once (asyncio.gather) instead of one after another")
    args = parser.parse_args()
    stub_prof = cProfile.Profile()
    with tempfile.TemporaryDirectory(prefix="orch-profile-") as tmp:
        if not args.concurrent:
            asyncio.run(breakdown(tmp, args.runs))
            asyncio.run(loop_only(tmp, args.runs, stub_prof))
        loop_prof, writer_prof, reader_prof, elapsed = asyncio.run(profiled(tmp, args.runs, args.concurrent))
    how = "at once" if args.concurrent else "one after another"
    rate = f"{args.runs / elapsed:,.0f} runs/s" if args.concurrent else f"{elapsed / args.runs * 1e6:,.0f} µs/run"
    print(f"\n{args.runs} runs {how} under cProfile: {rate} (the profiler slows this); sorted by {args.sort}\n")
    if not args.concurrent:
        print("== event-loop thread, store writes stubbed out (its CPU work alone; nothing waits on I/O) ==")
        print(report(stub_prof, args.sort, args.top))
    for title, prof in (("event-loop thread", loop_prof), ("store writer thread (30 warm-up runs included)", writer_prof),
                        ("reader threads (Engine.result; 30 warm-up runs included)", reader_prof)):
        print(f"== {title} ==")
        print(report(prof, args.sort, args.top))


if __name__ == "__main__":
    sys.exit(main())
