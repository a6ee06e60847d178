"""The LLM step executors (agent, llm, tool, evaluator) driven through the real HTTP providers
against a fake vendor server, with a real compiled graph, tool registry and price table."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from orch.definition.compile import CompiledGraph, CompiledStep, compile_definition
from orch.cost import PriceTable, format_cost_limit_message
from orch.errors import CostLimitExceeded, StepFailed
from orch.events import AgentTurn, Event, RoutingDecision, ToolExecution, ToolResult
from orch.providers import AnthropicProvider, OfflineProvider, OpenAICompatProvider
from orch.providers.base import Usage
from orch.providers.openai_compat import parse_arguments
from orch.sandbox import transform_policy
from orch.services import Services
from orch.settings import Settings
from orch.definition.spec import (
    Agent,
    AgentStep,
    EndStep,
    EvaluatorStep,
    LlmStep,
    Orchestration,
    StateField,
    Step,
    StepBase,
    ToolStep,
)
from orch.steps.agent import run_agent
from orch.steps.base import StepResult
from orch.steps.evaluator import run_evaluator
from orch.steps.llm import run_llm
from orch.steps.tool import run_tool
from orch.tools import ToolRegistry
from tests.fakes import FakeLLMServer, RecordedRequest, Reply, running_fake_llm

MODEL = "gpt-4o"
GOAL = "Answer questions about cities."
PRICES = PriceTable()


def cost(input_tokens: int, output_tokens: int) -> float:
    return PRICES.cost(MODEL, Usage(input_tokens, output_tokens))


@dataclass
class Context:
    """A StepContext as the runner provides it, recording what the executor emits and spends."""

    run_id: str
    graph: CompiledGraph
    step: CompiledStep
    state: Mapping[str, Any]
    services: Services
    iteration: int = 1
    last_output: Any = None
    limit: float | None = None
    events: list[Event] = field(default_factory=list)
    costs: list[float] = field(default_factory=list)

    @property
    def spec(self) -> StepBase:
        return self.step.spec

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def add_cost(self, amount: float) -> None:
        self.costs.append(amount)
        self.check_budget()

    def check_budget(self) -> None:
        if self.limit is not None and sum(self.costs) > self.limit:
            raise CostLimitExceeded(format_cost_limit_message(sum(self.costs), self.limit))

    async def run_substep(self, step_id: str, state: Mapping[str, Any], iteration: int) -> StepResult:
        raise NotImplementedError


def context(services: Services, *steps: Step, state: Mapping[str, Any] | None = None,
            schema: Mapping[str, str] | None = None, agents: tuple[Agent, ...] = ()) -> Context:
    """A context for the first of `steps`, compiled into a real graph with the others."""
    orch = Orchestration(
        id="orch-test", name="Test", description=GOAL, steps=list(steps),
        state_schema={key: StateField(type=kind) for key, kind in (schema or {}).items()},
    )
    result = compile_definition(orch, {a.id: a for a in agents}, tools=set(services.tools.names()))
    assert result.graph is not None, result.errors
    return Context("run-1", result.graph, result.graph.steps[steps[0].id], dict(state or {}), services)


@pytest.fixture(scope="module")
def module_server() -> Iterator[FakeLLMServer]:
    with running_fake_llm() as server:
        yield server


@pytest.fixture
def server(module_server: FakeLLMServer) -> FakeLLMServer:
    module_server.reset()
    return module_server


@pytest.fixture(params=["openai", "anthropic"])
async def services(request: pytest.FixtureRequest, server: FakeLLMServer, tmp_path: Path) -> AsyncIterator[Services]:
    settings = Settings(default_provider=request.param, default_model=MODEL, sandbox_root=str(tmp_path))
    built = Services(
        settings=settings,
        providers={
            "openai": OpenAICompatProvider(server.openai_base_url, "sk-test"),
            "anthropic": AnthropicProvider("ak-test", base_url=server.anthropic_base_url),
            "offline": OfflineProvider(),
        },
        tools=ToolRegistry.with_builtins(),
        prices=PRICES,
        transforms=transform_policy(settings, local=True),
    )
    yield built
    await built.aclose()


def system_sent(req: RecordedRequest) -> str:
    if req.protocol == "anthropic":
        return str(req.json.get("system", ""))
    return "\n\n".join(m["content"] for m in req.json["messages"] if m["role"] == "system")


def user_sent(req: RecordedRequest) -> str:
    return str(next(m["content"] for m in req.json["messages"] if m["role"] == "user"))


def tool_results_sent(req: RecordedRequest) -> list[tuple[str, str]]:
    """(call id, content) of every tool result in the conversation the client sent."""
    if req.protocol == "openai":
        return [(m["tool_call_id"], m["content"]) for m in req.json["messages"] if m["role"] == "tool"]
    return [
        (block["tool_use_id"], block["content"])
        for m in req.json["messages"] if m["role"] == "user" and isinstance(m["content"], list)
        for block in m["content"] if block["type"] == "tool_result"
    ]


def tool_calls_sent(req: RecordedRequest) -> list[tuple[str, str, Any]]:
    """(call id, tool name, arguments as sent) of every assistant tool call in the conversation."""
    if req.protocol == "openai":
        return [(c["id"], c["function"]["name"], c["function"]["arguments"])
                for m in req.json["messages"] if m["role"] == "assistant" for c in m.get("tool_calls", [])]
    return [(b["id"], b["name"], b["input"])
            for m in req.json["messages"] if m["role"] == "assistant" and isinstance(m["content"], list)
            for b in m["content"] if b["type"] == "tool_use"]


async def test_agent_runs_tools_concurrently_over_three_turns(server: FakeLLMServer, services: Services) -> None:
    both_running = asyncio.Barrier(2)

    async def population(city: str) -> int:
        """Population of a city."""
        await asyncio.wait_for(both_running.wait(), 5)  # returns only once the other tool runs too
        return 2_100_000

    async def area_km2(city: str) -> int:
        """Area of a city in km²."""
        await asyncio.wait_for(both_running.wait(), 5)
        return 105

    services.tools.register(population)
    services.tools.register(area_km2)
    agent = Agent(id="geo", system_prompt="You are a geographer.", tools=["population", "area_km2", "calculator"])
    step = AgentStep(id="density", agent_id="geo", prompt_template="Density of {state.city}?",
                     output_key="answer")
    ctx = context(services, step, state={"city": "Paris"}, schema={"city": "str"}, agents=(agent,))
    server.script([
        Reply(text="Looking up both.", tool_calls=[("population", {"city": "Paris"}), ("area_km2", {"city": "Paris"})],
              input_tokens=100, output_tokens=20),
        Reply(tool_calls=[("calculator", {"expression": "2100000/105"})], input_tokens=150, output_tokens=10),
        Reply(text="About 20,000 people per km².", input_tokens=200, output_tokens=12),
    ])

    result = await run_agent(ctx)

    assert (result.output, result.turns) == ("About 20,000 people per km².", 3)
    assert result.cost_usd == pytest.approx(cost(100, 20) + cost(150, 10) + cost(200, 12))
    assert ctx.costs == [cost(100, 20), cost(150, 10), cost(200, 12)]
    assert ctx.events == [
        AgentTurn(step_id="density", turn=1, content="Looking up both.", cost_usd=cost(100, 20),
                  tool_calls=[{"name": "population", "args": {"city": "Paris"}},
                              {"name": "area_km2", "args": {"city": "Paris"}}]),
        ToolExecution(step_id="density", tool_name="population", args={"city": "Paris"}),
        ToolExecution(step_id="density", tool_name="area_km2", args={"city": "Paris"}),
        ToolResult(step_id="density", tool_name="population", preview="2100000"),
        ToolResult(step_id="density", tool_name="area_km2", preview="105"),
        AgentTurn(step_id="density", turn=2, content="", cost_usd=cost(150, 10),
                  tool_calls=[{"name": "calculator", "args": {"expression": "2100000/105"}}]),
        ToolExecution(step_id="density", tool_name="calculator", args={"expression": "2100000/105"}),
        ToolResult(step_id="density", tool_name="calculator", preview="20000.0"),
        AgentTurn(step_id="density", turn=3, content="About 20,000 people per km².", tool_calls=[],
                  cost_usd=cost(200, 12)),
    ]
    first, second, third = server.requests
    assert system_sent(first) == f"You are a geographer.\n\nWorkflow goal: {GOAL}"
    assert user_sent(first) == "Density of Paris?"
    offered = [t["function"]["name"] if first.protocol == "openai" else t["name"] for t in first.json["tools"]]
    assert offered == ["population", "area_km2", "calculator"]
    call_ids = [call_id for call_id, _, _ in tool_calls_sent(second)]
    assert tool_results_sent(second) == list(zip(call_ids, ["2100000", "105"]))
    assert [content for _, content in tool_results_sent(third)] == ["2100000", "105", "20000.0"]


@pytest.mark.parametrize(("last_text", "expected"), [
    ("Still checking.", "Still checking."),
    ("", "Stopped after 2 turns without a final answer."),
])
async def test_agent_at_max_turns_ends_with_last_text(
    server: FakeLLMServer, services: Services, last_text: str, expected: str
) -> None:
    agent = Agent(id="calc", tools="all", max_turns=10)
    step = AgentStep(id="loop", agent_id="calc", prompt_template="Compute.", max_turns=2,
                     allowed_tools=["calculator", "not_a_tool"])
    ctx = context(services, step, agents=(agent,))
    server.script([Reply(text=last_text, tool_calls=[("calculator", {"expression": "1+1"})])] * 2)

    result = await run_agent(ctx)

    assert (result.output, result.turns, len(server.requests)) == (expected, 2, 2)
    assert result.cost_usd == pytest.approx(2 * cost(10, 5))


async def test_agent_feeds_tool_errors_back(server: FakeLLMServer, services: Services) -> None:
    ctx = context(services, AgentStep(id="a", agent_id="calc", prompt_template="Go."),
                  agents=(Agent(id="calc", tools=["calculator"]),))
    server.script([Reply(tool_calls=[("calculator", {"expression": "1/0"}), ("word_count", {"text": "x"})]),
                   Reply(text="Cannot divide by zero.")])

    result = await run_agent(ctx)

    assert result.output == "Cannot divide by zero."
    assert [content for _, content in tool_results_sent(server.requests[1])] == [
        "error: tool 'calculator' raised ZeroDivisionError: division by zero",
        "error: tool 'word_count' is not available to this agent; available: calculator",
    ]
    assert [(e.tool_name, e.error) for e in ctx.events if isinstance(e, ToolResult)] == [
        ("calculator", True), ("word_count", True)]


async def test_tool_step_sends_bad_arguments_back_and_retries(server: FakeLLMServer, services: Services) -> None:
    step = ToolStep(id="calc", forced_tool="calculator", prompt_template="Compute 6*7.", output_key="product")
    ctx = context(services, step)
    broken = '{"expression": '
    server.script([Reply(tool_calls=[("calculator", broken)]),
                   Reply(tool_calls=[("calculator", {"expression": "6*7"})])])

    result = await run_tool(ctx)

    assert (result.output, result.turns) == (42, 2)
    assert result.cost_usd == pytest.approx(2 * cost(10, 5))
    first, second = server.requests
    expected_choice = ({"type": "function", "function": {"name": "calculator"}} if first.protocol == "openai"
                       else {"type": "tool", "name": "calculator"})
    assert first.json["tool_choice"] == second.json["tool_choice"] == expected_choice
    if first.protocol == "openai":
        error = parse_arguments(broken)[1]
        assert [args for _, _, args in tool_calls_sent(second)] == [broken]  # its own mistake, verbatim
    else:
        error = "arguments must be a JSON object, got str"
    [(call_id, content)] = tool_results_sent(second)
    assert content == f"error: {error}"
    assert call_id == tool_calls_sent(second)[0][0]
    assert [type(e).__name__ for e in ctx.events] == ["AgentTurn", "AgentTurn", "ToolExecution", "ToolResult"]
    assert ctx.events[-1] == ToolResult(step_id="calc", tool_name="calculator", preview="42")


async def test_tool_step_gives_up_after_max_turns(server: FakeLLMServer, services: Services) -> None:
    ctx = context(services, ToolStep(id="calc", forced_tool="calculator", max_turns=2))
    server.script([Reply(tool_calls=[("calculator", {"expr": "1"})])] * 2)

    with pytest.raises(StepFailed) as info:
        await run_tool(ctx)

    assert info.value.message == (
        "step calc: tool 'calculator' got no valid arguments in 2 attempts; last error: "
        "invalid arguments for tool 'calculator': Object contains unknown field `expr`"
    )
    assert len(server.requests) == 2 and not any(isinstance(e, ToolExecution) for e in ctx.events)


async def test_tool_step_with_tool_args_calls_no_model(server: FakeLLMServer, services: Services) -> None:
    def describe(numbers: list[int], label: str, scale: int = 1) -> str:
        """Describe numbers."""
        return f"{label}: {sum(numbers) * scale}"

    services.tools.register(describe)
    step = ToolStep(id="sum", forced_tool="describe", output_key="summary",
                    tool_args={"numbers": "{state.numbers}", "label": "Total for {state.team}", "scale": 2})
    ctx = context(services, step, state={"numbers": [1, 2, 3], "team": "blue"},
                  schema={"numbers": "list[int]", "team": "str"})

    result = await run_tool(ctx)

    assert (result.output, result.turns, result.cost_usd) == ("Total for blue: 12", 0, 0.0)
    assert server.requests == [] and ctx.costs == []
    assert ctx.events == [
        ToolExecution(step_id="sum", tool_name="describe",
                      args={"numbers": [1, 2, 3], "label": "Total for blue", "scale": 2}),
        ToolResult(step_id="sum", tool_name="describe", preview="Total for blue: 12"),
    ]


def review_steps(**fields: Any) -> tuple[Step, ...]:
    evaluator = EvaluatorStep(
        id="review", input_keys=["draft"], output_key="verdict",
        route_map={"approve": "publish", "needs_revision": "rewrite"},
        route_descriptions={"approve": "the draft is ready"}, **fields,
    )
    return evaluator, EndStep(id="publish"), EndStep(id="rewrite")


async def test_evaluator_picks_a_label(server: FakeLLMServer, services: Services) -> None:
    ctx = context(services, *review_steps(evaluator_prompt="Review the draft."),
                  state={"draft": "Short text."}, schema={"draft": "str"})
    server.script([Reply(text="**Needs revision**\nReason: too short.", input_tokens=40, output_tokens=8)])

    result = await run_evaluator(ctx)

    assert (result.output, result.route, result.turns) == ("needs_revision", "needs_revision", 1)
    assert result.cost_usd == cost(40, 8)
    assert ctx.events == [RoutingDecision(step_id="review", decision="needs_revision",
                                          target_step_id="rewrite", reasoning="too short.")]
    [sent] = server.requests
    assert system_sent(sent) == (
        f"Workflow goal: {GOAL}\n\n"
        "Decide how the workflow continues by choosing exactly one of these labels:\n"
        "- approve: the draft is ready\n- needs_revision\nLabels: approve | needs_revision\n"
        "Answer with exactly one label on the first line, then a line `Reason: <why>`."
    )
    assert user_sent(sent) == "Review the draft.\n\nContext:\ndraft:\nShort text."


async def test_evaluator_finds_a_label_inside_prose(server: FakeLLMServer, services: Services) -> None:
    ctx = context(services, *review_steps(), state={"draft": "x"}, schema={"draft": "str"})
    server.script([Reply(text="I think we should approve it.")])

    assert (await run_evaluator(ctx)).route == "approve"


async def test_evaluator_falls_back_to_first_label(server: FakeLLMServer, services: Services) -> None:
    ctx = context(services, *review_steps(), state={"draft": "x"}, schema={"draft": "str"})
    answer = "Hard to say. The text has merits and flaws in equal measure, so I will not pick a side here."
    server.script([Reply(text=answer)])

    result = await run_evaluator(ctx)

    assert result.route == "approve"
    assert ctx.events == [RoutingDecision(
        step_id="review", decision="approve", target_step_id="publish",
        reasoning=f'answer named no label ("{answer[:80]}"); fell back to the first label \'approve\'',
    )]


async def test_llm_writing_a_dict_key_parses_json(server: FakeLLMServer, services: Services) -> None:
    step = LlmStep(id="outline", input_keys=["topic"], output_key="outline")
    ctx = context(services, step, state={"topic": "rivers", "user_input": "Write about rivers"},
                  schema={"topic": "str", "outline": "dict"})
    server.script([Reply(text='Here it is:\n```json\n{"title": "Rivers", "sections": [1, 2]}\n```')])

    result = await run_llm(ctx)

    assert (result.output, result.turns, result.cost_usd) == ({"title": "Rivers", "sections": [1, 2]}, 1, cost(10, 5))
    [sent] = server.requests
    assert system_sent(sent) == f"Workflow goal: {GOAL}"
    assert user_sent(sent) == (
        "Continue the workflow.\n\nContext:\ntopic:\nrivers\n\nUser input: Write about rivers\n\n"
        "Respond with a JSON object."
    )


async def test_no_call_starts_once_the_budget_is_spent(server: FakeLLMServer, services: Services) -> None:
    ctx = context(services, LlmStep(id="more", prompt_template="Again."))
    ctx.costs.append(1.0)
    ctx.limit = 0.5

    with pytest.raises(CostLimitExceeded, match=r"^Cost limit exceeded: \$1\.00 > max \$0\.50$"):
        await run_llm(ctx)
    assert server.requests == []


async def test_offline_agent_runs_a_named_tool(services: Services) -> None:
    agent = Agent(id="calc", provider="offline", model="offline", tools=["calculator"])
    ctx = context(services, AgentStep(id="a", agent_id="calc", prompt_template="Please use calculator(6*7)."),
                  agents=(agent,))

    result = await run_agent(ctx)

    assert result.turns == 2
    assert "- calculator: 42" in result.output
    assert [type(e).__name__ for e in ctx.events] == ["AgentTurn", "ToolExecution", "ToolResult", "AgentTurn"]
