"""Whole runs whose LLM steps go through the real OpenAI-compatible and Anthropic clients to a
fake vendor server: review loops, retries after 429, the cost limit, sub-orchestrations."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from orch.events import decode_event
from tests.fakes import FakeLLMServer, Reply, Status, running_fake_llm


@pytest.fixture(scope="module")
def vendor() -> Iterator[FakeLLMServer]:
    with running_fake_llm() as server:
        yield server


@pytest.fixture
def fake(vendor: FakeLLMServer) -> FakeLLMServer:
    vendor.reset()
    return vendor


def openai_settings(server: FakeLLMServer, model: str = "gpt-4o") -> dict[str, Any]:
    return {"openai_base_url": server.openai_base_url, "openai_api_key": "sk-test",
            "default_provider": "openai", "default_model": model}


REVIEW = """
id: review
name: Review loop
steps:
  - {id: write, type: llm, prompt_template: "Write about {state.user_input}", output_key: draft,
     next_step_id: judge, max_iterations: 2}
  - id: judge
    type: evaluator
    input_keys: [draft]
    route_map: {ship: publish, revise: write}
    route_descriptions: {ship: good enough, revise: needs work}
    next_step_id: publish
    max_iterations: 2
  - {id: publish, type: print, print_content: "{state.draft}", output_key: final}
"""


async def test_evaluator_routes_back_until_max_iterations(make_engine, sqlite_url, fake):
    fake.script([Reply("draft one"), Reply("revise\nReason: thin"), Reply("draft two"),
                 Reply("revise\nReason: still thin")])
    engine = await make_engine(sqlite_url, REVIEW, **openai_settings(fake))
    result = await engine.run("review", "tides")
    decisions = [decode_event(b) for _, b in await engine.store.events(result.run_id)]
    routing = [(e.decision, e.target_step_id) for e in decisions if e.__class__.__name__ == "RoutingDecision"]
    assert ([(h.step_id, h.status, h.iteration, h.turns) for h in result.step_history], routing, result.response) == (
        [("write", "completed", 1, 1), ("judge", "completed", 1, 1), ("write", "completed", 2, 1),
         ("judge", "completed", 2, 1), ("write", "skipped", 2, 0), ("judge", "skipped", 2, 0),
         ("publish", "completed", 1, 0)],
        [("revise", "write"), ("revise", "write")],
        "draft two",
    )
    assert len(fake.requests) == 4


async def test_provider_429_then_success_under_a_retry_policy(make_engine, sqlite_url, fake):
    graph = """
id: flaky
name: Flaky
steps:
  - {id: ask, type: llm, prompt_template: "Summarise {state.user_input}", output_key: answer,
     retry: {attempts: 3, backoff_seconds: 0.01}}
"""
    fake.script([Status(429, message="slow down"), Status(503), Reply("all good")])
    engine = await make_engine(sqlite_url, graph, **openai_settings(fake))
    result = await engine.run("flaky", "tides")
    errors = [decode_event(b) for _, b in await engine.store.events(result.run_id)]
    retried = [e.error for e in errors if e.__class__.__name__ == "StepError"]
    assert (result.status, result.response, len(fake.requests)) == ("completed", "all good", 3)
    assert retried == ["openai gpt-4o (HTTP 429): slow down [rate_limit_error]",
                       "openai gpt-4o (HTTP 503): " + retried[1].split(": ", 1)[1]]


async def test_without_retry_a_provider_error_fails_the_run_naming_provider_model_status(make_engine, sqlite_url, fake):
    graph = "id: once\nname: Once\nsteps:\n  - {id: ask, type: llm, output_key: answer}\n"
    fake.script([Status(429, message="slow down")])
    engine = await make_engine(sqlite_url, graph, **openai_settings(fake))
    result = await engine.run("once", "x")
    assert (result.status, result.response) == ("failed", "openai gpt-4o (HTTP 429): slow down [rate_limit_error]")


COSTLY = """
id: costly
name: Costly
max_total_cost_usd: 0.50
steps:
  - {id: s1, type: llm, output_key: a, next_step_id: s2}
  - {id: s2, type: llm, output_key: b, next_step_id: s3}
  - {id: s3, type: llm, output_key: c, next_step_id: s4}
  - {id: s4, type: llm, output_key: d}
