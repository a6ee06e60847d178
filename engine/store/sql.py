"""The SQL store: SQLite (embedded default, WAL) or PostgreSQL, chosen by URL.

Checkpoint writes go through one writer thread with its own connection. Requests that arrive
while a transaction is being written wait and are committed together in the next one (group
commit, across runs), and each caller's future resolves only after its transaction committed,
so no successor step starts before its predecessor is durable. Every run-row update is fenced by
the run's `epoch`: a writer that lost the run (another process claimed it) changes nothing.
Reads run on a connection pool in worker threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from sqlalchemy import Engine, and_, bindparam, case, create_engine, event, func, select, text, update
from sqlalchemy.exc import OperationalError
from sqlmodel import SQLModel

from orch.store.prepared import Prepared, raw_connection, resolve, resolve_all
from orch.store.tables import ApiKeyRow, DefinitionRow, EventRow, IdempotencyRow, RunRow, StepRow

RUNS, STEPS, EVENTS = RunRow.__table__, StepRow.__table__, EventRow.__table__  # type: ignore[attr-defined]
DEFS, IDEM, KEYS = DefinitionRow.__table__, IdempotencyRow.__table__, ApiKeyRow.__table__  # type: ignore[attr-defined]
RUN_COLUMNS = tuple(c.name for c in RUNS.columns)
RUN_DEFAULTS = {c.name: (c.default.arg if c.default is not None and not callable(c.default.arg) else None)
                for c in RUNS.columns}
STEP_COLUMNS = tuple(c.name for c in STEPS.columns)


def stored_text(value: str) -> str:
    """A string as a text column keeps it: PostgreSQL text cannot hold NUL, so it becomes U+FFFD
    (on every backend alike). JSON columns escape NUL and keep it exactly."""
    return value.replace("\x00", "\ufffd")


def _text_columns(values: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys:
        value = values.get(key)
        if isinstance(value, str) and "\x00" in value:
            values[key] = stored_text(value)


def normalize_url(url: str) -> str:
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if "://" not in url:  # a bare path is a SQLite file
        url = f"sqlite:///{url}"
    return url


@dataclass
class Checkpoint:
    """One transaction's worth of a run's progress."""

    run_id: str
    epoch: int
    run: dict[str, Any]  # columns of the run row to update
    steps: list[dict[str, Any]] = field(default_factory=list)  # step records to insert
    events: list[tuple[int, bytes]] = field(default_factory=list)  # (seq, encoded event)


class Fenced(Exception):
    """The run's epoch moved on: another owner claimed it."""


def _update_run_stmt(cols: tuple[str, ...]) -> Any:
    return (
        update(RUNS)
        .where(and_(RUNS.c.id == bindparam("_id"), RUNS.c.epoch == bindparam("_epoch")))
        .values({c: bindparam(c) for c in cols})
    )


