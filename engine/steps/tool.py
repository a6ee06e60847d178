"""The tool step: exactly one call of `forced_tool`.

With `tool_args` the arguments come from the state and no model is asked: each string value is
rendered like a prompt, except a value that is a single placeholder (`"{state.items}"`), which
passes the state value itself, keeping its type. Without `tool_args` the model fills the
arguments in; arguments that do not parse or do not fit the tool's parameters go back to it as
`error: …`, up to `max_turns` attempts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from orch.definition.expressions import Expression
from orch.definition.spec import StepBase, ToolStep
from orch.definition.templates import render, template_keys
from orch.errors import StepFailed, ToolError
from orch.events import AgentTurn, ToolExecution, ToolResult, preview
from orch.mcp import McpUnavailable
from orch.providers.base import Message, ToolCall
from orch.steps import toolbox
from orch.steps.agent import tool_context
from orch.steps.base import FieldReport, StepContext, StepKind, StepResult, prompt_reads
from orch.steps.prompting import as_text, build_messages, call_model, request_for, resolve_model, tool_calls_payload

_WHOLE_PLACEHOLDER = re.compile(r"\{state((?:\.\w+)+)\}")
_MISSING = object()


async def run_tool(ctx: StepContext) -> StepResult:
    spec = ctx.step.spec
    name = spec.forced_tool
    if not name:
        raise StepFailed(f"step {spec.id}: tool step has no forced_tool", step_id=spec.id)
    if spec.tool_args is not None:
        args = {key: resolve_argument(value, ctx.state) for key, value in spec.tool_args.items()}
        try:
            await toolbox.check_args(ctx, name, args)
        except McpUnavailable as exc:
            raise ToolError(f"step {spec.id}: {exc.message}", tool=name, retryable=exc.retryable,
                            step_id=spec.id) from None
        except ToolError as exc:  # the graph file is wrong: retrying cannot help
            raise StepFailed(f"step {spec.id}: {exc.message}", step_id=spec.id) from None
        return StepResult(output=await call_tool(ctx, name, args))
    args, turns, cost = await ask_for_arguments(ctx, name)
    return StepResult(output=await call_tool(ctx, name, args), turns=turns, cost_usd=cost)


def resolve_argument(value: Any, state: Mapping[str, Any]) -> Any:
    """A `tool_args` value with its placeholders filled in from the state."""
    if not isinstance(value, str):
        return value
    whole = _WHOLE_PLACEHOLDER.fullmatch(value.strip())
    if whole is not None:
        raw = _lookup(state, whole.group(1)[1:].split("."))
        if raw is not _MISSING:
            return raw
    return render(value, state)


def _lookup(value: Any, path: list[str]) -> Any:
    for key in path:
        if isinstance(value, Mapping) and key in value:
            value = value[key]
        elif isinstance(value, (list, tuple)) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return _MISSING
    return value


async def ask_for_arguments(ctx: StepContext, name: str) -> tuple[dict[str, Any], int, float]:
    """Valid arguments for `name` from the model: (arguments, model calls, cost)."""
    spec = ctx.step.spec
    tool_spec = await toolbox.tool_spec(ctx, name)
    provider, model = resolve_model(ctx)
    messages = build_messages(ctx, f"Call the tool '{name}' with arguments that fit its parameters.", ask_json=False)
    attempts = max(spec.max_turns, 1)
    total_cost, last_error = 0.0, ""
    for attempt in range(1, attempts + 1):
        request = request_for(ctx, model, messages, tools=(tool_spec,), force_tool=name)
        completion, cost = await call_model(ctx, provider, request)
        total_cost += cost
        ctx.emit(AgentTurn(step_id=spec.id, turn=attempt, content=completion.text,
                           tool_calls=tool_calls_payload(completion), cost_usd=cost))
        call = next((c for c in completion.tool_calls if c.name == name), None)
        if call is None:
            last_error = f"the answer did not call the tool '{name}'"
            messages.append(Message("assistant", completion.text or "(no tool call)"))
            messages.append(Message("user", f"error: {last_error}; call it now."))
            continue
        try:
            if call.parse_error is not None:
                raise ToolError(call.parse_error, tool=name)
            await toolbox.check_args(ctx, name, call.arguments)
            return call.arguments, attempt, total_cost
        except ToolError as exc:
            last_error = exc.message
        messages.extend(_retry_messages(completion.text, call, last_error))
    raise StepFailed(
        f"step {spec.id}: tool '{name}' got no valid arguments in {attempts} attempts; "
        f"last error: {last_error}",
        step_id=spec.id,
    )


def _retry_messages(text: str, call: ToolCall, error: str) -> list[Message]:
    return [
        Message("assistant", text, tool_calls=(call,)),
        Message("tool", f"error: {error}", tool_call_id=call.id, name=call.name),
    ]


async def call_tool(ctx: StepContext, name: str, args: dict[str, Any]) -> Any:
    """Run the tool once, with its tool_execution and tool_result events."""
    step_id = ctx.step.spec.id
    ctx.emit(ToolExecution(step_id=step_id, tool_name=name, args=args))
    try:
        result = await toolbox.call(ctx, name, args, tool_context(ctx))
    except ToolError as exc:
        ctx.emit(ToolResult(step_id=step_id, tool_name=name, preview=preview(f"error: {exc.message}"), error=True))
        raise ToolError(f"step {step_id}: {exc.message}", tool=name, retryable=exc.retryable,
                        step_id=step_id) from exc
    ctx.emit(ToolResult(step_id=step_id, tool_name=name, preview=preview(as_text(result))))
    return result


def reads(spec: StepBase, expression: Expression | None) -> set[str]:
    keys = prompt_reads(spec, spec.prompt_template)
    for value in (spec.tool_args or {}).values():
        if isinstance(value, str):
            keys |= template_keys(value)
    return keys


def check_fields(spec: StepBase, report: FieldReport) -> None:
    report.need("forced_tool", bool(spec.forced_tool), "name the tool this step calls")
    if spec.forced_tool and report.tools is not None and spec.forced_tool not in report.tools:
        report.add("unregistered-tool", f"tool '{spec.forced_tool}' is not registered",
                   "register it before running this graph", severity="warning")


KIND = StepKind(name="tool", spec=ToolStep, executor=run_tool, check_fields=check_fields, reads=reads, uses_agent=True)
