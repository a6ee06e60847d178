"""Console pages of orchestrations: the list (with the files left out at load), one
orchestration with its graph, and the form that starts a run."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.params import FromPath
from litestar.response import Redirect

from orch.definition.compiled import CompiledGraph
from orch.definition.render_svg import render_svg
from orch.definition.source_lines import SourceLines
from orch.errors import InvalidInput, Problem, RunNotFound
from orch.server.context import Ctx, ServerContext
from orch.server.ui.access import Form
from orch.server.ui.forms import parse_state, state_inputs
from orch.server.ui.rendering import PREFIX, render


@dataclass
class Located:
    problem: Problem
    line: int | None


@dataclass
class LeftOut:
    """A file, or an orchestration in it, that did not load."""

    file: str
    orchestration_id: str | None
    problems: list[Located] = field(default_factory=list)


def _lines(file: str | None, cache: dict[str, SourceLines | None]) -> SourceLines | None:
    if not file:
        return None
    if file not in cache:
        try:
            cache[file] = SourceLines(Path(file).read_text(encoding="utf-8"))
        except OSError:
            cache[file] = None
    return cache[file]


def left_out(ctx: ServerContext) -> list[LeftOut]:
    """Orchestrations rejected at load and files that held nothing loadable, with every error."""
    report = ctx.report
    cache: dict[str, SourceLines | None] = {}
    groups: dict[tuple[str, str | None], LeftOut] = {}

    def add(p: Problem, orch_id: str | None) -> None:
        key = (p.file or "", orch_id)
        group = groups.setdefault(key, LeftOut(p.file or "", orch_id))
        lines = _lines(p.file, cache)
        group.problems.append(Located(p, lines.of_problem(p) if lines else None))

    for orch_id, problems in report.rejected.items():
        for p in problems:
            add(p, orch_id)
    for p in report.problems:
        if p.severity == "error" and p.orchestration_id is None:
            add(p, None)
    return sorted(groups.values(), key=lambda g: (g.file, g.orchestration_id or ""))


def graph_or_404(ctx: ServerContext, orch_id: str) -> CompiledGraph:
    graph = ctx.engine.graphs.get(orch_id)
    if graph is None:
        raise RunNotFound(f"orchestration '{orch_id}' not found")
    return graph


@get("/", name="orchestrations")
async def orchestrations_page(request: Request[Any, Any, Any], ctx: Ctx) -> Response[Any]:
    graphs = sorted(ctx.engine.graphs.values(), key=lambda g: g.orchestration.name.lower())
    warnings: dict[str, int] = defaultdict(int)
    for p in ctx.report.problems:
        if p.severity == "warning" and p.orchestration_id:
            warnings[p.orchestration_id] += 1
    return await render(request, "orchestrations.html", section="orchestrations", graphs=graphs,
                        pictures={g.id: render_svg(g, id_prefix=f"o{i}", embed_style=False)
                                  for i, g in enumerate(graphs)},
                        warnings=warnings, left_out=left_out(ctx))


async def _orchestration(request: Request[Any, Any, Any], ctx: ServerContext, graph: CompiledGraph, *,
                         status: int = 200, values: dict[str, str] | None = None,
                         errors: dict[str, str] | None = None, error: str = "") -> Response[Any]:
    cache: dict[str, SourceLines | None] = {}
    lines = _lines(graph.file, cache)
    warnings = [Located(p, lines.of_problem(p) if lines else None) for p in graph.warnings]
    return await render(request, "orchestration.html", status=status, section="orchestrations", graph=graph,
                        picture=render_svg(graph, id_prefix="g", embed_style=False), warnings=warnings,
                        inputs=state_inputs(graph, values, errors), message=(values or {}).get("message", ""),
                        error=error, schema_rows=[
                            (key, f.type, f.reducer, "" if f.default in (msgspec.UNSET, None)
                             else msgspec.json.encode(f.default).decode(), f.description)
                            for key, f in graph.orchestration.state_schema.items()])


@get("/orchestrations/{orch_id:str}", name="orchestration")
async def orchestration_page(request: Request[Any, Any, Any], ctx: Ctx, orch_id: FromPath[str]) -> Response[Any]:
    return await _orchestration(request, ctx, graph_or_404(ctx, orch_id))


@post("/orchestrations/{orch_id:str}/runs", status_code=303)
async def start_run(request: Request[Any, Any, Any], ctx: Ctx, orch_id: FromPath[str], data: Form) -> Response[Any]:
    graph = graph_or_404(ctx, orch_id)
    state, errors = parse_state(graph, data)
    if errors:
        return await _orchestration(request, ctx, graph, status=422, values=data, errors=errors,
                                    error="Some fields need another look.")
    try:
        run_id = await ctx.engine.start(orch_id, data.get("message", ""), state)
    except InvalidInput as exc:
        return await _orchestration(request, ctx, graph, status=422, values=data, error=exc.message)
    return Redirect(f"{PREFIX}/runs/{run_id}", status_code=303)
