"""The tools a step can reach, by name: registered Python callables, and the tools of declared
MCP servers (`<server>__<tool>`, orch.mcp). Agent and tool steps go through here, so neither
cares where a tool lives."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from orch.providers.base import ToolSpec
from orch.steps.base import StepContext
from orch.tools import ToolContext


async def tool_specs(ctx: StepContext, names: Iterable[str] | None) -> list[ToolSpec]:
    """Specs of the named tools in order (None: every tool); names that neither the registry
    nor a declared MCP server knows are left out. A server that cannot be reached raises."""
    registry, mcp = ctx.services.tools, ctx.services.mcp
    if names is None:
        return registry.specs() + await mcp.specs()
    wanted = list(dict.fromkeys(names))
    remote = {spec.name: spec for spec in await mcp.specs(n for n in wanted if n not in registry and mcp.owns(n))}
    return [registry.get(n).spec if n in registry else remote[n] for n in wanted if n in registry or n in remote]


def knows(ctx: StepContext, name: str) -> bool:
    """A registered tool, or one a declared MCP server may have."""
    return name in ctx.services.tools or ctx.services.mcp.owns(name)


async def tool_spec(ctx: StepContext, name: str) -> ToolSpec:
    if name not in ctx.services.tools and ctx.services.mcp.owns(name):
        return await ctx.services.mcp.spec(name)
    return ctx.services.tools.get(name).spec


async def check_args(ctx: StepContext, name: str, args: Any) -> None:
    """ToolError when `args` do not fit the tool's parameters."""
    if name not in ctx.services.tools and ctx.services.mcp.owns(name):
        await ctx.services.mcp.check_args(name, args)
    else:
        ctx.services.tools.validate_args(name, args)


async def call(ctx: StepContext, name: str, args: Any, tool_ctx: ToolContext) -> Any:
    """Run a tool. MCP calls carry the attempt identity (`tool_ctx.attempt`) so a server can
    tell a repeated call from a new one."""
    if name not in ctx.services.tools and ctx.services.mcp.owns(name):
        return await ctx.services.mcp.call(name, args, key=tool_ctx.attempt)
    return await ctx.services.tools.call(name, args, tool_ctx)
