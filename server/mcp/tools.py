"""The orchestrations as MCP tools, and the tools around them.

Each loaded orchestration is a tool named by its id (`run_<id>` where the id is taken by one of
the tools below, characters MCP does not allow in names become `_`): `message` and a typed
`state` in (the schema comes from the orchestration's `state_schema`), the run's result out, as
the HTTP API's run response. A run that pauses at a gate returns it (`human_input_required`);
the `resume` tool answers it. `list_orchestrations`, `list_runs`, `get_run` and `cancel_run`
complete the set. While a run goes on, each finished step is reported as progress to callers
that asked for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from mcp_types import CallToolResult, TextContent, Tool, ToolAnnotations

from orch.definition.compile import CompiledGraph
from orch.errors import EngineError
from orch.events import StepComplete
from orch.run.engine import Engine
from orch.run.results import RunResult
from orch.server.routes.runs import run_detail, summary
from orch.server.schemas import OrchestrationSummary

Progress = Callable[[float, str], Awaitable[None]]
RESERVED = ("list_orchestrations", "list_runs", "get_run", "resume", "cancel_run")
_INVALID = re.compile(r"[^A-Za-z0-9_.-]")
_RUN_ID = {"type": "string", "description": "The run's id, as a run or resume answered it"}
_KEY = {"type": "string", "minLength": 1, "maxLength": 255,
        "description": "Calling again with the same key returns the outcome of the first call instead of acting twice"}
_STATUSES = ["running", "paused", "completed", "failed", "cancelled"]


def tool_name(orchestration_id: str) -> str:
    name = _INVALID.sub("_", orchestration_id)[:64] or "_"
    return f"run_{name}"[:64] if name in RESERVED else name


def state_schema(graph: CompiledGraph) -> dict[str, Any]:
    """JSON Schema of a run's initial state: the declared keys with their types."""
    properties: dict[str, Any] = {}
    for key, declared in graph.orchestration.state_schema.items():
        schema: dict[str, Any] = msgspec.json.schema(graph.schema.type_of(key).py)
        schema.pop("$defs", None)
        if declared.description:
            schema["description"] = declared.description
        if declared.default is not msgspec.UNSET:
            schema["default"] = declared.default
        properties[key] = schema
    return {"type": "object", "properties": properties,
            "description": "Initial values of state keys; each is checked against its declared type"}


def orchestration_tool(graph: CompiledGraph, name: str) -> Tool:
    orch = graph.orchestration
    text = f"Run the orchestration '{orch.name}'" + (f": {orch.description}" if orch.description else "") + (
        ". It may pause at a human gate: the result then holds human_input_required, and the resume tool answers it.")
    return Tool(name=name, title=orch.name, description=text, input_schema={
        "type": "object",
        "properties": {"message": {"type": "string", "description": "The run's input message"},
                       "state": state_schema(graph), "idempotency_key": _KEY},
        "additionalProperties": False,
    })


FIXED_TOOLS = [
    Tool(name="list_orchestrations", description="The orchestrations this server runs, each a tool of its own",
         input_schema={"type": "object", "properties": {}, "additionalProperties": False},
         annotations=ToolAnnotations(read_only_hint=True)),
    Tool(name="list_runs", description="Runs, newest first",
         input_schema={"type": "object", "additionalProperties": False, "properties": {
             "orchestration_id": {"type": "string"}, "status": {"type": "string", "enum": _STATUSES},
             "limit": {"type": "integer", "minimum": 1, "maximum": 200, "default": 20}}},
         annotations=ToolAnnotations(read_only_hint=True)),
    Tool(name="get_run", description="A run's status, state, history, pending gate and cost",
         input_schema={"type": "object", "properties": {"run_id": _RUN_ID}, "required": ["run_id"],
                       "additionalProperties": False},
         annotations=ToolAnnotations(read_only_hint=True)),
    Tool(name="resume", description="Answer the gate a paused run waits at, and wait until the run completes, "
                                    "pauses again or fails",
         input_schema={"type": "object", "required": ["run_id", "response"], "additionalProperties": False,
                       "properties": {"run_id": _RUN_ID, "idempotency_key": _KEY, "response": {
                           "description": "The gate's fields by name (its human_input_required.fields), or one text answer",
                           "anyOf": [{"type": "object"}, {"type": "string"}]}}}),
    Tool(name="cancel_run", description="Stop a running or paused run",
         input_schema={"type": "object", "properties": {"run_id": _RUN_ID}, "required": ["run_id"],
                       "additionalProperties": False},
         annotations=ToolAnnotations(destructive_hint=True)),
]


