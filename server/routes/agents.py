"""Agents known to the server: those of every loaded file, inline ones included."""

from __future__ import annotations

from litestar import Router, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from orch.definition.spec import Agent
from orch.server.context import Ctx, ServerContext
from orch.server.errors import error_responses
from orch.server.schemas import AgentSummary


def agents(ctx: ServerContext) -> dict[str, Agent]:
    catalog = ctx.report.catalog
    return {aid: loaded.spec for aid, loaded in sorted(catalog.agents.items())} if catalog else {}


@get("/", summary="List agents", responses=error_responses())
async def list_agents(ctx: Ctx) -> list[AgentSummary]:
    return [AgentSummary(id=a.id, name=a.name, description=a.description, type=a.type, model=a.model, tools=a.tools)
            for a in agents(ctx).values()]


@get("/{agent_id:str}", summary="An agent's full definition", responses=error_responses(404))
async def get_agent(ctx: Ctx, agent_id: FromPath[str]) -> Agent:
    agent = agents(ctx).get(agent_id)
    if agent is None:
        raise NotFoundException(f"agent '{agent_id}' not found")
    return agent


router = Router(path="/agents", tags=["agents"], route_handlers=[list_agents, get_agent])
