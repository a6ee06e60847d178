"""What the operator allows MCP servers: which local commands may start, with what environment,
and how long connecting and calling may take."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from orch.definition.mcp_servers import McpServer
from orch.sandbox import child_env
from orch.settings import Settings

ANY_COMMAND = "*"


@dataclass(frozen=True)
class McpPolicy:
    allow_stdio: bool = False
    stdio_commands: tuple[str, ...] = ()
    env_passthrough: tuple[str, ...] = ()
    connect_timeout_seconds: float = 15.0
    call_timeout_seconds: float = 300.0

    @classmethod
    def from_settings(cls, settings: Settings) -> McpPolicy:
        return cls(allow_stdio=settings.mcp_allow_stdio, stdio_commands=tuple(settings.mcp_stdio_commands),
                   env_passthrough=tuple(settings.child_env_passthrough),
                   connect_timeout_seconds=settings.mcp_connect_timeout_seconds,
                   call_timeout_seconds=settings.mcp_call_timeout_seconds)

    def refusal(self, server: McpServer) -> str | None:
        """Why `server` may not start here, or None."""
        if server.server_type != "stdio":
            return None
        if not self.allow_stdio:
            return (f"MCP server '{server.name}' starts the local command '{server.command}', and this server "
                    f"does not start MCP commands; the operator allows them with ORCH_MCP_ALLOW_STDIO=true and "
                    f"lists them in ORCH_MCP_STDIO_COMMANDS")
        if not self.command_allowed(server.command):
            listed = ", ".join(self.stdio_commands) or "none"
            return (f"MCP server '{server.name}' starts the command '{server.command}', which is not in "
                    f"ORCH_MCP_STDIO_COMMANDS (listed: {listed})")
        return None

    def command_allowed(self, command: str) -> bool:
        """Listed as written, or as the absolute path the command resolves to."""
        if ANY_COMMAND in self.stdio_commands or command in self.stdio_commands:
            return True
        found = shutil.which(command, path=child_env(self.env_passthrough).get("PATH"))
        resolved = {os.path.realpath(found)} if found else set()
        return any(os.path.isabs(c) and os.path.realpath(c) in resolved for c in self.stdio_commands)

    def environment(self, server: McpServer) -> dict[str, str]:
        """A stdio server's environment: built from nothing (orch.sandbox.child_env), the
        variables the operator passes through, then the server's own `env`."""
        return child_env(self.env_passthrough, extra=server.env)
