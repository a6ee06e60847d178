"""Tools agents can call: the registry and the built-ins."""

from orch.tools.builtin import BUILTIN_TOOLS
from orch.tools.context import ToolContext
from orch.tools.registry import Tool, ToolRegistry, build_tool

__all__ = ["BUILTIN_TOOLS", "Tool", "ToolContext", "ToolRegistry", "build_tool"]
