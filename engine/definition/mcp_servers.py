"""MCP server declarations: the `mcp_servers` entries of Synapse bundles, graph files and the
operator's servers file, decoded with every problem reported at once.

A server is `stdio` (a local command, talking over its stdin/stdout) or `remote` (a URL
speaking streamable HTTP, or the older SSE transport). Its tools reach agents and `tool` steps
as `<server>__<tool>`, so a server name is a plain identifier without `__`.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import msgspec

from orch.definition.decode import describe, drop_nulls, unknown_fields, validation_problem
from orch.errors import Problem

ServerType = Literal["stdio", "remote"]
Transport = Literal["auto", "streamable_http", "sse"]
SEPARATOR = "__"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


class McpServer(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    name: str
    label: str = ""
    server_type: ServerType = "stdio"
    # stdio
    command: str = ""
    args: list[str] = []
    env: dict[str, str] = {}
    # remote
    url: str = ""
    token: str = ""
    headers: dict[str, str] = {}  # ours: more request headers (the token is sent as a Bearer header)
    transport: Transport = "auto"  # ours: auto tries streamable HTTP, then SSE
    timeout_seconds: float | None = None  # ours: one call's limit (default: the operator's setting)

    @property
    def where(self) -> str:
        """How error messages name the server's endpoint (never its token)."""
        if self.server_type == "stdio":
            return " ".join([self.command, *self.args])
        return self.url

    def tool_name(self, tool: str) -> str:
        return f"{self.name}{SEPARATOR}{tool}"


SERVER_FIELDS = frozenset(McpServer.__struct_fields__)


def decode_servers(raw: Any, file: str, path: str) -> tuple[list[McpServer], list[Problem]]:
    """The servers of one `mcp_servers` list; unknown fields are warnings (Synapse may add some)."""
    if not isinstance(raw, list):
        return [], [Problem("invalid-field", f"expected a list of MCP servers, got {describe(raw)}", file=file,
                            path=path)]
    servers: list[McpServer] = []
    problems: list[Problem] = []
    for i, item in enumerate(raw):
        where = f"{path}[{i}]"
        if not isinstance(item, dict):
            problems.append(Problem("invalid-field", f"expected an MCP server object, got {describe(item)}",
                                    file=file, path=where))
            continue
        unknown_fields(item, SERVER_FIELDS, file, where, problems, severity="warning")
        try:
            server = msgspec.convert({k: v for k, v in drop_nulls(item, SERVER_FIELDS).items() if k in SERVER_FIELDS},
                                     McpServer)
        except msgspec.ValidationError as exc:
            problems.append(validation_problem(exc, file, where))
            continue
        found = server_problems(server, file, where)
        problems.extend(found)
        if not found:
            servers.append(server)
    return servers, problems


def server_problems(server: McpServer, file: str | None, where: str) -> list[Problem]:
    out: list[Problem] = []

    def add(field: str, message: str, hint: str) -> None:
        out.append(Problem("invalid-mcp-server", f"MCP server '{server.name}': {message}", file=file,
                           path=f"{where}.{field}", hint=hint))

    if not _NAME.match(server.name) or SEPARATOR in server.name:
        add("name", f"the name must be letters, digits, '-' and '_' without '{SEPARATOR}'",
            f"its tools are named <server>{SEPARATOR}<tool>")
    if server.server_type == "stdio" and not server.command:
        add("command", "a stdio server needs 'command'", "the program to start, e.g. npx or python3")
    if server.server_type == "remote" and not re.match(r"^https?://[^/\s]+", server.url):
        add("url", f"a remote server needs an http(s) 'url', got {server.url!r}", "e.g. https://example.com/mcp")
    if server.timeout_seconds is not None and server.timeout_seconds <= 0:
        add("timeout_seconds", f"timeout_seconds must be positive, got {server.timeout_seconds:g}", "set a number above 0")
    return out


def split_tool_name(name: str) -> tuple[str, str] | None:
    """`<server>__<tool>` → (server, tool); None for a name without the separator."""
    server, sep, tool = name.partition(SEPARATOR)
    return (server, tool) if sep and server and tool else None
