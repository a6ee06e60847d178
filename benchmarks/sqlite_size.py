"""What a SQLite database file holds: its size in pages and the payload bytes of its rows."""

from __future__ import annotations

import sqlite3
from typing import Iterable


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
        for table in tables:
            rows, size = 0, 0
            for row in conn.execute(f"SELECT * FROM {table}"):  # noqa: S608 - table names are ours
                rows += 1
                for v in row:
                    if isinstance(v, (bytes, memoryview)):
                        size += len(v)
                    elif isinstance(v, str):
                        size += len(v.encode())
                    elif v is not None:
                        size += 8
            out[table] = (rows, size)
    finally:
        conn.close()
    return out


def pragma(conn: sqlite3.Connection, name: str) -> str:
    value = conn.execute(f"PRAGMA {name}").fetchone()[0]
    if name == "synchronous":
        return {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(value, str(value))
    return str(value)
