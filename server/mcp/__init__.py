"""The orchestrations as MCP tools: over stdio (`orch mcp`) and streamable HTTP (`/mcp`)."""

from orch.server.mcp.server import HttpEndpoint, build_server, serve_stdio
from orch.server.mcp.tools import OrchestrationTools, tool_name

__all__ = ["HttpEndpoint", "OrchestrationTools", "build_server", "serve_stdio", "tool_name"]
