"""Tools agents can call: the registry and the built-ins."""

from engine.tools.builtin import BUILTIN_TOOLS
from engine.tools.registry import Tool, ToolContext, ToolRegistry, build_tool

__all__ = ["BUILTIN_TOOLS", "Tool", "ToolContext", "ToolRegistry", "build_tool"]
