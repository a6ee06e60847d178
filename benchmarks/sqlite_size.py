"""What a SQLite database file holds: its size in pages and the payload bytes of its rows; run
as a script, what this engine and LangGraph store per step of the 5-step chain, case (e) of
bench_runtime.py.

    PYTHONPATH=. python benchmarks/sqlite_size.py [--quick] [--runs N]

Both sides write to their own file in a temporary directory, in WAL mode with
synchronous=NORMAL, LangGraph with `SqliteSaver` and `durability="sync"`. The size is measured
before and after the runs, each time after folding the WAL into the main file.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from typing import Any, Iterable

from report import machine, table
from workloads import (
    CHAIN, LANGGRAPH, chain_yaml, lg_chain, lg_config, lg_sqlite, open_ours, ours_check, peer_available, peer_version, skipped,
)

OUR_TABLES = ("runs", "step_records", "events")
LG_TABLES = ("checkpoints", "writes")


def checkpointed_size(path: str) -> int:
    """Bytes in use after the WAL is folded into the main file: page_count × page_size.

    Opened on its own connection, so call it while no other connection holds a transaction
    (it raises if the WAL could not be truncated, instead of reporting a stale size).
    """
    conn = sqlite3.connect(path)
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            raise RuntimeError(f"{path}: WAL checkpoint blocked by another connection")
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        return int(pages * page_size)
    finally:
        conn.close()


def row_payload(path: str, tables: Iterable[str]) -> dict[str, tuple[int, int]]:
    """table → (rows, payload bytes): text and blobs by their length, numbers as 8 bytes, NULL
    as 0. No record headers, indexes or page slack: what the rows carry, not what they cost."""
    conn = sqlite3.connect(path)
    out: dict[str, tuple[int, int]] = {}
    try:
        for name in tables:
            rows, size = 0, 0
            for row in conn.execute(f"SELECT * FROM {name}"):  # noqa: S608 - table names are ours
                rows += 1
                for v in row:
                    if isinstance(v, (bytes, memoryview)):
                        size += len(v)
                    elif isinstance(v, str):
                        size += len(v.encode())
                    elif v is not None:
                        size += 8
            out[name] = (rows, size)
    finally:
        conn.close()
    return out


def pragma(conn: sqlite3.Connection, name: str) -> str:
    value = conn.execute(f"PRAGMA {name}").fetchone()[0]
    if name == "synchronous":
        return {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(value, str(value))
    return str(value)


def journal_mode(path: str) -> str:
    """The database file's journal mode (WAL is a property of the file, unlike synchronous,
    which each connection sets for itself)."""
    conn = sqlite3.connect(path)
    try:
        return pragma(conn, "journal_mode")
    finally:
        conn.close()


def _growth(after: dict[str, tuple[int, int]], before: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    return {t: (after[t][0] - before[t][0], after[t][1] - before[t][1]) for t in after}


async def ours_stored(path: str, runs: int) -> dict[str, Any]:
    """Growth of this engine's file and rows over `runs` runs of the 5-step chain."""
    graphs = {"chain5": chain_yaml("chain5", CHAIN)}
    engine = await open_ours(path, graphs)
    await engine.close()
    before, rows_before = checkpointed_size(path), row_payload(path, OUR_TABLES)
    engine = await open_ours(path, graphs)
    try:
        for _ in range(runs):
            ours_check(CHAIN)(await engine.run("chain5"))
    finally:
        await engine.close()
    return {"pages": checkpointed_size(path) - before, "rows": _growth(row_payload(path, OUR_TABLES), rows_before)}


def lg_stored(path: str, runs: int) -> dict[str, Any]:
    """The same for LangGraph's `SqliteSaver`, one thread_id per run."""
    saver, conn = lg_sqlite(path)
    conn.close()
    before, rows_before = checkpointed_size(path), row_payload(path, LG_TABLES)
    saver, conn = lg_sqlite(path)
    graph = lg_chain(CHAIN, saver)
    try:
        for i in range(runs):
            assert graph.invoke({"count": 0}, lg_config(f"s{i}", CHAIN), durability="sync") == {"count": CHAIN}
    finally:
        conn.close()
    return {"pages": checkpointed_size(path) - before, "rows": _growth(row_payload(path, LG_TABLES), rows_before)}


def stored_rows(ours: dict[str, Any], lg: dict[str, Any] | None, runs: int) -> str:
    """The rows each side added, per run and per step, table by table."""
    steps = runs * CHAIN
    rows = [[f"this engine: {t}", f"{n / runs:g}", f"{b / steps:,.1f}"] for t, (n, b) in ours["rows"].items()]
    if lg is not None:
        rows += [[f"LangGraph: {t}", f"{n / runs:g}", f"{b / steps:,.1f}"] for t, (n, b) in lg["rows"].items()]
    return table(["stored rows (e)", "rows/run", "payload B/step"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 runs instead of 400 (a few seconds)")
    parser.add_argument("--runs", type=int, help="runs of the 5-step chain per engine (default 400, quick 20)")
    args = parser.parse_args()
    runs = args.runs or (20 if args.quick else 400)
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    have_lg = peer_available(LANGGRAPH)
    tmp = tempfile.mkdtemp(prefix="orch-bench-size-")
    try:
        ours = asyncio.run(ours_stored(os.path.join(tmp, "ours.db"), runs))
        lg = lg_stored(os.path.join(tmp, "lg.db"), runs) if have_lg else None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(machine("quick" if args.quick else "full", load_before,
                  f" · langgraph {peer_version(LANGGRAPH)}" if have_lg else ""))
    if not have_lg:
        print(skipped(LANGGRAPH))
    steps = runs * CHAIN
    ours_rows = sum(b for _, b in ours["rows"].values())
    rows = [["(e) bytes per step, database pages", "B/step", f"{ours['pages'] / steps:,.0f}",
             f"{lg['pages'] / steps:,.0f}" if lg else "—"],
            ["(e) bytes per step, row payload", "B/step", f"{ours_rows / steps:,.0f}",
             f"{sum(b for _, b in lg['rows'].values()) / steps:,.0f}" if lg else "—"]]
    print()
    print(table(["case", "unit", "this engine", "LangGraph"], rows))
    print(f"{runs:,} runs of the 5-step chain ({steps:,} steps) per engine: growth of page_count × page_size after "
          "wal_checkpoint(TRUNCATE); row payload = text/blob lengths + 8 B per number.")
    print()
    print(stored_rows(ours, lg, runs))
    print(f"\ntotal {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
