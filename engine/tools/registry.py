"""Tools by name: plain Python callables whose JSON schema comes from their signature.

A tool is any function, sync or async. Its parameters become the arguments object a model
fills in; a parameter annotated `ToolContext` is supplied by the engine instead and stays out of
the schema. The registry is an ordinary object built where it is needed (`with_builtins()`,
`register`, `load_module`), never filled as a side effect of importing a module.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import functools
import importlib
import inspect
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import msgspec

from orch.errors import ToolError
from orch.providers.base import ToolSpec
from orch.tools.builtin import BUILTIN_TOOLS
from orch.tools.context import ToolContext as ToolContext  # importable from here too


@dataclass(frozen=True, slots=True)
class Tool:
    """One registered callable and what a model needs to know to call it."""

    name: str
    description: str
    parameters: dict[str, Any]  # self-contained JSON schema of the arguments object
    fn: Callable[..., Any]
    is_async: bool
    args_type: type[msgspec.Struct]
    context_param: str | None = None
    positional_only: tuple[str, ...] = ()

    @property
    def spec(self) -> ToolSpec:
        return ToolSpec(name=self.name, description=self.description, parameters=self.parameters)


class ToolRegistry:
    """Callables by name, with argument validation and off-loop execution of sync tools."""

    def __init__(self, tools: Iterable[Callable[..., Any]] = (), *, max_threads: int = 32) -> None:
        self._tools: dict[str, Tool] = {}
        self._max_threads = max_threads
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        for fn in tools:
            self.register(fn)

    @classmethod
    def with_builtins(cls) -> ToolRegistry:
        return cls(BUILTIN_TOOLS)

    def register(
        self, fn: Callable[..., Any], name: str | None = None, description: str | None = None
    ) -> Tool:
        tool = build_tool(fn, name=name, description=description)
        if tool.name in self._tools:
            raise ValueError(f"tool '{tool.name}' is already registered")
        self._tools[tool.name] = tool
        return tool

    def load_module(self, dotted: str) -> list[Tool]:
        """Register the tools of a user module: its `TOOLS` list, else every public function
        defined in it that has a docstring."""
        module = importlib.import_module(dotted)
        return [self.register(fn) for fn in _module_tools(module)]

    def get(self, name: str) -> Tool:
        try:
            return self._tools[name]
        except KeyError:
            known = ", ".join(sorted(self._tools)) or "(none)"
            raise ToolError(f"unknown tool '{name}'; registered: {known}", tool=name, retryable=False) from None

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def names(self) -> list[str]:
        return list(self._tools)

    def specs(self, names: Iterable[str] | str | None = None) -> list[ToolSpec]:
        """Specs of the named tools in the given order; None or "all" means every tool."""
        if names is None or names == "all":
            return [tool.spec for tool in self._tools.values()]
        if isinstance(names, str):
            names = [names]
        return [self.get(name).spec for name in dict.fromkeys(names)]

    def validate_args(self, name: str, args: Any) -> dict[str, Any]:
        """The arguments converted to the tool's parameter types, defaults filled in."""
        tool = self.get(name)
        try:
            parsed = msgspec.convert(args, tool.args_type, strict=False)
        except msgspec.ValidationError as exc:
            raise ToolError(f"invalid arguments for tool '{name}': {exc}", tool=name) from None
        return {key: getattr(parsed, key) for key in tool.args_type.__struct_fields__}

    def _threads(self) -> concurrent.futures.ThreadPoolExecutor:
        """Sync tools get threads of their own: a slow one never holds up the store's reads."""
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(self._max_threads, thread_name_prefix="orch-tool")
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    async def call(self, name: str, args: Any, ctx: ToolContext | None = None) -> Any:
        """Run a tool. Sync tools run in a worker thread so they never block the event loop."""
        tool = self.get(name)
        kwargs = self.validate_args(name, args)
        if tool.context_param is not None:
            if ctx is None:
                raise ToolError(f"tool '{name}' needs a ToolContext", tool=name, retryable=False)
            kwargs[tool.context_param] = ctx
        positional = [kwargs.pop(key) for key in tool.positional_only]
        try:
            if tool.is_async:
                return await tool.fn(*positional, **kwargs)
            call = functools.partial(tool.fn, *positional, **kwargs)
            return await asyncio.get_running_loop().run_in_executor(self._threads(), call)
        except ToolError:
            raise
        except Exception as exc:
            raise ToolError(f"tool '{name}' raised {type(exc).__name__}: {exc}", tool=name) from exc


