"""Checking graphs' MCP tool names: without connecting (they are listed as unverified), or by
asking each server for its tools (`orch validate --mcp`)."""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping

from orch.definition.compiled import CompiledGraph
from orch.definition.mcp_servers import McpServer, split_tool_name
from orch.errors import Problem, ToolError
from orch.mcp.clients import McpClients


class ToolNames(Container[str]):
    """Registered tool names, and every `<server>__<tool>` of a declared server (which only the
    server can confirm)."""

    def __init__(self, local: Iterable[str], servers: Iterable[str]) -> None:
        self.local, self.servers = frozenset(local), frozenset(servers)

    def __contains__(self, name: object) -> bool:
        if name in self.local:
            return True
        parts = split_tool_name(name) if isinstance(name, str) else None
        return parts is not None and parts[0] in self.servers


def mcp_tools_used(graph: CompiledGraph, servers: Mapping[str, McpServer]) -> dict[str, list[str]]:
    """The MCP tools a graph names, by the step that names them."""
    used: dict[str, list[str]] = {}
    for sid, step in graph.steps.items():
        spec = step.spec
        names: list[str] = []
        if spec.forced_tool:
            names.append(spec.forced_tool)
        agent = graph.agents.get(spec.agent_id) if spec.agent_id else None
        if spec.allowed_tools is not None:
            names.extend(spec.allowed_tools)
        elif agent is not None and agent.tool_names:
            names.extend(agent.tool_names)
        found = [n for n in dict.fromkeys(names) if (p := split_tool_name(n)) is not None and p[0] in servers]
        if found:
            used[sid] = found
    return used


def unverified(graphs: Iterable[CompiledGraph], servers: Mapping[str, McpServer]) -> list[Problem]:
    """One warning per orchestration naming the MCP tools that were not checked."""
    out = []
    for graph in graphs:
        names = list(dict.fromkeys(n for ns in mcp_tools_used(graph, servers).values() for n in ns))
        if names:
            out.append(Problem(
                "unverified-tool", "tools of MCP servers, not verified: " + ", ".join(names), file=graph.file,
                orchestration_id=graph.id, severity="warning",
                hint="each is checked when a run first uses its server; `orch validate --mcp` asks the servers now",
            ))
    return out


async def verify(graphs: Iterable[CompiledGraph], clients: McpClients) -> list[Problem]:
    """Ask each server a graph uses for its tools: a missing tool is an error, a server that
    cannot be asked leaves its tools unverified (a warning naming why)."""
    out: list[Problem] = []
    reasons: dict[str, str | None] = {}
    for graph in graphs:
        for sid, names in mcp_tools_used(graph, clients.servers).items():
            for name in names:
                server = name.partition("__")[0]  # mcp_tools_used gives only <server>__<tool> names
                if server not in reasons:
                    try:
                        await clients.connection(server).tools()
                        reasons[server] = None
                    except ToolError as exc:
                        reasons[server] = exc.message
                if reasons[server] is not None:
                    out.append(Problem("unverified-tool", f"tool '{name}' not verified: {reasons[server]}",
                                       file=graph.file, step_id=sid, orchestration_id=graph.id, severity="warning"))
                    continue
                try:
                    await clients.spec(name)
                except ToolError as exc:
                    out.append(Problem("unknown-mcp-tool", exc.message, file=graph.file, step_id=sid,
                                       orchestration_id=graph.id,
                                       hint="fix the tool name, or the server the name points at"))
    return out
