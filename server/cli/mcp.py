"""`orch mcp`: the orchestrations as MCP tools over stdio; and `orch validate --mcp`, which asks
the graphs' MCP servers for their tools."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING, Any

from orch.settings import Settings

if TYPE_CHECKING:
    from orch.bootstrap import LoadReport


def register(sub: Any) -> None:
    from orch.server.cli.common import add_db, command, settings_of

    p = command(sub, "mcp", "serve the orchestrations as MCP tools on stdin/stdout",
                "orch mcp --graphs graphs/   # in an MCP client's server list: command orch, args [mcp]")
    p.add_argument("--graphs", help="graphs directory (default: ORCH_GRAPHS_DIR or graphs)")
    add_db(p)
    p.set_defaults(func=lambda a: asyncio.run(serve_mcp(settings_of(a).settings)))


def check_mcp_tools(report: LoadReport, settings: Settings) -> None:
    """Replace the report's unverified MCP tools by what their servers say."""
    from orch.mcp import McpClients, McpPolicy
    from orch.mcp.verify import verify

    async def ask() -> None:
        servers = (s.spec for s in report.catalog.mcp_servers.values()) if report.catalog else ()
        clients = McpClients(servers, McpPolicy.from_settings(settings))
        try:
            report.problems = [p for p in report.problems if p.code != "unverified-tool"]
            report.problems.extend(await verify(report.graphs.values(), clients))
        finally:
            await clients.aclose()

    asyncio.run(ask())


async def serve_mcp(settings: Settings) -> int:
    """The graphs of the graphs directory as MCP tools on stdin/stdout; runs are stored in the
    database like the server's, so a gate paused here can be answered there and back."""
    from orch.bootstrap import build_engine, left_out_because
    from orch.server.mcp import serve_stdio

    engine, report = await build_engine(settings)
    try:
        for orch_id, problems in sorted(report.rejected.items()):
            print(f"orch mcp: left out {orch_id}, {left_out_because(problems)}", file=sys.stderr)
        print(f"orch mcp: serving {len(report.graphs)} orchestrations as MCP tools on stdio "
              f"({settings.database_url})", file=sys.stderr, flush=True)
        await serve_stdio(engine)
        return 0
    finally:
        await engine.close()