def build_tool(fn: Callable[..., Any], *, name: str | None = None, description: str | None = None) -> Tool:
    """Derive a Tool from a callable's name, docstring and signature."""
    if not callable(fn):
        raise TypeError(f"a tool must be callable, got {type(fn).__name__}")
    tool_name = name or getattr(fn, "__name__", None)
    if not tool_name:
        raise TypeError(f"cannot derive a name for tool {fn!r}; pass name=")
    signature = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(_annotated_target(fn), include_extras=True)
    except (NameError, TypeError) as exc:
        raise TypeError(f"tool '{tool_name}': cannot resolve parameter types: {exc}") from None

    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    context_param: str | None = None
    positional_only: list[str] = []
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"tool '{tool_name}': *args and **kwargs parameters are not supported")
        hint = hints.get(param.name, Any)
        if hint is ToolContext:
            context_param = param.name
            continue
        if param.kind is param.POSITIONAL_ONLY:
            positional_only.append(param.name)
        if param.default is param.empty:
            fields.append((param.name, hint))
        else:
            fields.append((param.name, hint, _field_default(param.default)))

    args_type = msgspec.defstruct(f"{tool_name}_args", fields, kw_only=True, forbid_unknown_fields=True)
    try:
        schema = msgspec.json.schema(args_type)
    except TypeError as exc:
        raise TypeError(f"tool '{tool_name}': parameter type not supported: {exc}") from None
    return Tool(
        name=tool_name,
        description=_first_paragraph(inspect.getdoc(fn)) if description is None else description,
        parameters=inline_refs(schema),
        fn=fn,
        is_async=_is_async(fn),
        args_type=args_type,
        context_param=context_param,
        positional_only=tuple(positional_only),
    )


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """Replace every `$ref` into `$defs` by the definition itself.

    Recursive types cannot be inlined; those definitions stay under a top-level `$defs`.
    """
    defs: dict[str, Any] = schema.get("$defs", {})
    recursive: set[str] = set()

    def resolve(node: Any, stack: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [resolve(item, stack) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            key = ref.removeprefix("#/$defs/")
            siblings = {k: resolve(v, stack) for k, v in node.items() if k != "$ref"}
            if key in stack:
                recursive.add(key)
                return node
            return {**resolve(defs[key], (*stack, key)), **siblings}
        return {k: resolve(v, stack) for k, v in node.items() if k != "$defs"}

    root: dict[str, Any] = resolve({k: v for k, v in schema.items() if k != "$defs"}, ())
    root.pop("title", None)
    if recursive:
        root["$defs"] = {key: resolve(defs[key], (key,)) for key in sorted(recursive)}
    return root


def _module_tools(module: ModuleType) -> list[Callable[..., Any]]:
    listed = getattr(module, "TOOLS", None)
    if listed is None:
        return [
            obj
            for attr, obj in vars(module).items()
            if not attr.startswith("_")
            and inspect.isfunction(obj)
            and obj.__module__ == module.__name__
            and inspect.getdoc(obj)
        ]
    tools = list(listed)
    for index, obj in enumerate(tools):
        if not callable(obj):
            raise TypeError(f"{module.__name__}.TOOLS[{index}] is not callable: {obj!r}")
    return tools


def _field_default(value: Any) -> Any:
    # msgspec refuses mutable defaults it cannot copy itself; each call gets its own copy.
    mutable_struct = isinstance(value, msgspec.Struct) and not value.__struct_config__.frozen
    if mutable_struct or (isinstance(value, (list, dict, set, bytearray)) and value):
        return msgspec.field(default_factory=lambda: copy.deepcopy(value))
    return value


def _annotated_target(fn: Callable[..., Any]) -> Any:
    """The object whose annotations describe `fn`'s parameters."""
    if isinstance(fn, functools.partial):
        return _annotated_target(fn.func)
    if inspect.isfunction(fn) or inspect.ismethod(fn):
        return fn
    return getattr(fn, "__call__", fn)


def _is_async(fn: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)
    return call is not None and inspect.iscoroutinefunction(call)


def _first_paragraph(doc: str | None) -> str:
    if not doc:
        return ""
    return " ".join(doc.strip().split("\n\n", 1)[0].split())