"""


async def test_cost_limit_fails_the_run_with_the_exact_message(make_engine, sqlite_url, fake):
    # gpt-4o: $2.50 / M input, $10 / M output → 80,000 in + 2,000 out = $0.22 a call.
    fake.default = lambda protocol, body: Reply("ok", input_tokens=80_000, output_tokens=2_000)
    engine = await make_engine(sqlite_url, COSTLY, **openai_settings(fake))
    result = await engine.run("costly", "x")
    row = await engine.store.get_run(result.run_id)
    assert (result.status, result.response, [(h.step_id, h.status, h.cost_usd) for h in result.step_history]) == (
        "failed", "Cost limit exceeded: $0.66 > max $0.50",
        [("s1", "completed", 0.22), ("s2", "completed", 0.22), ("s3", "failed", 0.22)],
    )
    assert row.cost_usd == pytest.approx(sum(h.cost_usd for h in result.step_history))
    assert len(fake.requests) == 3  # no call starts after the limit


async def test_anthropic_provider_drives_an_agent_step(make_engine, sqlite_url, fake):
    graph = """
id: claude
name: Claude
steps:
  - {id: think, type: agent, agent_id: thinker, prompt_template: "Count words in {state.user_input}", output_key: answer}
agents:
  - {id: thinker, name: Thinker, provider: anthropic, model: claude-sonnet-4-5, tools: [word_count]}
"""
    fake.script([Reply("", tool_calls=[("word_count", {"text": "a b c"})]), Reply("3 words")])
    engine = await make_engine(sqlite_url, graph, anthropic_base_url=fake.url, anthropic_api_key="k")
    result = await engine.run("claude", "a b c")
    assert (result.status, result.response, result.step_history[0].turns) == ("completed", "3 words", 2)
    assert [r.protocol for r in fake.requests] == ["anthropic", "anthropic"]
    tool_result = fake.requests[1].json["messages"][-1]["content"][0]
    assert (tool_result["type"], tool_result["content"]) == ("tool_result", "3")


PARENT = """
id: parent
name: Parent
steps:
  - {id: prep, type: print, print_content: "brief for {state.user_input}", output_key: brief, next_step_id: child}
  - {id: child, type: agent, agent_id: approver, prompt_template: "{state.brief}", output_key: verdict, next_step_id: after}
  - {id: after, type: print, print_content: "parent saw {state.verdict}", output_key: final}
agents:
  - {id: approver, name: Approver, type: orchestrator, orchestration_id: child-flow}
"""
CHILD = """
id: child-flow
name: Child
steps:
  - id: ask
    type: human
    human_prompt: "Approve {state.user_input}?"
    human_fields: [{name: decision, type: select, options: ["yes", "no"], required: true}]
    next_step_id: say
  - {id: say, type: print, print_content: "child decided {state.human_response.decision}", output_key: said}
"""


async def test_gate_inside_a_sub_orchestration_pauses_and_resumes_through_the_parent(make_engine, sqlite_url):
    engine = await make_engine(sqlite_url, PARENT, CHILD)
    paused = await engine.run("parent", "tides")
    gate = paused.human_input_required
    assert (paused.status, gate.step_id, gate.prompt) == ("paused", "child", "Approve brief for tides?")
    children = await engine.store.list_runs(orchestration_id="child-flow")
    assert [c.status for c in children] == ["paused"] and children[0].parent_run_id == paused.run_id
    await engine.resume(paused.run_id, {"decision": "yes"})
    done = await engine.wait(paused.run_id)
    assert (done.status, done.response, [h.step_id for h in done.step_history]) == (
        "completed", "parent saw child decided yes", ["prep", "child", "after"])
    assert (await engine.result(children[0].id)).status == "completed"
