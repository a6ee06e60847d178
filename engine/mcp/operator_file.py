"""The operator's MCP servers file (ORCH_MCP_SERVERS_FILE): YAML or JSON, either a list of
servers or an object with `mcp_servers`, in the format of a bundle's `mcp_servers`. Its
declarations win over those of graph files, so an operator can give a bundle's server its
token or point it elsewhere without editing the bundle."""

from __future__ import annotations

from pathlib import Path

from orch.definition.loader import parse_text
from orch.definition.mcp_servers import McpServer, decode_servers
from orch.errors import Problem


def load_servers_file(path: str) -> tuple[list[McpServer], list[Problem]]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        return [], [Problem("unreadable-file", f"cannot read the MCP servers file: {exc.strerror}", file=path)]
    doc, problem = parse_text(text, path)
    if problem is not None:
        return [], [problem]
    if isinstance(doc, dict) and "mcp_servers" in doc:
        return decode_servers(doc["mcp_servers"], path, "$.mcp_servers")
    return decode_servers(doc, path, "$")
