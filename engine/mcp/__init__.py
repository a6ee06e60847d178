"""MCP servers as a source of tools: `<server>__<tool>` for agents and `tool` steps.

`McpClients` holds the declared servers and one lazily opened, shared connection to each;
`McpPolicy` is what the operator allows (which local commands start, timeouts). See docs/mcp.md.
"""

from orch.mcp.clients import McpClients, result_value
from orch.mcp.connection import IDEMPOTENCY_META, McpConnection, McpUnavailable
from orch.mcp.operator_file import load_servers_file
from orch.mcp.policy import McpPolicy

__all__ = ["IDEMPOTENCY_META", "McpClients", "McpConnection", "McpPolicy", "McpUnavailable", "load_servers_file",
           "result_value"]
