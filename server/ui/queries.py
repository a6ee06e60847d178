"""Every store read of the console, in one place.

Pages read runs through the engine's public methods where they exist (`get_run`, `result`,
`graphs`, `graph_for_version`); the reads the engine does not offer (run lists, the steps a run
stands at) are here, so a change of the store or of the run model changes this module only.
"""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass
import msgspec

from orch.errors import RunNotFound
from orch.run import scheduler
from orch.run.model import Run, RunStatus
from orch.server.context import ServerContext

SINCE = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}


@dataclass(frozen=True)
class RunRow:
    run_id: str
    orchestration_id: str
    version: str
    status: str
    message: str
    cost_usd: float
    turns: int
    created_at: float
    updated_at: float
    finished_at: float | None
    parent_run_id: str | None
    last_seq: int
    response: str | None
    error: str | None


def _row(r: Run) -> RunRow:
    return RunRow(
        run_id=r.id, orchestration_id=r.orchestration_id, version=r.version, status=str(r.status),
        message=r.message, cost_usd=r.cost_usd, turns=r.turns, created_at=r.created_at, updated_at=r.updated_at,
        finished_at=r.finished_at, parent_run_id=r.parent_run_id, last_seq=r.last_seq, response=r.response,
        error=r.error,
    )


def encode_cursor(row: RunRow) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode([row.created_at, row.run_id])).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str] | None:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return msgspec.json.decode(raw, type=tuple[float, str])
    except (binascii.Error, ValueError, msgspec.DecodeError):
        return None


@dataclass(frozen=True)
class RunPage:
    runs: list[RunRow]
    next_cursor: str | None


async def run_page(ctx: ServerContext, *, orchestration_id: str | None = None, status: str | None = None,
                   since: str | None = None, cursor: str | None = None, limit: int = 25,
                   top_level: bool = False) -> RunPage:
    """Runs newest first, `limit` at a time; `since` keeps those started within 1h/24h/7d/30d;
    `top_level` leaves out the child runs of sub-orchestrations."""
    before = decode_cursor(cursor) if cursor else None
    oldest = time.time() - SINCE[since] if since in SINCE else None
    found: list[RunRow] = []
    more = False
    while len(found) <= limit:
        rows = [_row(r) for r in await ctx.engine.store.list_runs(
            orchestration_id=orchestration_id or None, status=status or None, limit=limit + 1, before=before)]
        if oldest is not None and any(r.created_at < oldest for r in rows):
            found += [r for r in rows if r.created_at >= oldest and not (top_level and r.parent_run_id)]
            break
        found += [r for r in rows if not (top_level and r.parent_run_id)]
        if len(rows) <= limit:
            break
        before = (rows[-1].created_at, rows[-1].run_id)
    if len(found) > limit:
        found, more = found[:limit], True
    return RunPage(found, encode_cursor(found[-1]) if more and found else None)


async def get_run(ctx: ServerContext, run_id: str) -> RunRow | None:
    try:
        return _row(await ctx.engine.get_run(run_id))
    except RunNotFound:
        return None


@dataclass(frozen=True)
class Positions:
    """Where an unfinished run stands: steps ready or running, steps waiting where branches
    meet, and steps waiting for a person."""

    running: frozenset[str] = frozenset()
    waiting_join: frozenset[str] = frozenset()
    waiting_person: frozenset[str] = frozenset()


async def positions(ctx: ServerContext, run_id: str) -> Positions:
    run = await ctx.engine.store.get_run(run_id)
    if run is None or not run.frontier or run.status.final:
        return Positions()
    frontier = scheduler.decode(run.frontier)
    return Positions(
        running=frozenset(t.step_id for t in frontier.tokens.values()) if run.status == RunStatus.RUNNING
        else frozenset(),
        # Where branches meet: tokens held at a meeting step, and joins some branch reached.
        waiting_join=frozenset({t.step_id for t in frontier.waiting}
                               | {s.join for s in frontier.scopes.values() if s.join and s.arrived}),
        waiting_person=frozenset(t.step_id for t in frontier.gates),
    )


async def open_gate_count(ctx: ServerContext, cap: int = 100) -> int:
    """How many runs wait for a person (counted up to `cap`)."""
    runs = await ctx.engine.store.list_runs(status=RunStatus.PAUSED, limit=cap)
    return sum(1 for r in runs if not r.parent_run_id)
