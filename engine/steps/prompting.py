"""What LLM steps send and how they read the answer: messages, model choice, one priced call.

The system prompt is the agent's own (when the step names one) followed by the workflow goal.
The user message is the step's rendered `prompt_template` (or "Continue the workflow."), then a
`Context:` block with the value of each `input_keys` entry the prompt does not already show, then
`User input: …` when the run has one the prompt does not already show. A step writing to a
`dict` or `list` key also asks for JSON, and its answer is parsed back into that shape.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import msgspec

from orch.observe.calls import llm_call
from orch.providers.base import Completion, CompletionRequest, Message, Provider
from orch.definition.spec import Agent
from orch.steps.base import StepContext
from orch.steps.json_text import find_json
from orch.definition.templates import render, template_keys

CONTINUE = "Continue the workflow."
_JSON_REQUESTS = {"dict": "Respond with a JSON object.", "list": "Respond with a JSON array."}


log = logging.getLogger("orch.cost")
_UNPRICED: set[str] = set()  # models already warned about


def step_agent(ctx: StepContext) -> Agent | None:
    """The agent the step names, if any."""
    agent_id = ctx.step.spec.agent_id
    return ctx.graph.agents.get(agent_id) if agent_id else None


def system_prompt(ctx: StepContext, *extra: str) -> str:
    """The agent's system prompt, the workflow goal, then any step-specific instructions."""
    agent = step_agent(ctx)
    parts = [agent.system_prompt.strip() if agent else ""]
    goal = ctx.graph.orchestration.description.strip()
    if goal:
        parts.append(f"Workflow goal: {goal}")
    parts.extend(extra)
    return "\n\n".join(p for p in parts if p)


def as_text(value: Any) -> str:
    """A state value as prompt text: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    try:
        return msgspec.json.encode(value).decode()
    except (TypeError, ValueError, OverflowError, msgspec.MsgspecError):
        return str(value)


def user_prompt(ctx: StepContext, template: str | None = None, *, ask_json: bool = True) -> str:
    """The rendered prompt, the Context block, the run's user input and, for dict/list output
    keys, the request for JSON."""
    spec = ctx.step.spec
    source = (spec.prompt_template if template is None else template) or ""
    shown = template_keys(source)
    prompt = render(source, ctx.state).strip() or CONTINUE
    parts = [prompt]
    context = context_block(ctx, (k for k in spec.input_keys if k not in shown))
    if context:
        parts.append(context)
    user_input = ctx.state.get("user_input")
    if user_input not in (None, "") and "user_input" not in shown and "user_input" not in spec.input_keys:
        text = as_text(user_input)
        if text not in prompt:
            parts.append(f"User input: {text}")
    kind = output_kind(ctx)
    if ask_json and kind in _JSON_REQUESTS:
        parts.append(_JSON_REQUESTS[kind])
    return "\n\n".join(parts)


def context_block(ctx: StepContext, keys: Iterable[str]) -> str:
    """`Context:` and `<key>:\\n<value>` for each key that has a value, or "" when none has."""
    entries = [
        f"{key}:\n{as_text(ctx.state[key])}"
        for key in dict.fromkeys(keys)
        if ctx.state.get(key) not in (None, "")
    ]
    return "Context:\n" + "\n\n".join(entries) if entries else ""


def build_messages(ctx: StepContext, *extra_system: str, ask_json: bool = True) -> list[Message]:
    system = system_prompt(ctx, *extra_system)
    messages = [Message("system", system)] if system else []
    messages.append(Message("user", user_prompt(ctx, ask_json=ask_json)))
    return messages


def output_kind(ctx: StepContext) -> str | None:
    """"dict" or "list" when the step's output key is declared as one, else None."""
    key = ctx.step.spec.output_key
    if not key:
        return None
    kind = ctx.graph.schema.type_of(key).kind
    return kind if kind in _JSON_REQUESTS else None


def parse_output(ctx: StepContext, text: str) -> Any:
    """The answer as the output key needs it: parsed JSON for dict/list keys, else the text.

    The first JSON value of the expected shape wins, else the first JSON value at all; an answer
    with no JSON stays text, so the state write names the key, its type and what arrived.
    """
    kind = output_kind(ctx)
    if kind is None:
        return text
    hits = find_json(text)
    wanted = dict if kind == "dict" else list
    return next((h for h in hits if isinstance(h, wanted)), hits[0] if hits else text)


def resolve_model(ctx: StepContext) -> tuple[Provider, str]:
    """The step's model, else its agent's, else the default; the agent's provider, else the default."""
    agent = step_agent(ctx)
    model = ctx.step.spec.model
    if not model or model == "default":
        model = agent.model if agent else None
    return ctx.services.provider_for(agent.provider if agent else None, model)


def request_for(ctx: StepContext, model: str, messages: Iterable[Message], **fields: Any) -> CompletionRequest:
    return CompletionRequest(
        model=model, messages=tuple(messages), timeout_seconds=ctx.step.spec.timeout_seconds, **fields
    )


async def call_model(ctx: StepContext, provider: Provider, request: CompletionRequest) -> tuple[Completion, float]:
    """One LLM call, checked against the run's budget before and charged to it after."""
    ctx.check_budget()
    with llm_call(ctx.run_id, ctx.step.spec.id, provider.name, request.model) as call:  # metrics, traces
        completion = await provider.complete(request)
        cost = _priced(ctx, provider, request, completion)
        call.completed(completion, cost)
        ctx.add_cost(cost)
    return completion, cost


def _priced(ctx: StepContext, provider: Provider, request: CompletionRequest, completion: Completion) -> float:
    if hasattr(ctx, "turns"):  # the step's turns are its LLM calls, also when it fails later
        ctx.turns += 1
    prices = ctx.services.prices
    if provider.name == "offline":
        priced_as = "offline"  # whatever model a step names, the offline model answered it
    else:
        priced_as = completion.model if completion.model and prices.known(completion.model) else request.model
        if not prices.known(priced_as) and priced_as not in _UNPRICED:
            _UNPRICED.add(priced_as)
            log.warning("model %r has no price in the price table: its calls cost $0, so max_total_cost_usd "
                        "cannot limit them; add it to a price file (ORCH_PRICE_FILE)", priced_as)
    return prices.cost(priced_as, completion.usage)


def tool_calls_payload(completion: Completion) -> list[dict[str, Any]]:
    """The `tool_calls` of an agent_turn event."""
    return [{"name": call.name, "args": call.arguments} for call in completion.tool_calls]