class SQLStore:
    def __init__(self, url: str, *, synchronous: str = "NORMAL") -> None:
        self.url = normalize_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        self.synchronous = synchronous.upper()
        self._engine = self._make_engine()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._conn: Any = None  # the writer connection
        self._connected = threading.Event()
        self._lock = threading.Lock()  # held by whoever writes on the writer connection
        self._inline_ok = self.is_sqlite
        self._readers: concurrent.futures.ThreadPoolExecutor | None = None
        self._local: list[tuple[Any, asyncio.Future[Any]]] = []  # submitted on the loop, not yet written
        self._insert_step = STEPS.insert()
        self._insert_event = EVENTS.insert()
        dialect = self._engine.dialect
        self._step_sql = Prepared(STEPS.insert().values({c: bindparam(c) for c in STEP_COLUMNS}), dialect)
        self._event_sql = Prepared(EVENTS.insert().values(run_id=bindparam("run_id"), seq=bindparam("seq"),
                                                           body=bindparam("body")), dialect)
        self._update_sql: dict[tuple[str, ...], Prepared] = {}
        self._insert_run_sql: dict[tuple[str, ...], Prepared] = {}

    def _make_engine(self) -> Engine:
        if self.is_sqlite:
            eng = create_engine(self.url, connect_args={"check_same_thread": False, "timeout": 30})

            @event.listens_for(eng, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute(f"PRAGMA synchronous={self.synchronous}")
                cur.execute("PRAGMA busy_timeout=30000")
                cur.close()

            return eng
        return create_engine(self.url, pool_size=10, max_overflow=20, pool_pre_ping=True)

    # -- lifecycle ---------------------------------------------------------------------------

    def _create_tables(self) -> None:
        with self._engine.begin() as conn:
            if not self.is_sqlite:  # servers starting together must not race to create the tables
                conn.execute(text("SELECT pg_advisory_xact_lock(727274)"))
            SQLModel.metadata.create_all(conn)

    async def open(self) -> None:
        await asyncio.to_thread(self._create_tables)
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_loop, name="orch-store-writer", daemon=True)
            self._writer.start()
            await asyncio.to_thread(self._connected.wait)

    async def close(self) -> None:
        if self._writer is not None:
            fut = asyncio.get_running_loop().create_future()
            self._queue.put((None, asyncio.get_running_loop(), fut))
            await fut
            self._writer.join()
            self._writer = None
            self._conn = None
            self._connected.clear()
        if self._readers is not None:
            self._readers.shutdown(wait=True)
            self._readers = None
        self._engine.dispose()

    # -- the writer thread -------------------------------------------------------------------

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

    def _apply(self, conn: Any, work: Any) -> Any:
        if isinstance(work, Checkpoint):
            _text_columns(work.run, ("response", "error"))
            for record in work.steps:
                _text_columns(record, ("error",))
            cols = tuple(sorted(work.run))
            upd = self._update_sql.get(cols)
            if upd is None:
                upd = self._update_sql[cols] = Prepared(_update_run_stmt(cols), self._engine.dialect)
            cur = conn.connection.dbapi_connection.cursor()
            try:
                cur.execute(upd.sql, upd.params({"_id": work.run_id, "_epoch": work.epoch, **work.run}))
                if cur.rowcount != 1:
                    return Fenced(work.run_id)
                if work.steps:
                    cur.executemany(self._step_sql.sql, [self._step_sql.params(s) for s in work.steps])
                if work.events:
                    ev = self._event_sql
                    cur.executemany(ev.sql, [ev.params({"run_id": work.run_id, "seq": s, "body": b})
                                             for s, b in work.events])
            finally:
                cur.close()
            return True
        return work(conn)

    # -- writes ------------------------------------------------------------------------------

    async def checkpoint(self, cp: Checkpoint) -> None:
        result = await self._submit(cp)
        if isinstance(result, Fenced):
            raise result

    async def save_definition(self, version: str, orchestration_id: str, body: str) -> None:
        def work(conn: Any) -> None:
            exists = conn.execute(select(DEFS.c.version).where(DEFS.c.version == version)).first()
            if not exists:
                conn.execute(DEFS.insert(), {"version": version, "orchestration_id": orchestration_id,
                                             "body": body, "created_at": time.time()})

        await self._submit(work)

    async def create_run(self, row: dict[str, Any], events: Sequence[tuple[int, bytes]] = (),
                         idempotency_key: str | None = None, steps: Sequence[dict[str, Any]] = ()) -> str:
        """Insert a run; with an idempotency key already used, return that key's run id instead."""

        def work(conn: Any) -> str:
            if idempotency_key is not None:
                found = conn.execute(select(IDEM.c.run_id).where(IDEM.c.key == idempotency_key)).first()
                if found:
                    return str(found[0])
                conn.execute(IDEM.insert(), {"key": idempotency_key, "run_id": row["id"], "created_at": time.time()})
            cur = conn.connection.dbapi_connection.cursor()
            try:
                self._insert_run(cur, row, list(steps))
                if events:
                    ev = self._event_sql
                    cur.executemany(ev.sql, [ev.params({"run_id": row["id"], "seq": s, "body": b}) for s, b in events])
            finally:
                cur.close()
            return str(row["id"])

        return str(await self._submit(work))

    def _insert_run(self, cur: Any, row: dict[str, Any], steps: list[dict[str, Any]]) -> None:
        _text_columns(row, ("message",))
        cols = tuple(sorted(row))
        ins = self._insert_run_sql.get(cols)
        if ins is None:
            ins = self._insert_run_sql[cols] = Prepared(
                RUNS.insert().values({c: bindparam(c) for c in cols}), self._engine.dialect)
        cur.execute(ins.sql, ins.params({**RUN_DEFAULTS, **row}))
        if steps:
            cur.executemany(self._step_sql.sql, [self._step_sql.params(s) for s in steps])

    async def claim_paused(self, run_id: str, owner: str, lease_seconds: float,
                           idempotency_keys: Sequence[str] = ()) -> int | None:
        """Compare-and-set paused → running; the new epoch, or None when the run was not paused.
        The winner records the idempotency keys in the same transaction."""

        def work(conn: Any) -> int | None:
            res = conn.execute(
                update(RUNS).where(and_(RUNS.c.id == run_id, RUNS.c.status == "paused"))
                .values(status="running", epoch=RUNS.c.epoch + 1, owner=owner,
                        lease_until=time.time() + lease_seconds, updated_at=time.time())
            )
            if res.rowcount != 1:
                return None
            for key in idempotency_keys:
                conn.execute(IDEM.insert(), {"key": key, "run_id": run_id, "created_at": time.time()})
            return int(conn.execute(select(RUNS.c.epoch).where(RUNS.c.id == run_id)).scalar_one())

        return await self._submit(work)  # type: ignore[no-any-return]

    async def idempotent_runs(self, keys: Sequence[str]) -> dict[str, str]:
        """The run each of these idempotency keys was first used for, for those that were."""
        rows = await self._in_reader(self._read, select(IDEM.c.key, IDEM.c.run_id).where(IDEM.c.key.in_(list(keys))))
        return {str(r["key"]): str(r["run_id"]) for r in rows}

    async def claim_orphans(self, owner: str, lease_seconds: float,
                            owner_is_dead: Callable[[str | None], bool] = lambda o: False) -> list[tuple[str, int]]:
        """Take over runs left `running` whose lease expired, or whose owner is known to be dead
        (a process of this host that no longer exists). PostgreSQL skips rows another claimer
        holds."""

        def work(conn: Any) -> list[tuple[str, int]]:
            now = time.time()
            q = select(RUNS.c.id, RUNS.c.owner, RUNS.c.lease_until).where(RUNS.c.status == "running")
            if not self.is_sqlite:
                q = q.with_for_update(skip_locked=True)
            ids = [r[0] for r in conn.execute(q)
                   if r[2] is None or r[2] < now or (r[1] != owner and owner_is_dead(r[1]))]
            claimed = []
            for rid in ids:
                conn.execute(update(RUNS).where(RUNS.c.id == rid).values(
                    epoch=RUNS.c.epoch + 1, owner=owner, lease_until=now + lease_seconds))
                epoch = conn.execute(select(RUNS.c.epoch).where(RUNS.c.id == rid)).scalar_one()
                claimed.append((rid, int(epoch)))
            return claimed

        return await self._submit(work)  # type: ignore[no-any-return]

    async def release_leases(self, owner: str) -> None:
        def work(conn: Any) -> None:
            conn.execute(update(RUNS).where(and_(RUNS.c.owner == owner, RUNS.c.status == "running"))
                         .values(lease_until=None))

        await self._submit(work)

    async def renew_leases(self, owner: str, run_ids: Iterable[str], lease_seconds: float) -> None:
        ids = list(run_ids)
        if not ids:
            return

        def work(conn: Any) -> None:
            conn.execute(update(RUNS).where(and_(RUNS.c.id.in_(ids), RUNS.c.owner == owner))
                         .values(lease_until=time.time() + lease_seconds))

        await self._submit(work)

    async def end_run(self, run_id: str, status: str, message: str, *, expect: Sequence[str], events: list[Any],
                      deadline_passed: bool = False, live_gap: int = 0) -> bool:
        """Compare-and-set a run to a final status from outside its driver, fencing the driver off
        and appending `events` (their run_id/seq/ts are set here) after the last stored event —
        `live_gap` numbers further on when the run was running, past any event its driver may
        have streamed without storing it yet."""
        from orch.events import encode_event

        def work(conn: Any) -> bool:
            now = time.time()
            cond = and_(RUNS.c.id == run_id, RUNS.c.status.in_(list(expect)))
            if deadline_passed:
                cond = and_(cond, RUNS.c.gate_deadline.is_not(None), RUNS.c.gate_deadline <= now)
            clean = stored_text(message)
            res = conn.execute(update(RUNS).where(cond).values(
                status=status, error=clean, response=clean, finished_at=now, updated_at=now,
                epoch=RUNS.c.epoch + 1,
                last_seq=RUNS.c.last_seq + case((RUNS.c.status == "running", live_gap), else_=0) + len(events)))
            if res.rowcount != 1:
                return False
            last = int(conn.execute(select(RUNS.c.last_seq).where(RUNS.c.id == run_id)).scalar_one())
            rows = []
            for i, e in enumerate(events):
                e.run_id, e.seq, e.ts = run_id, last - len(events) + 1 + i, now
                rows.append({"run_id": run_id, "seq": e.seq, "body": encode_event(e)})
            conn.execute(self._insert_event, rows)
            return True

        return bool(await self._submit(work))

    async def add_api_key(self, key_id: str, name: str, key_hash: str) -> None:
        def work(conn: Any) -> None:
            conn.execute(KEYS.insert(), {"id": key_id, "name": name, "key_hash": key_hash, "created_at": time.time()})

        await self._submit(work)

    # -- reads -------------------------------------------------------------------------------

    async def _in_reader(self, fn: Any, *args: Any) -> Any:
        """Reads run on the store's own threads, never queued behind tools or other work."""
        if self._readers is None:
            self._readers = concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="orch-store-read")
        return await asyncio.get_running_loop().run_in_executor(self._readers, fn, *args)

    def _read(self, stmt: Any) -> list[Any]:
        with self._engine.connect() as conn:
            return list(conn.execute(stmt).mappings())

    async def get_run(self, run_id: str) -> dict[str, Any] | None:
        rows = await self._in_reader(self._read, select(RUNS).where(RUNS.c.id == run_id))
        return dict(rows[0]) if rows else None

    async def list_runs(self, *, orchestration_id: str | None = None, status: str | None = None,
                        limit: int = 50, before: tuple[float, str] | None = None) -> list[dict[str, Any]]:
        q = select(*[RUNS.c[c] for c in RUN_COLUMNS if c not in ("frontier", "state")])
        if orchestration_id:
            q = q.where(RUNS.c.orchestration_id == orchestration_id)
        if status:
            q = q.where(RUNS.c.status == status)
        if before is not None:
            q = q.where((RUNS.c.created_at < before[0]) | and_(RUNS.c.created_at == before[0], RUNS.c.id < before[1]))
        q = q.order_by(RUNS.c.created_at.desc(), RUNS.c.id.desc()).limit(limit)
        return [dict(r) for r in await self._in_reader(self._read, q)]

    async def step_records(self, run_id: str, *, first_only: bool = False) -> list[dict[str, Any]]:
        q = select(STEPS).where(STEPS.c.run_id == run_id).order_by(STEPS.c.idx)
        if first_only:  # the run's input record
            q = q.limit(1)
        return [dict(r) for r in await self._in_reader(self._read, q)]

    async def events(self, run_id: str, after: int = 0) -> list[tuple[int, bytes]]:
        q = select(EVENTS.c.seq, EVENTS.c.body).where(and_(EVENTS.c.run_id == run_id, EVENTS.c.seq > after)).order_by(EVENTS.c.seq)
        return [(r["seq"], bytes(r["body"])) for r in await self._in_reader(self._read, q)]

    async def get_definition(self, version: str) -> str | None:
        rows = await self._in_reader(self._read, select(DEFS.c.body).where(DEFS.c.version == version))
        return str(rows[0]["body"]) if rows else None

    async def runs_with_status(self, status: str) -> list[dict[str, Any]]:
        return [dict(r) for r in await self._in_reader(self._read, select(RUNS).where(RUNS.c.status == status))]

    async def api_key_hashes(self) -> list[str]:
        return [r["key_hash"] for r in await self._in_reader(self._read, select(KEYS.c.key_hash))]

    async def count(self, table: str) -> int:
        t = {"runs": RUNS, "step_records": STEPS, "events": EVENTS}[table]
        rows = await self._in_reader(self._read, select(func.count()).select_from(t))
        return int(list(rows[0].values())[0])


__all__ = ["SQLStore", "Checkpoint", "Fenced", "normalize_url"]
