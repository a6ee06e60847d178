"""The MCP server over an engine (the official SDK's low-level `Server`), and its two ways out:
stdio (`orch mcp`) and streamable HTTP at `/mcp` beside the API, behind the same API keys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar.types import Receive, Scope, Send
from mcp.server import Server, ServerRequestContext
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import CallToolRequestParams, CallToolResult, ListToolsResult, PaginatedRequestParams

from orch.run.engine import Engine
from orch.server.mcp.tools import OrchestrationTools

SERVER_NAME = "orch"
LOOPBACK_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost", "[::1]"]


def build_server(engine: Engine) -> Server[Any]:
    tools = OrchestrationTools(engine)

    async def list_tools(ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None) -> ListToolsResult:
        return ListToolsResult(tools=tools.list())

    async def call_tool(ctx: ServerRequestContext[Any], params: CallToolRequestParams) -> CallToolResult:
        async def progress(done: float, message: str) -> None:
            await ctx.session.report_progress(done, None, message)

        return await tools.call(params.name, dict(params.arguments or {}), progress)

    return Server(SERVER_NAME, version="1", title="Orchestrations",
                  instructions="Each orchestration is a tool: call it with a message (and state) to run it. A run "
                               "that pauses at a human gate returns it; answer with the resume tool.",
                  on_list_tools=list_tools, on_call_tool=call_tool)


async def serve_stdio(engine: Engine) -> None:
    server = build_server(engine)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


class HttpEndpoint:
    """`/mcp` as an ASGI app: stateless streamable HTTP (any worker can answer any request; runs
    are found in the store). In local mode, which needs no key, only loopback Host headers are
    accepted, so a web page cannot reach it through DNS rebinding."""

    def __init__(self, engine: Engine, *, local: bool) -> None:
        security = TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=LOOPBACK_HOSTS,
                                             allowed_origins=["http://127.0.0.1:*", "http://localhost:*",
                                                              "http://[::1]:*"]) if local else None
        self.manager = StreamableHTTPSessionManager(build_server(engine), stateless=True, security_settings=security)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with self.manager.run():
            yield

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.manager.handle_request(scope, receive, send)  # type: ignore[arg-type]
