"""Running orchestrations and answering their gates, synchronously or as an SSE stream.

The synchronous endpoints wait for the run to complete, pause or fail. The wait is shielded by
the engine, so a client that disconnects does not stop the run. The streaming endpoints send
the run's events from its start (or from the gate being answered) to the next `done` event.
"""

from __future__ import annotations

from typing import Annotated

from litestar import Router, post
from litestar.params import FromPath, HeaderParameter, JSONBody
from litestar.response import Stream

from orch.run.results import RunResult
from orch.server.context import Ctx, ServerContext
from orch.server.errors import error_responses
from orch.server.schemas import ResumeRequest, RunRequest
from orch.server.sse import EVENT_STREAM, MEDIA_TYPE, event_stream

IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(name="Idempotency-Key", min_length=1, max_length=255, required=False,
                    description="Repeating a request with the same key returns the outcome of the first one "
                                "(no second run, no second answer); reusing a key with another request "
                                "(orchestration, message, state, or answer) gets 422"),
]
START_ERRORS = error_responses(404, 422)
RESUME_ERRORS = error_responses(404, 409, 422)


async def start(ctx: ServerContext, orch_id: str, data: RunRequest, idempotency_key: str | None) -> str:
    return await ctx.engine.start(orch_id, data.message, data.state, idempotency_key=idempotency_key)


@post("/{orch_id:str}/run", status_code=200, responses=START_ERRORS,
      summary="Start an orchestration and wait until it completes, pauses at a gate or fails")
async def run_orchestration(ctx: Ctx, orch_id: FromPath[str], data: JSONBody[RunRequest],
                            idempotency_key: IdempotencyKey = None) -> RunResult:
    return await ctx.engine.wait(await start(ctx, orch_id, data, idempotency_key))


@post("/{orch_id:str}/run/stream", status_code=200, media_type=MEDIA_TYPE, responses={**START_ERRORS, **EVENT_STREAM},
      summary="Start an orchestration and stream its events (SSE) until it pauses or ends")
async def stream_orchestration(ctx: Ctx, orch_id: FromPath[str], data: JSONBody[RunRequest],
                               idempotency_key: IdempotencyKey = None) -> Stream:
    return event_stream(ctx.feed(await start(ctx, orch_id, data, idempotency_key)))


@post("/runs/{run_id:str}/resume", status_code=200, responses=RESUME_ERRORS,
      summary="Answer a paused run's gate and wait until it completes, pauses again or fails")
async def resume_run(ctx: Ctx, run_id: FromPath[str], data: JSONBody[ResumeRequest],
                     idempotency_key: IdempotencyKey = None) -> RunResult:
    return await ctx.engine.wait(await ctx.engine.resume(run_id, data.response, idempotency_key=idempotency_key))


@post("/runs/{run_id:str}/resume/stream", status_code=200, media_type=MEDIA_TYPE,
      responses={**RESUME_ERRORS, **EVENT_STREAM},
      summary="Answer a paused run's gate and stream its events (SSE) until it pauses again or ends")
async def stream_resume(ctx: Ctx, run_id: FromPath[str], data: JSONBody[ResumeRequest],
                        idempotency_key: IdempotencyKey = None) -> Stream:
    run = await ctx.engine.get_run(run_id)
    await ctx.engine.resume(run_id, data.response, idempotency_key=idempotency_key)
    return event_stream(ctx.feed(run_id, after=run.last_seq))  # the paused run's last event was `done`


router = Router(path="/orchestrations", tags=["runs"],
                route_handlers=[run_orchestration, stream_orchestration, resume_run, stream_resume])