class OrchestrationTools:
    """What MCP's tools/list and tools/call do, over an engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def graphs_by_tool(self) -> dict[str, CompiledGraph]:
        """The orchestrations by tool name; ids that become the same name get `_2`, `_3`… in id order."""
        out: dict[str, CompiledGraph] = {}
        for graph in sorted(self.engine.graphs.values(), key=lambda g: g.id):
            name, n = tool_name(graph.id), 1
            while name in out:
                n += 1
                name = f"{tool_name(graph.id)[:60]}_{n}"
            out[name] = graph
        return out

    def list(self) -> list[Tool]:
        return [*FIXED_TOOLS, *(orchestration_tool(g, name) for name, g in self.graphs_by_tool().items())]

    async def call(self, name: str, args: dict[str, Any], progress: Progress | None = None) -> CallToolResult:
        try:
            return await self._call(name, args, progress)
        except EngineError as exc:
            return failure(exc.message)

    async def _call(self, name: str, args: dict[str, Any], progress: Progress | None) -> CallToolResult:
        engine = self.engine
        if name == "list_orchestrations":
            found = [OrchestrationSummary(id=g.id, name=g.orchestration.name, description=g.orchestration.description,
                                          steps=len(g.orchestration.steps)) for g in self.graphs_by_tool().values()]
            tools = {g.id: name for name, g in self.graphs_by_tool().items()}
            return success({"orchestrations": [{**msgspec.to_builtins(s), "tool": tools[s.id]} for s in found]})
        if name == "list_runs":
            runs = await engine.store.list_runs(orchestration_id=args.get("orchestration_id"), status=args.get("status"),
                                                limit=int(args.get("limit", 20)))
            return success({"runs": [msgspec.to_builtins(summary(r)) for r in runs]})
        if name == "get_run":
            return success(msgspec.to_builtins(await run_detail(engine, str(args["run_id"]))))
        if name == "cancel_run":
            return run_result(await engine.cancel(str(args["run_id"])))
        if name == "resume":
            run_id = await engine.resume(str(args["run_id"]), args["response"], idempotency_key=args.get("idempotency_key"))
            return run_result(await self._wait(run_id, progress))
        graph = self.graphs_by_tool().get(name)
        if graph is None:
            return failure(f"unknown tool '{name}'; this server has: {', '.join(t.name for t in self.list())}")
        run_id = await engine.start(graph.id, str(args.get("message") or ""), args.get("state"),
                                    idempotency_key=args.get("idempotency_key"))
        return run_result(await self._wait(run_id, progress))

    async def _wait(self, run_id: str, progress: Progress | None) -> RunResult:
        if progress is None:
            return await self.engine.wait(run_id)
        done = 0

        async def report() -> None:
            nonlocal done
            with self.engine.hub.subscribe(run_id) as events:
                async for event in events:
                    if isinstance(event, StepComplete):
                        done += 1
                        await progress(done, f"{event.step_id} {event.status}")

        reporter = asyncio.create_task(report())
        try:
            return await self.engine.wait(run_id)
        finally:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reporter


def success(value: dict[str, Any]) -> CallToolResult:
    return CallToolResult(content=[TextContent(text=msgspec.json.encode(value).decode())], structured_content=value)


def failure(message: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(text=message)], is_error=True)


def run_result(result: RunResult) -> CallToolResult:
    """The run response as the HTTP API gives it; a failed or cancelled run is a tool error."""
    value = msgspec.to_builtins(result)
    out = success(value)
    out.is_error = result.status in ("failed", "cancelled")
    return out
