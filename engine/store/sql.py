"""The SQL store (engine.store.base.RunStore): SQLite (embedded default, WAL) or PostgreSQL,
chosen by URL.

Writes go through one writer connection with group commit (engine.store.writer); checkpoints
use statements compiled once and run straight on the DBAPI cursor. Every run-row update is
fenced by the run's `epoch`: a writer that lost the run changes nothing. Reads run on a
connection pool in worker threads and come back as typed records (engine.run.model).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from typing import Any, Callable, Iterable, Mapping, Sequence

import msgspec
from sqlalchemy import Engine, and_, bindparam, case, create_engine, event, func, select, text, update
from sqlmodel import SQLModel

from orch.errors import RunFenced
from orch.events import stamp
from orch.run.model import Checkpoint, Gate, Run, RunEnding, RunStatus, StepRecord
from orch.store.base import ApiKey, stored_text
from orch.store.prepared import Prepared
from orch.store.tables import ApiKeyRow, DefinitionRow, EventRow, IdempotencyRow, RunRow, StepRow
from orch.store.writer import GroupWriter

RUNS, STEPS, EVENTS = RunRow.__table__, StepRow.__table__, EventRow.__table__  # type: ignore[attr-defined]
DEFS, IDEM, KEYS = DefinitionRow.__table__, IdempotencyRow.__table__, ApiKeyRow.__table__  # type: ignore[attr-defined]
RUN_COLUMNS = tuple(c.name for c in RUNS.columns)
RUN_DEFAULTS = {c.name: (c.default.arg if c.default is not None and not callable(c.default.arg) else None)
                for c in RUNS.columns}
STEP_COLUMNS = tuple(c.name for c in STEPS.columns)


def normalize_url(url: str) -> str:
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if "://" not in url:  # a bare path is a SQLite file
        url = f"sqlite:///{url}"
    return url


_gates = msgspec.json.Decoder(dict[str, Gate])
_state = msgspec.json.Decoder(dict[str, Any])
_json = msgspec.json.Encoder()
_CHECKPOINT_FIELDS = ("frontier", "cost_usd", "turns", "steps_done", "last_seq", "updated_at", "active_seconds")
_OPTIONAL_FIELDS = ("status", "state", "gates", "gate_deadline", "response", "error", "finished_at")


def run_from_row(row: Mapping[str, Any]) -> Run:
    gate, state = row.get("gate"), row.get("state")
    return Run(
        id=row["id"], orchestration_id=row["orchestration_id"], version=row["version"],
        status=RunStatus(row["status"]), message=row["message"], frontier=bytes(row.get("frontier") or b""),
        state=_state.decode(state) if state is not None else None, gates=_gates.decode(gate) if gate else {},
        response=row["response"], error=row["error"], cost_usd=row["cost_usd"], turns=row["turns"],
        steps_done=row["steps_done"], last_seq=row["last_seq"], active_seconds=row["active_seconds"],
        gate_deadline=row["gate_deadline"], created_at=row["created_at"], updated_at=row["updated_at"],
        finished_at=row["finished_at"], epoch=row["epoch"], owner=row["owner"], lease_until=row["lease_until"],
        parent_run_id=row["parent_run_id"], parent_step_id=row["parent_step_id"], depth=row["depth"],
    )


def step_from_row(row: Mapping[str, Any]) -> StepRecord:
    return StepRecord(
        run_id=row["run_id"], idx=row["idx"], step_id=row["step_id"], step_name=row["step_name"], type=row["type"],
        status=row["status"], iteration=row["iteration"], turns=row["turns"], cost_usd=row["cost_usd"],
        started_at=row["started_at"], ended_at=row["ended_at"], output_key=row["output_key"], error=row["error"],
        writes=bytes(row["writes"]),
    )


def run_columns(run: Run) -> dict[str, Any]:
    """The row a new run is inserted as."""
    values = {c: getattr(run, c) for c in RUN_COLUMNS if c not in ("gate", "state", "status", "message")}
    values.update(status=run.status.value, message=stored_text(run.message), state=None,
                  gate=_json.encode(run.gates).decode() if run.gates else None)
    return values


def step_columns(record: StepRecord) -> dict[str, Any]:
    values = msgspec.structs.asdict(record)
    if record.error is not None and "\x00" in record.error:
        values["error"] = stored_text(record.error)
    return values


def checkpoint_columns(cp: Checkpoint) -> dict[str, Any]:
    """The run-row columns a checkpoint sets."""
    values = {f: getattr(cp, f) for f in _CHECKPOINT_FIELDS}
    for f in _OPTIONAL_FIELDS:
        value = getattr(cp, f)
        if value is msgspec.UNSET:
            continue
        if f == "status":
            values["status"] = value.value
        elif f == "state":
            values["state"] = value.decode() if value is not None else None
        elif f == "gates":
            values["gate"] = _json.encode(value).decode() if value else None
        elif f in ("response", "error") and value is not None:
            values[f] = stored_text(value)
        else:
            values[f] = value
    return values


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
        self._writer = GroupWriter(self._engine, self._apply, inline_ok=self.is_sqlite)
        self._readers: concurrent.futures.ThreadPoolExecutor | None = None
        dialect = self._engine.dialect
        self._step_sql = Prepared(STEPS.insert().values({c: bindparam(c) for c in STEP_COLUMNS}), dialect)
        self._event_sql = Prepared(EVENTS.insert().values(run_id=bindparam("run_id"), seq=bindparam("seq"),
                                                           body=bindparam("body")), dialect)
        self._insert_run_sql = Prepared(RUNS.insert().values({c: bindparam(c) for c in RUN_COLUMNS}), dialect)
        self._update_sql: dict[tuple[str, ...], Prepared] = {}

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
        await self._writer.start()

    async def close(self) -> None:
        await self._writer.stop()
        if self._readers is not None:
            self._readers.shutdown(wait=True)
            self._readers = None
        self._engine.dispose()

    async def _submit(self, work: Any) -> Any:
        result = await self._writer.submit(work)
        if isinstance(result, BaseException):
            raise result
        return result

    def _apply(self, conn: Any, work: Any) -> Any:
        if not isinstance(work, Checkpoint):
            return work(conn)
        values = checkpoint_columns(work)
        cols = tuple(sorted(values))
        upd = self._update_sql.get(cols)
        if upd is None:
            upd = self._update_sql[cols] = Prepared(_update_run_stmt(cols), self._engine.dialect)
        cur = conn.connection.dbapi_connection.cursor()
        try:
            cur.execute(upd.sql, upd.params({"_id": work.run_id, "_epoch": work.epoch, **values}))
            if cur.rowcount != 1:
                return RunFenced(work.run_id)
            if work.steps:
                cur.executemany(self._step_sql.sql, [self._step_sql.params(step_columns(s)) for s in work.steps])
            if work.events:
                ev = self._event_sql
                cur.executemany(ev.sql, [ev.params({"run_id": work.run_id, "seq": s, "body": b})
                                         for s, b in work.events])
        finally:
            cur.close()
        return True

    # -- writes ------------------------------------------------------------------------------

    async def checkpoint(self, cp: Checkpoint) -> None:
        await self._submit(cp)

    async def save_definition(self, version: str, orchestration_id: str, body: str) -> None:
        def work(conn: Any) -> None:
            exists = conn.execute(select(DEFS.c.version).where(DEFS.c.version == version)).first()
            if not exists:
                conn.execute(DEFS.insert(), {"version": version, "orchestration_id": orchestration_id,
                                             "body": body, "created_at": time.time()})

        await self._submit(work)

    async def create_run(self, run: Run, steps: Sequence[StepRecord], events: Sequence[tuple[int, bytes]],
                         idempotency_key: str | None = None) -> str:
        def work(conn: Any) -> str:
            if idempotency_key is not None:
                found = conn.execute(select(IDEM.c.run_id).where(IDEM.c.key == idempotency_key)).first()
                if found:
                    return str(found[0])
                conn.execute(IDEM.insert(), {"key": idempotency_key, "run_id": run.id, "created_at": time.time()})
            cur = conn.connection.dbapi_connection.cursor()
            try:
                cur.execute(self._insert_run_sql.sql, self._insert_run_sql.params(run_columns(run)))
                if steps:
                    cur.executemany(self._step_sql.sql, [self._step_sql.params(step_columns(s)) for s in steps])
                if events:
                    ev = self._event_sql
                    cur.executemany(ev.sql, [ev.params({"run_id": run.id, "seq": s, "body": b}) for s, b in events])
            finally:
                cur.close()
            return run.id

        return str(await self._submit(work))

    async def claim_paused(self, run_id: str, owner: str, lease_seconds: float,
                           idempotency_keys: Sequence[str] = ()) -> int | None:
        def work(conn: Any) -> int | None:
            now = time.time()
            res = conn.execute(
                update(RUNS).where(and_(RUNS.c.id == run_id, RUNS.c.status == RunStatus.PAUSED.value))
                .values(status=RunStatus.RUNNING.value, epoch=RUNS.c.epoch + 1, owner=owner,
                        lease_until=now + lease_seconds, updated_at=now)
            )
            if res.rowcount != 1:
                return None
            for key in idempotency_keys:
                conn.execute(IDEM.insert(), {"key": key, "run_id": run_id, "created_at": now})
            return int(conn.execute(select(RUNS.c.epoch).where(RUNS.c.id == run_id)).scalar_one())

        return await self._submit(work)  # type: ignore[no-any-return]

    async def claim_orphans(self, owner: str, lease_seconds: float,
                            owner_is_dead: Callable[[str | None], bool] | None = None) -> list[tuple[str, int]]:
        """PostgreSQL skips rows another claimer holds."""

        def work(conn: Any) -> list[tuple[str, int]]:
            now = time.time()
            q = select(RUNS.c.id, RUNS.c.owner, RUNS.c.lease_until).where(RUNS.c.status == RunStatus.RUNNING.value)
            if not self.is_sqlite:
                q = q.with_for_update(skip_locked=True)
            ids = [r[0] for r in conn.execute(q)
                   if r[2] is None or r[2] < now or (owner_is_dead is not None and r[1] != owner
                                                     and owner_is_dead(r[1]))]
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
            conn.execute(update(RUNS).where(and_(RUNS.c.owner == owner, RUNS.c.status == RunStatus.RUNNING.value))
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

    async def end_run(self, run_id: str, ending: RunEnding) -> bool:
        def work(conn: Any) -> bool:
            now = time.time()
            cond = and_(RUNS.c.id == run_id, RUNS.c.status.in_([s.value for s in ending.expect]))
            if ending.deadline_passed:
                cond = and_(cond, RUNS.c.gate_deadline.is_not(None), RUNS.c.gate_deadline <= now)
            clean = stored_text(ending.message)
            events = ending.events
            gap = case((RUNS.c.status == RunStatus.RUNNING.value, ending.live_gap), else_=0)
            res = conn.execute(update(RUNS).where(cond).values(
                status=ending.status.value, error=clean, response=clean, finished_at=now, updated_at=now,
                state=None, epoch=RUNS.c.epoch + 1, last_seq=RUNS.c.last_seq + gap + len(events)))
            if res.rowcount != 1:
                return False
            last = int(conn.execute(select(RUNS.c.last_seq).where(RUNS.c.id == run_id)).scalar_one())
            stamped = stamp(events, run_id, last - len(events) + 1, now)
            rows = [{"run_id": run_id, "seq": seq, "body": body} for seq, body in stamped]
            if rows:
                conn.execute(EVENTS.insert(), rows)
            return True

        return bool(await self._submit(work))

    async def add_api_key(self, key_id: str, name: str, key_hash: str) -> None:
        def work(conn: Any) -> None:
            conn.execute(KEYS.insert(), {"id": key_id, "name": name, "key_hash": key_hash, "created_at": time.time()})

        await self._submit(work)

    async def revoke_api_key(self, key_id: str) -> bool:
        def work(conn: Any) -> bool:
            return bool(conn.execute(KEYS.delete().where(KEYS.c.id == key_id)).rowcount == 1)

        return bool(await self._submit(work))

    # -- reads -------------------------------------------------------------------------------

    async def _in_reader(self, fn: Any, *args: Any) -> Any:
        """Reads run on the store's own threads, never queued behind tools or other work."""
        if self._readers is None:
            self._readers = concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="orch-store-read")
        return await asyncio.get_running_loop().run_in_executor(self._readers, fn, *args)

    def _read(self, stmt: Any) -> list[Any]:
        with self._engine.connect() as conn:
            return list(conn.execute(stmt).mappings())

    async def ping(self) -> None:
        await self._in_reader(self._read, select(RUNS.c.id).where(RUNS.c.id == ""))

    async def get_run(self, run_id: str) -> Run | None:
        rows = await self._in_reader(self._read, select(RUNS).where(RUNS.c.id == run_id))
        return run_from_row(rows[0]) if rows else None

    async def list_runs(self, *, orchestration_id: str | None = None, status: RunStatus | str | None = None,
                        limit: int = 50, before: tuple[float, str] | None = None) -> list[Run]:
        q = select(*[RUNS.c[c] for c in RUN_COLUMNS if c not in ("frontier", "state")])
        if orchestration_id:
            q = q.where(RUNS.c.orchestration_id == orchestration_id)
        if status:
            q = q.where(RUNS.c.status == str(status))
        if before is not None:
            q = q.where((RUNS.c.created_at < before[0]) | and_(RUNS.c.created_at == before[0], RUNS.c.id < before[1]))
        q = q.order_by(RUNS.c.created_at.desc(), RUNS.c.id.desc()).limit(limit)
        return [run_from_row(r) for r in await self._in_reader(self._read, q)]

    async def runs_with_status(self, status: RunStatus) -> list[Run]:
        rows = await self._in_reader(self._read, select(RUNS).where(RUNS.c.status == status.value))
        return [run_from_row(r) for r in rows]

    async def step_records(self, run_id: str, *, first_only: bool = False) -> list[StepRecord]:
        q = select(STEPS).where(STEPS.c.run_id == run_id).order_by(STEPS.c.idx)
        if first_only:  # the run's input record
            q = q.limit(1)
        return [step_from_row(r) for r in await self._in_reader(self._read, q)]

    async def events(self, run_id: str, after: int = 0) -> list[tuple[int, bytes]]:
        q = (select(EVENTS.c.seq, EVENTS.c.body).where(and_(EVENTS.c.run_id == run_id, EVENTS.c.seq > after))
             .order_by(EVENTS.c.seq))
        return [(r["seq"], bytes(r["body"])) for r in await self._in_reader(self._read, q)]

    async def get_definition(self, version: str) -> str | None:
        rows = await self._in_reader(self._read, select(DEFS.c.body).where(DEFS.c.version == version))
        return str(rows[0]["body"]) if rows else None

    async def idempotent_runs(self, keys: Sequence[str]) -> dict[str, str]:
        rows = await self._in_reader(self._read, select(IDEM.c.key, IDEM.c.run_id).where(IDEM.c.key.in_(list(keys))))
        return {str(r["key"]): str(r["run_id"]) for r in rows}

    async def api_key_hashes(self) -> list[str]:
        return [r["key_hash"] for r in await self._in_reader(self._read, select(KEYS.c.key_hash))]

    async def api_keys(self) -> list[ApiKey]:
        q = select(KEYS.c.id, KEYS.c.name, KEYS.c.created_at).order_by(KEYS.c.created_at, KEYS.c.id)
        return [ApiKey(id=r["id"], name=r["name"], created_at=r["created_at"]) for r in await self._in_reader(self._read, q)]

    async def run_counts(self) -> dict[str, int]:
        q = select(RUNS.c.status, func.count().label("n")).group_by(RUNS.c.status)
        return {str(r["status"]): int(r["n"]) for r in await self._in_reader(self._read, q)}

    async def run_ids_with_prefix(self, prefix: str, limit: int = 2) -> list[str]:
        q = select(RUNS.c.id).where(RUNS.c.id.startswith(prefix, autoescape=True)).order_by(RUNS.c.id).limit(limit)
        return [str(r["id"]) for r in await self._in_reader(self._read, q)]

    async def count(self, table: str) -> int:
        t = {"runs": RUNS, "step_records": STEPS, "events": EVENTS}[table]
        rows = await self._in_reader(self._read, select(func.count()).select_from(t))
        return int(list(rows[0].values())[0])


__all__ = ["SQLStore", "normalize_url", "run_from_row", "step_from_row", "stored_text"]
