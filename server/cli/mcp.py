"""`orch mcp`: the orchestrations as MCP tools over stdio; and `orch validate --mcp`, which asks
the graphs' MCP servers for their tools."""

from __future__ import annotations

from orch.bootstrap import LoadReport
from orch.errors import Problem
from orch.mcp import McpClients, McpPolicy
from orch.mcp.verify import verify
from orch.settings import Settings


async def verify_mcp_tools(report: LoadReport, settings: Settings) -> list[Problem]:
    servers = (s.spec for s in report.catalog.mcp_servers.values()) if report.catalog else ()
    clients = McpClients(servers, McpPolicy.from_settings(settings))
    try:
        return await verify(report.graphs.values(), clients)
    finally:
        await clients.aclose()
