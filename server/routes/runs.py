"""Runs: look them up, list them, cancel them, and follow their events (SSE, resumable)."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

import msgspec
from litestar import Router, get, post
from litestar.exceptions import ValidationException
from litestar.params import FromPath, FromQuery, HeaderParameter, QueryParameter
from litestar.response import Stream

from orch.errors import RunNotFound
from orch.run.results import RunResult, iso
from orch.server.context import Ctx
from orch.server.errors import error_responses
from orch.server.schemas import RunDetail, RunPage, RunStatus, RunSummary
from orch.server.sse import MEDIA_TYPE, event_stream

MAX_SEQ = 2**53  # beyond any real seq, and within what every database stores as an integer
# Bounds are written gt=-1 rather than ge=0: Litestar leaves a zero bound out of the OpenAPI schema.


def encode_cursor(row: dict[str, Any]) -> str:
    raw = msgspec.json.encode([row["created_at"], row["id"]])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        created_at, run_id = msgspec.json.decode(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)),
                                                 type=tuple[float, str])
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise ValidationException(extra=[{"key": "cursor", "source": "query",
                                          "message": "is not a cursor this API returned"}]) from None
    return created_at, run_id


def summary(row: dict[str, Any]) -> RunSummary:
    return RunSummary(
        run_id=row["id"], orchestration_id=row["orchestration_id"], status=row["status"], message=row["message"],
        total_cost_usd=round(row["cost_usd"], 8), turns=row["turns"], created_at=iso(row["created_at"]),
        updated_at=iso(row["updated_at"]), finished_at=iso(row["finished_at"]) if row["finished_at"] else None,
        parent_run_id=row["parent_run_id"],
    )


@get("/", summary="List runs, newest first", responses=error_responses())
async def list_runs(
    ctx: Ctx,
    orchestration_id: FromQuery[str | None] = None,
    status: FromQuery[RunStatus | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, QueryParameter(max_length=500, description="next_cursor of the previous page")] = None,
) -> RunPage:
    before = decode_cursor(cursor) if cursor else None
    rows = await ctx.engine.store.list_runs(orchestration_id=orchestration_id, status=status, limit=limit + 1,
                                            before=before)
    page = rows[:limit]
    more = len(rows) > limit
    return RunPage(runs=[summary(r) for r in page], next_cursor=encode_cursor(page[-1]) if more else None)


@get("/{run_id:str}", summary="A run's status, state, history, pending gate, cost and timestamps",
     responses=error_responses(404))
async def get_run(ctx: Ctx, run_id: FromPath[str]) -> RunDetail:
    row = await ctx.engine.store.get_run(run_id)
    if row is None:
        raise RunNotFound(f"run '{run_id}' not found")
    result = await ctx.engine.result(run_id)
    gate = result.human_input_required
    return RunDetail(
        run_id=row["id"], orchestration_id=row["orchestration_id"], version=row["version"], status=result.status,
        message=row["message"], state=result.shared_state or {}, step_history=result.step_history or [],
        human_input_required=gate or None, response=row["response"], error=row["error"],
        total_cost_usd=round(row["cost_usd"], 8), turns=row["turns"], last_event_id=row["last_seq"],
        created_at=iso(row["created_at"]), updated_at=iso(row["updated_at"]),
        finished_at=iso(row["finished_at"]) if row["finished_at"] else None, parent_run_id=row["parent_run_id"],
    )


@post("/{run_id:str}/cancel", status_code=200, summary="Stop a running or paused run",
      responses=error_responses(404, 409))
async def cancel_run(ctx: Ctx, run_id: FromPath[str]) -> RunResult:
    return await ctx.engine.cancel(run_id)


@get("/{run_id:str}/events", media_type=MEDIA_TYPE, responses=error_responses(404),
     summary="Every event of a run (SSE) after Last-Event-ID, then the live run until it pauses or ends")
async def run_events(
    ctx: Ctx,
    run_id: FromPath[str],
    last_event_id: Annotated[int | None, HeaderParameter(
        name="Last-Event-ID", gt=-1, le=MAX_SEQ, required=False,
        description="Resume after this event (EventSource sends it when it reconnects)")] = None,
    after: Annotated[int | None, QueryParameter(gt=-1, le=MAX_SEQ, description="Same as Last-Event-ID")] = None,
) -> Stream:
    if await ctx.engine.store.get_run(run_id) is None:
        raise RunNotFound(f"run '{run_id}' not found")
    start = last_event_id if last_event_id is not None else after or 0
    return event_stream(ctx.feed(run_id, after=start))


router = Router(path="/orchestrations/runs", tags=["runs"], route_handlers=[list_runs, get_run, cancel_run, run_events])
