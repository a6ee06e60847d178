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

from orch.run.engine import Engine
from orch.run.model import Run
from orch.run.results import RunResult, iso
from orch.server.context import Ctx
from orch.server.errors import error_responses
from orch.server.schemas import RunDetail, RunPage, RunStatus, RunSummary
from orch.server.sse import EVENT_STREAM, MEDIA_TYPE, event_stream

MAX_SEQ = 2**53  # beyond any real seq, and within what every database stores as an integer
# Bounds are written gt=-1 rather than ge=0: Litestar leaves a zero bound out of the OpenAPI schema.


def encode_cursor(run: Run) -> str:
    raw = msgspec.json.encode([run.created_at, run.id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        created_at, run_id = msgspec.json.decode(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)),
                                                 type=tuple[float, str])
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise ValidationException(extra=[{"key": "cursor", "source": "query",
                                          "message": "is not a cursor this API returned"}]) from None
    return created_at, run_id


def summary(run: Run) -> RunSummary:
    return RunSummary(
        run_id=run.id, orchestration_id=run.orchestration_id, status=run.status, message=run.message,
        total_cost_usd=round(run.cost_usd, 8), turns=run.turns, created_at=iso(run.created_at),
        updated_at=iso(run.updated_at), finished_at=iso(run.finished_at) if run.finished_at else None,
        parent_run_id=run.parent_run_id,
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
    runs = await ctx.engine.store.list_runs(orchestration_id=orchestration_id, status=status, limit=limit + 1,
                                            before=before)
    page = runs[:limit]
    more = len(runs) > limit
    return RunPage(runs=[summary(r) for r in page], next_cursor=encode_cursor(page[-1]) if more else None)


@get("/{run_id:str}", summary="A run's status, state, history, pending gate, cost and timestamps",
     responses=error_responses(404))
async def get_run(ctx: Ctx, run_id: FromPath[str]) -> RunDetail:
    return await run_detail(ctx.engine, run_id)


async def run_detail(engine: Engine, run_id: str) -> RunDetail:
    run = await engine.get_run(run_id)
    result = await engine.result(run_id)
    gate = result.human_input_required
    return RunDetail(
        run_id=run.id, orchestration_id=run.orchestration_id, version=run.version, status=result.status,
        message=run.message, state=result.shared_state or {}, step_history=result.step_history or [],
        human_input_required=gate or None, response=run.response, error=run.error,
        total_cost_usd=round(run.cost_usd, 8), turns=run.turns, last_event_id=run.last_seq,
        created_at=iso(run.created_at), updated_at=iso(run.updated_at),
        finished_at=iso(run.finished_at) if run.finished_at else None, parent_run_id=run.parent_run_id,
    )


@post("/{run_id:str}/cancel", status_code=200, summary="Stop a running or paused run",
      responses=error_responses(404, 409))
async def cancel_run(ctx: Ctx, run_id: FromPath[str]) -> RunResult:
    return await ctx.engine.cancel(run_id)


@get("/{run_id:str}/events", media_type=MEDIA_TYPE, responses={**error_responses(404), **EVENT_STREAM},
     summary="Every event of a run (SSE) after Last-Event-ID, then the live run until it pauses or ends")
async def run_events(
    ctx: Ctx,
    run_id: FromPath[str],
    last_event_id: Annotated[int | None, HeaderParameter(
        name="Last-Event-ID", gt=-1, le=MAX_SEQ, required=False,
        description="Resume after this event (EventSource sends it when it reconnects)")] = None,
    after: Annotated[int | None, QueryParameter(gt=-1, le=MAX_SEQ, description="Same as Last-Event-ID")] = None,
) -> Stream:
    await ctx.engine.get_run(run_id)
    start = last_event_id if last_event_id is not None else after or 0
    return event_stream(ctx.feed(run_id, after=start))


router = Router(path="/orchestrations/runs", tags=["runs"], route_handlers=[list_runs, get_run, cancel_run, run_events])
