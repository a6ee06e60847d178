"""The agent step: a ReAct loop of model calls and the tool calls they request.

Each turn is one model call. The tool calls of one turn run concurrently; each result (or
`error: …` when the arguments did not parse or the tool failed) goes back to the model, which
sees its mistakes and may try again. The loop ends at an answer without tool calls, or after
`max_turns` calls with the last text the model wrote — running out of turns is not an error.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Mapping

from orch.definition.spec import Agent, AgentStep, StepBase
from orch.errors import ToolError
from orch.events import AgentTurn, ToolExecution, ToolResult, preview
from orch.providers.base import Message, ToolCall, ToolSpec
from orch.steps.base import StepContext, StepKind, StepResult, prompt_reads
from orch.steps.prompting import (
    as_text,
    build_messages,
    call_model,
    parse_output,
    request_for,
    resolve_model,
    step_agent,
    tool_calls_payload,
)
from orch.steps import toolbox
from orch.steps.subflow import KIND as SUBFLOW
from orch.steps.subflow import runs_orchestration
from orch.tools import ToolContext


async def run_agent(ctx: StepContext) -> StepResult:
    spec = ctx.step.spec
    provider, model = resolve_model(ctx)
    tools = await agent_tools(ctx)
    allowed = {t.name for t in tools}
    messages = build_messages(ctx)
    agent = step_agent(ctx)
    # A step left at the default 15 takes the agent's own max_turns, when the agent sets one.
    max_turns = max(agent.max_turns if spec.max_turns == 15 and agent and agent.max_turns else spec.max_turns, 1)
    total_cost, last_text = 0.0, ""
    for turn in range(1, max_turns + 1):
        request = request_for(ctx, model, messages, tools=tuple(tools))
        completion, cost = await call_model(ctx, provider, request)
        total_cost += cost
        last_text = completion.text or last_text
        ctx.emit(AgentTurn(step_id=spec.id, turn=turn, content=completion.text,
                           tool_calls=tool_calls_payload(completion), cost_usd=cost))
        if not completion.tool_calls:
            return StepResult(output=parse_output(ctx, completion.text), turns=turn, cost_usd=total_cost)
        messages.append(Message("assistant", completion.text, tool_calls=completion.tool_calls))
        results = await run_tool_calls(ctx, completion.tool_calls, allowed)
        messages.extend(
            Message("tool", content, tool_call_id=call.id, name=call.name)
            for call, content in zip(completion.tool_calls, results)
        )
    final = last_text or f"Stopped after {max_turns} turns without a final answer."
    return StepResult(output=parse_output(ctx, final), turns=max_turns, cost_usd=total_cost)


async def agent_tools(ctx: StepContext) -> list[ToolSpec]:
    """The tools the step's agent may use, narrowed by the step's `allowed_tools`; names that
    are not registered (nor tools of a declared MCP server) are left out."""
    agent = step_agent(ctx)
    if agent is None:
        return []
    allowed = ctx.step.spec.allowed_tools
    if agent.tool_names is None:
        return await toolbox.tool_specs(ctx, None if allowed is None else allowed)
    names = list(agent.tool_names) if allowed is None else [n for n in allowed if n in agent.tool_names]
    return await toolbox.tool_specs(ctx, names)


def tool_context(ctx: StepContext, call: str = "") -> ToolContext:
    """What a tool sees; `call` tells apart the calls of one step execution (a tool call id)."""
    sandbox = Path(ctx.services.settings.sandbox_root) / ctx.run_id
    execution = getattr(ctx, "key", None) or f"{ctx.step.spec.id}#{ctx.iteration}"
    attempt = f"{ctx.run_id}/{execution}" + (f"/{call}" if call else "")
    return ToolContext(run_id=ctx.run_id, sandbox_dir=sandbox, state=ctx.state, attempt=attempt)


async def run_tool_calls(ctx: StepContext, calls: tuple[ToolCall, ...], allowed: set[str]) -> list[str]:
    """Run one turn's tool calls concurrently; the text each one answers with, in call order.

    Every tool_execution event of the turn comes first, then the tool_result events in call
    order, so a run's event history does not depend on which tool finished first.
    """
    step_id = ctx.step.spec.id
    for call in calls:
        ctx.emit(ToolExecution(step_id=step_id, tool_name=call.name, args=call.arguments))
    outcomes = await asyncio.gather(*(_run_one(ctx, call, allowed, tool_context(ctx, call.id)) for call in calls))
    texts: list[str] = []
    for call, (text, failed) in zip(calls, outcomes):
        ctx.emit(ToolResult(step_id=step_id, tool_name=call.name, preview=preview(text), error=failed))
        texts.append(text)
    return texts


async def _run_one(ctx: StepContext, call: ToolCall, allowed: set[str], tool_ctx: ToolContext) -> tuple[str, bool]:
    if call.parse_error is not None:
        return f"error: {call.parse_error}", True
    if call.name not in allowed:
        known = ", ".join(sorted(allowed)) or "(none)"
        return f"error: tool '{call.name}' is not available to this agent; available: {known}", True
    try:
        result: Any = await toolbox.call(ctx, call.name, call.arguments, tool_ctx)
    except ToolError as exc:
        return f"error: {exc.message}", True
    return as_text(result), False


def runs_as(spec: StepBase, agents: Mapping[str, Agent]) -> str | None:
    """A step whose agent runs another orchestration is a sub-orchestration."""
    return SUBFLOW.name if runs_orchestration(spec, agents) else None


KIND = StepKind(
    name="agent", spec=AgentStep, executor=run_agent,
    reads=lambda spec, expression: prompt_reads(spec, spec.prompt_template), runs_as=runs_as, uses_agent=True,
)
