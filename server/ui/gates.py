"""The gate inbox: every run waiting for a person, newest first, each with its prompt, the
agent's context and a form drawn from the gate's fields. An answer resumes the run; a refused
answer comes back with the error next to its field; a gate someone else answered says so."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect

from orch.errors import InvalidAnswer, NotPaused, RunNotFound
from orch.run.results import HumanInput
from orch.server.context import Ctx, ServerContext
from orch.server.ui import queries
from orch.server.ui.access import Form
from orch.server.ui.forms import Input, gate_answer, gate_inputs
from orch.server.ui.rendering import PREFIX, render

PAGE_SIZE = 20


@dataclass
class OpenGate:
    run: queries.RunRow
    name: str  # the orchestration's
    gate: HumanInput
    inputs: list[Input]
    error: str = ""


async def _open_gate(ctx: ServerContext, run: queries.RunRow, values: dict[str, str] | None = None,
                     errors: dict[str, str] | None = None, error: str = "", n: int = 0) -> OpenGate | None:
    result = await ctx.engine.result(run.run_id)
    gate = result.human_input_required
    if not isinstance(gate, HumanInput):
        return None
    graph = ctx.engine.graphs.get(run.orchestration_id)
    return OpenGate(run, graph.orchestration.name if graph else run.orchestration_id, gate,
                    gate_inputs(gate.fields, values, errors, prefix=f"g{n}-"), error)


async def _inbox(request: Request[Any, Any, Any], ctx: ServerContext, *, cursor: str | None = None,
                 run_id: str | None = None, status: int = 200, notice: str = "",
                 answered: OpenGate | None = None) -> Response[Any]:
    if run_id:
        row = await queries.get_run(ctx, run_id)
        rows, next_cursor = ([row] if row and row.status == "paused" else []), None
    else:
        page = await queries.run_page(ctx, status="paused", cursor=cursor, limit=PAGE_SIZE, top_level=True)
        rows, next_cursor = page.runs, page.next_cursor
    gates = []
    for n, row in enumerate(rows):
        if answered is not None and row.run_id == answered.run.run_id:
            gates.append(answered)
        elif (found := await _open_gate(ctx, row, n=n)) is not None:
            gates.append(found)
    return await render(request, "gates.html", status=status, section="gates", gates=gates, next_cursor=next_cursor,
                        first_page=not cursor, only_run=run_id or "", notice=notice)


def closed_notice(run_id: str, status: str) -> str:
    if status in ("running", "completed", "paused"):
        then = "it waits at another gate now" if status == "paused" else f"the run is {status} now"
        return f"This gate of run {run_id} was already answered by someone else; {then}."
    return f"This gate of run {run_id} is no longer open: the run is {status}."


@get("/gates", name="gates")
async def gates_page(request: Request[Any, Any, Any], ctx: Ctx, cursor: FromQuery[str | None] = None,
                     run: FromQuery[str | None] = None) -> Response[Any]:
    return await _inbox(request, ctx, cursor=cursor, run_id=run)


@post("/gates/{run_id:str}", status_code=303)
async def answer_gate(request: Request[Any, Any, Any], ctx: Ctx, run_id: FromPath[str], data: Form) -> Response[Any]:
    row = await queries.get_run(ctx, run_id)
    if row is None:
        raise RunNotFound(f"run '{run_id}' not found")
    shown = await _open_gate(ctx, row) if row.status == "paused" else None
    step_id = data.get("step_id", "")
    if shown is None or shown.gate.step_id != step_id:
        return await _inbox(request, ctx, status=409, notice=closed_notice(run_id, row.status))
    try:
        await ctx.engine.resume(run_id, gate_answer(shown.gate.fields, data), step_id=step_id)
    except InvalidAnswer as exc:
        fields = {str(f.get("name")) for f in shown.gate.fields} or {"response"}
        per_field = {k: v for k, v in exc.field_errors.items() if k in fields}
        rest = "; ".join(f"{k}: {v}" for k, v in exc.field_errors.items() if k not in fields)
        refused = await _open_gate(ctx, row, values=data, errors=per_field,
                                   error=rest or "The answer was not accepted: see the fields marked below.")
        return await _inbox(request, ctx, run_id=run_id, status=422, answered=refused)
    except NotPaused:
        fresh = await queries.get_run(ctx, run_id)
        return await _inbox(request, ctx, status=409, notice=closed_notice(run_id, fresh.status if fresh else "gone"))
    return Redirect(f"{PREFIX}/runs/{run_id}?notice=answered", status_code=303)
