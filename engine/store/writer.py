"""Group commit: one writer connection, and callers whose requests arrive together share one
transaction (across runs too). Each caller's future resolves only after its transaction
committed, so no successor step starts before its predecessor is durable.

A request is a callable `work(conn)` or anything the store's `apply(conn, work)` understands.
On SQLite, requests are written on the event loop's own thread when the writer is idle (a
SQLite commit costs less than the hand-off to a thread and back) and never wait for SQLite's
lock there; otherwise a writer thread takes them in batches.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from typing import Any, Callable

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from orch.store.prepared import raw_connection, resolve, resolve_all


class GroupWriter:
    def __init__(self, engine: Engine, apply: Callable[[Any, Any], Any], *, inline_ok: bool) -> None:
        self._engine = engine
        self._apply = apply
        self._inline_ok = inline_ok
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._conn: Any = None  # the writer connection
        self._connected = threading.Event()
        self._lock = threading.Lock()  # held by whoever writes on the writer connection
        self._local: list[tuple[Any, asyncio.Future[Any]]] = []  # submitted on the loop, not yet written

    async def start(self) -> None:
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_loop, name="orch-store-writer", daemon=True)
            self._writer.start()
            await asyncio.to_thread(self._connected.wait)

    async def stop(self) -> None:
        if self._writer is not None:
            fut = asyncio.get_running_loop().create_future()
            self._queue.put((None, asyncio.get_running_loop(), fut))
            await fut
            self._writer.join()
            self._writer = None
            self._conn = None
            self._connected.clear()

    async def submit(self, work: Any) -> Any:
        """Write `work`; its result (or the exception it raised) once committed."""
        return await self._submit(work)

    async def _submit(self, work: Any) -> Any:
        loop = asyncio.get_running_loop()
        if self._inline_ok:
            fut_local: asyncio.Future[Any] = loop.create_future()
            self._local.append((work, fut_local))
            if len(self._local) == 1:
                loop.call_soon(self._flush_local, loop)
            return await fut_local
        fut = loop.create_future()
        self._queue.put((work, loop, fut))
        return await fut

    def _flush_local(self, loop: asyncio.AbstractEventLoop) -> None:
        """Write what this loop submitted since the last flush: on the loop thread when the writer
        is idle (a SQLite commit costs less than the hand-off to the writer thread and back),
        else through the writer. Either way, requests submitted together share one transaction."""
        items, self._local = self._local, []
        if self._queue.empty() and self._conn is not None and self._lock.acquire(blocking=False):
            try:
                results = self._try_inline([work for work, _ in items])
            finally:
                self._lock.release()
            if results is not None:
                resolve_all([(fut, result) for (_, fut), result in zip(items, results)])
                return
        for work, fut in items:
            self._queue.put((work, loop, fut))

    def _try_inline(self, works: list[Any]) -> list[Any] | None:
        """Write on the loop thread without ever waiting for SQLite's lock: if another
        connection holds it, return None and let the writer thread wait instead."""
        # The writer connection's busy_timeout is 0 except while the writer thread holds it.
        try:
            with self._conn.begin():
                return [self._apply(self._conn, work) for work in works]
        except (OperationalError, sqlite3.OperationalError) as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                return None
            return self._run_batch(self._conn, works)
        except Exception:  # noqa: BLE001 - each request gets its own outcome
            return self._run_batch(self._conn, works)

    def _write_loop(self) -> None:
        conn = self._conn = self._engine.connect()
        if self._inline_ok:
            raw_connection(conn).execute("PRAGMA busy_timeout=0")
        self._connected.set()
        try:
            while True:
                batch = [self._queue.get()]
                while len(batch) < 512:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                stop = [b for b in batch if b[0] is None]
                work = [b for b in batch if b[0] is not None]
                if work:
                    with self._lock:
                        if self._inline_ok:  # this thread may wait for SQLite's lock; the loop never does
                            raw_connection(conn).execute("PRAGMA busy_timeout=30000")
                        try:
                            self._write_batch(conn, work)
                        finally:
                            if self._inline_ok:
                                raw_connection(conn).execute("PRAGMA busy_timeout=0")
                if stop:
                    for _, loop, fut in stop:
                        loop.call_soon_threadsafe(resolve, fut, None, None)
                    return
        finally:
            conn.close()

    def _run_batch(self, conn: Any, works: list[Any]) -> list[Any]:
        """Apply every request in one transaction; results (or exceptions) in order."""
        try:
            with conn.begin():
                return [self._apply(conn, work) for work in works]
        except Exception:
            # One bad request must not fail the others: retry each in its own transaction.
            results: list[Any] = []
            for work in works:
                try:
                    with conn.begin():
                        results.append(self._apply(conn, work))
                except Exception as exc:  # noqa: BLE001 - handed to the waiting caller
                    results.append(exc)
            return results

    def _write_batch(self, conn: Any, batch: list[Any]) -> None:
        results = self._run_batch(conn, [work for work, _, _ in batch])
        # One wake-up per event loop for the whole batch, not one per caller.
        by_loop: dict[Any, list[tuple[asyncio.Future[Any], Any]]] = {}
        for (_, loop, fut), result in zip(batch, results):
            by_loop.setdefault(loop, []).append((fut, result))
        for loop, items in by_loop.items():
            loop.call_soon_threadsafe(resolve_all, items)
