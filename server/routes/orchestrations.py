"""Orchestrations: list, show, draw, and check a definition without loading it."""

from __future__ import annotations

from typing import Any, Literal

import msgspec.structs
from litestar import Response, Router, get, post
from litestar.params import FromPath, FromQuery, JSONBody

from orch.definition.compile import CompiledGraph, compile_definition
from orch.errors import Problem, RunNotFound
from orch.definition.loader import broken_steps, decode_orchestration
from orch.definition.render import dot, mermaid
from orch.definition.spec import Orchestration
from orch.mcp.verify import ToolNames
from orch.sandbox import INSTALL_HINT, REFUSAL_CODE
from orch.server.context import Ctx, ServerContext
from orch.server.errors import error_responses
from orch.server.schemas import OrchestrationSummary, ValidationReport
from orch.steps import spec_types

POSTED = "<request>"


def graph_or_404(ctx: ServerContext, orch_id: str) -> CompiledGraph:
    graph = ctx.engine.graphs.get(orch_id)
    if graph is None:
        raise RunNotFound(f"orchestration '{orch_id}' not found")
    return graph


@get("/", summary="List all configured orchestrations", responses=error_responses())
async def list_orchestrations(ctx: Ctx) -> list[OrchestrationSummary]:
    return [
        OrchestrationSummary(id=g.id, name=g.orchestration.name, description=g.orchestration.description,
                             steps=len(g.orchestration.steps))
        for g in sorted(ctx.engine.graphs.values(), key=lambda g: g.id)
    ]


@get("/{orch_id:str}", summary="Full definition of an orchestration, with every step",
     responses=error_responses(404))
async def get_orchestration(ctx: Ctx, orch_id: FromPath[str]) -> Orchestration:
    return graph_or_404(ctx, orch_id).orchestration


@get("/{orch_id:str}/graph", summary="The compiled graph as Mermaid or Graphviz dot text",
     media_type="text/plain", responses=error_responses(404))
async def get_graph(ctx: Ctx, orch_id: FromPath[str],
                    format: FromQuery[Literal["mermaid", "dot"]] = "mermaid") -> Response[str]:
    graph = graph_or_404(ctx, orch_id)
    text = mermaid(graph) if format == "mermaid" else dot(graph)
    return Response(text, media_type="text/plain; charset=utf-8")


@post("/validate", status_code=200, summary="Check an orchestration definition; every problem at once",
      responses=error_responses())
async def validate_definition(ctx: Ctx, data: JSONBody[dict[str, Any]]) -> ValidationReport:
    problems = [msgspec.structs.replace(p, file=None) for p in check_definition(ctx, data)]
    return ValidationReport(valid=not any(p.severity == "error" for p in problems), problems=problems)


def transform_problems(ctx: ServerContext, raw: dict[str, Any]) -> list[Problem]:
    """Transform steps of a definition sent over HTTP: refused unless the operator allows them
    and this server can run them."""
    transforms = ctx.engine.services.transforms
    if not ctx.settings.allow_http_transforms:
        return transforms_refused(raw, "transform-not-allowed", "transform steps are not accepted over HTTP",
                                  "the operator can allow them with ORCH_ALLOW_HTTP_TRANSFORMS=true")
    if transforms.mode == "refused":
        return transforms_refused(raw, REFUSAL_CODE, transforms.refusal(), INSTALL_HINT)
    return []


def check_definition(ctx: ServerContext, raw: dict[str, Any]) -> list[Problem]:
    problems = transform_problems(ctx, raw)
    orch, found = decode_orchestration(raw, POSTED, step_types=spec_types(ctx.engine.kinds))
    problems.extend(found)
    if orch is None:
        return problems
    catalog = ctx.report.catalog
    agents = {aid: loaded.spec for aid, loaded in (catalog.agents.items() if catalog else ())}
    agents.update({a.id: a for a in orch.agents})
    tools = ToolNames(ctx.engine.services.tools.names(), ctx.engine.services.mcp.servers)
    result = compile_definition(orch, agents, tools=tools,
                                orchestrations=set(ctx.engine.graphs), extra_broken=broken_steps(found),
                                kinds=ctx.engine.kinds)
    problems.extend(result.problems)
    return problems


def transforms_refused(raw: dict[str, Any], code: str, message: str, hint: str) -> list[Problem]:
    """One problem per transform step of a posted definition."""
    steps, orch_id = raw.get("steps"), raw.get("id")
    return [
        Problem(code, message, step_id=s.get("id") if isinstance(s.get("id"), str) else None,
                path=f"$.steps[{i}].type", hint=hint, orchestration_id=orch_id if isinstance(orch_id, str) else None)
        for i, s in enumerate(steps if isinstance(steps, list) else [])
        if isinstance(s, dict) and s.get("type") == "transform"
    ]


router = Router(path="/orchestrations", tags=["orchestrations"],
                route_handlers=[list_orchestrations, get_orchestration, get_graph, validate_definition])
