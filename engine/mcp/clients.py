"""The tools of the declared MCP servers, named `<server>__<tool>`, for agents and `tool` steps.

Servers come from graph files and bundles (`mcp_servers`) and from the operator's servers file,
whose declarations win. Nothing connects until a step needs a server's tools; each server has
one connection (orch.mcp.connection) shared by every run, closed by `aclose()` at shutdown.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

import jsonschema
import mcp_types
import msgspec

from orch.definition.mcp_servers import McpServer, split_tool_name
from orch.errors import ToolError
from orch.mcp.connection import McpConnection
from orch.mcp.policy import McpPolicy
from orch.providers.base import ToolSpec


class McpClients:
    def __init__(self, servers: Iterable[McpServer] = (), policy: McpPolicy | None = None) -> None:
        self.policy = policy or McpPolicy()
        self.servers: dict[str, McpServer] = {}
        self._connections: dict[str, McpConnection] = {}
        self.declare(servers)

    def configure(self, policy: McpPolicy) -> None:
        self.policy = policy
        for connection in self._connections.values():
            connection.policy = policy

    def declare(self, servers: Iterable[McpServer], *, override: bool = False) -> None:
        """Add servers; one already declared keeps its declaration unless `override`."""
        for server in servers:
            if override or server.name not in self.servers:
                self.servers[server.name] = server
                self._connections.pop(server.name, None)

    def owns(self, name: str) -> bool:
        """`name` is `<server>__<tool>` of a declared server."""
        parts = split_tool_name(name)
        return parts is not None and parts[0] in self.servers

    def connection(self, server: str) -> McpConnection:
        if server not in self._connections:
            self._connections[server] = McpConnection(self.servers[server], self.policy)
        return self._connections[server]

    async def specs(self, names: Iterable[str] | None = None) -> list[ToolSpec]:
        """Specs of the named tools that the servers have, in the given order; None means every
        tool of every server this host may start. A server that cannot be used fails the call."""
        if names is None:
            servers = [s for s in self.servers if self.policy.refusal(self.servers[s]) is None]
            listed = await asyncio.gather(*(self._tools(s) for s in servers))
            return [spec for tools in listed for spec in tools.values()]
        wanted = [(n, parts[0]) for n in dict.fromkeys(names)
                  if (parts := split_tool_name(n)) is not None and parts[0] in self.servers]
        by_server: dict[str, dict[str, ToolSpec]] = {}
        for server in dict.fromkeys(server for _, server in wanted):
            by_server[server] = await self._tools(server)
        return [by_server[server][n] for n, server in wanted if n in by_server[server]]

    async def spec(self, name: str) -> ToolSpec:
        server, tool = self._split(name)
        tools = await self._tools(server)
        if name not in tools:
            known = ", ".join(sorted(tools)) or "(none)"
            raise ToolError(f"MCP server '{server}' has no tool '{tool}'; it has: {known}", tool=name, retryable=False)
        return tools[name]

    async def check_args(self, name: str, args: Any) -> None:
        """Arguments that do not fit the tool's input schema raise ToolError."""
        spec = await self.spec(name)
        errors = sorted(jsonschema.Draft202012Validator(spec.parameters).iter_errors(args), key=lambda e: e.path)
        if errors:
            first = errors[0]
            where = "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in first.absolute_path)
            raise ToolError(f"invalid arguments for tool '{name}': {first.message}" + (f" - at $.{where.lstrip('.')}"
                                                                                       if where else ""), tool=name)

    async def call(self, name: str, args: Mapping[str, Any], *, key: str = "", timeout: float | None = None) -> Any:
        """Call a tool; its structured result when it gives one, else its content."""
        server, tool = self._split(name)
        connection = self.connection(server)
        result = await connection.call(tool, dict(args), key=key, timeout=timeout)
        listed = next((t for t in await connection.tools() if t.name == tool), None)
        value = result_value(result, listed.output_schema if listed is not None else None)
        if result.is_error:
            text = value if isinstance(value, str) else msgspec.json.encode(value).decode()
            raise ToolError(f"MCP tool '{name}' failed: {text}", tool=name)
        return value

    async def aclose(self) -> None:
        await asyncio.gather(*(c.close() for c in self._connections.values()), return_exceptions=True)

    async def _tools(self, server: str) -> dict[str, ToolSpec]:
        declared = self.servers[server]
        return {declared.tool_name(t.name): ToolSpec(name=declared.tool_name(t.name), description=t.description or "",
                                                     parameters=dict(t.input_schema))
                for t in await self.connection(server).tools()}

    def _split(self, name: str) -> tuple[str, str]:
        parts = split_tool_name(name)
        if parts is None or parts[0] not in self.servers:
            declared = ", ".join(sorted(self.servers)) or "none"
            raise ToolError(f"'{name}' is not a tool of a declared MCP server (declared: {declared})", tool=name,
                            retryable=False)
        return parts


def result_value(result: mcp_types.CallToolResult, output_schema: Mapping[str, Any] | None = None) -> Any:
    """What a call gives back to the state: its structured content when the tool declared one,
    the text when it answered with one text block, else the list of its blocks (text as text).

    Structured content must be an object, so SDKs wrap other values as `{"result": value}` under
    an output schema of that one property: such a value is unwrapped."""
    if result.structured_content is not None:
        content = result.structured_content
        properties = (output_schema or {}).get("properties")
        if list(content) == ["result"] and isinstance(properties, dict) and list(properties) == ["result"]:
            return content["result"]
        return content
    blocks: list[Any] = []
    for block in result.content:
        if isinstance(block, mcp_types.TextContent):
            blocks.append(block.text)
        else:
            blocks.append(block.model_dump(mode="json", by_alias=True, exclude_none=True))
    if len(blocks) == 1 and isinstance(blocks[0], str):
        return blocks[0]
    return blocks
