"""Console pages of runs: the list with its filters, one run as it goes (its graph coloured by
step status, history, state, cost, the live feed), and cancelling."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect

from orch.definition.compiled import CompiledGraph
from orch.definition.render_svg import render_svg
from orch.errors import NotPaused, RunNotFound
from orch.run.results import RunResult
from orch.server.context import Ctx, ServerContext
from orch.server.ui import queries
from orch.server.ui.access import PART_HEADER
from orch.server.ui.rendering import PREFIX, fragment, render

STATUSES = ("running", "paused", "completed", "failed", "cancelled")
PAGE_SIZE = 25


def _filters(status: str | None, orchestration: str | None, since: str | None) -> dict[str, str]:
    return {k: v for k, v in (("status", status if status in STATUSES else ""),
                              ("orchestration", orchestration or ""),
                              ("since", since if since in queries.SINCE else "")) if v}


@get("/runs", name="runs")
async def runs_page(request: Request[Any, Any, Any], ctx: Ctx, status: FromQuery[str | None] = None,
                    orchestration: FromQuery[str | None] = None, since: FromQuery[str | None] = None,
                    cursor: FromQuery[str | None] = None) -> Response[Any]:
    filters = _filters(status, orchestration, since)
    page = await queries.run_page(ctx, orchestration_id=filters.get("orchestration"), status=filters.get("status"),
                                  since=filters.get("since"), cursor=cursor, limit=PAGE_SIZE)
    context: dict[str, Any] = dict(page=page, filters=filters, first_page=not cursor, names=_names(ctx))
    if request.headers.get(PART_HEADER):
        return fragment("run_rows.html", **context)
    return await render(request, "runs.html", section="runs", statuses=STATUSES, since_choices=queries.SINCE,
                        orchestrations=sorted(ctx.engine.graphs), **context)


def _names(ctx: ServerContext) -> dict[str, str]:
    return {gid: g.orchestration.name for gid, g in ctx.engine.graphs.items()}


def step_statuses(result: RunResult, where: queries.Positions) -> dict[str, str]:
    """Each step's status for the picture: its latest record, unless the run stands on it now."""
    statuses: dict[str, str] = {}
    for h in result.step_history or []:
        statuses[h.step_id] = h.status if h.status in ("completed", "failed", "skipped") else "completed"
    for sid in where.running:
        statuses[sid] = "running"
    for sid in where.waiting_join:
        statuses[sid] = "waiting-join"
    for sid in where.waiting_person:
        statuses[sid] = "waiting-person"
    return statuses


async def _run_context(ctx: ServerContext, run_id: str) -> dict[str, Any]:
    row = await queries.get_run(ctx, run_id)
    if row is None:
        raise RunNotFound(f"run '{run_id}' not found")
    result = await ctx.engine.result(run_id)
    graph: CompiledGraph | None
    try:
        graph = await ctx.engine.graph_for_version(row.version)
    except Exception:  # noqa: BLE001 - a definition no longer stored: the page shows the run without its graph
        graph = None
    statuses = step_statuses(result, await queries.positions(ctx, run_id))
    limit = graph.orchestration.max_total_cost_usd if graph else None
    return dict(run=row, result=result, graph=graph, statuses=statuses, cost_limit=limit,
                picture=render_svg(graph, statuses, id_prefix="run", embed_style=False) if graph else "")


@get("/runs/{run_id:str}", name="run")
async def run_page(request: Request[Any, Any, Any], ctx: Ctx, run_id: FromPath[str],
                   notice: FromQuery[str | None] = None) -> Response[Any]:
    context = await _run_context(ctx, run_id)
    return await render(request, "run.html", section="runs", notice=_NOTICES.get(notice or "", ""), **context)


@get("/runs/{run_id:str}/part", name="run-part")
async def run_part(ctx: Ctx, run_id: FromPath[str]) -> Response[Any]:
    return fragment("run_part.html", **await _run_context(ctx, run_id))


_NOTICES = {"answered": "Your answer was accepted; the run goes on.",
            "cancelled": "The run was cancelled.",
            "not-cancelled": "The run had already ended; nothing was cancelled."}


@post("/runs/{run_id:str}/cancel", status_code=303)
async def cancel_run(ctx: Ctx, run_id: FromPath[str]) -> Response[Any]:
    try:
        await ctx.engine.cancel(run_id)
        notice = "cancelled"
    except NotPaused:
        notice = "not-cancelled"
    return Redirect(f"{PREFIX}/runs/{run_id}?notice={notice}", status_code=303)
