"""The pure transition (engine.run.transition), driven by hand: no event loop, no database, the
time given as a number. Each case plays steps of a small graph and compares what the run
becomes: events, records, ready tokens, state and endings."""

from __future__ import annotations

from typing import Any

import pytest

from orch.definition.compile import compile_catalog
from orch.definition.loader import Catalog, load_text
from orch.errors import CostLimitExceeded, StepFailed
from orch.run import scheduler, transition
from orch.run.transition import Effects, RunValue, StepOutcome
from orch.steps.base import GateRequest, StepResult

T0 = 1000.0


def value(text: str) -> RunValue:
    catalog = load_text(text, "t.yaml", Catalog())
    result = next(iter(compile_catalog(catalog).values()))
    assert result.graph is not None, [str(p) for p in result.problems]
    graph = result.graph
    return RunValue("r1", graph, graph.schema.initial(), scheduler.start(graph))


def ready_ids(effects: Effects) -> list[str]:
    return [t.step_id for t in effects.ready]


def kinds(effects: Effects) -> list[str]:
    return [type(e).__name__ for e in effects.events]


def play(v: RunValue, result: StepResult | None = None, error: Any = None, now: float = T0) -> Effects:
    """Start the one ready token and finish it with `result` (or `error`)."""
    (token,) = list(v.frontier.tokens.values())
    start = transition.start_step(v, token, now)
    assert start.run, start
    out = StepOutcome(token, v.graph.steps[token.step_id], start.iteration, now, now + 0.5, result, error)
    return transition.step_finished(v, out, now + 0.5)


CHAIN = """
id: chain
name: Chain
state_schema: {n: {type: int, default: 0}}
steps:
  - {id: a, type: print, print_content: x, output_key: out, next_step_id: b}
  - {id: b, type: transform, transform_code: "result = 7", output_key: n}
"""


def test_a_chain_writes_records_and_completes_with_its_last_step() -> None:
    v = value(CHAIN)
    first = play(v, StepResult(output="hello"))
    assert (kinds(first), ready_ids(first), first.completes_run, v.state["out"]) == (
        ["StepComplete"], ["b"], False, "hello")
    assert [(r.step_id, r.status, r.iteration, r.writes, r.started_at, r.ended_at) for r in first.records] == [
        ("a", "completed", 1, b'{"out":"hello"}', T0, T0 + 0.5)]
    second = play(v, StepResult(output="7"))  # converted to the key's declared int
    assert (second.completes_run, v.state["n"], v.response_text(), v.turns) == (True, 7, "7", 2)


def test_a_value_the_key_cannot_hold_fails_the_step_and_changes_nothing() -> None:
    v = value(CHAIN)
    play(v, StepResult(output="hello"))
    effects = play(v, StepResult(output="not a number"))
    assert (kinds(effects), effects.fails_run, v.state["n"], effects.records[-1].status) == (
        ["StepError", "StepComplete"], True, 0, "failed")
    assert v.failure is not None and "expects int" in v.failure.message


@pytest.mark.parametrize("on_error, fails, ready", [("fail", True, []), ("continue", False, ["b"])])
def test_on_error_decides_whether_a_failed_step_fails_the_run(on_error: str, fails: bool, ready: list[str]) -> None:
    v = value(CHAIN.replace("output_key: out,", f"output_key: out, on_error: {on_error},"))
    effects = play(v, error=StepFailed("step a: boom", step_id="a"))
    assert (effects.fails_run, ready_ids(effects), v.failure is not None, effects.records[-1].error) == (
        fails, ready, fails, "step a: boom")


ROUTER = """
id: router
name: Router
state_schema: {x: {type: int, default: 5}}
steps:
  - {id: check, type: if_else, if_condition: "state.x > 3", if_true_step_id: big, if_false_step_id: small}
  - {id: big, type: print, print_content: big, output_key: out}
  - {id: small, type: print, print_content: small, output_key: out}
"""


@pytest.mark.parametrize("route, target", [("true", "big"), ("false", "small")])
def test_a_router_goes_where_its_route_says_and_announces_it(route: str, target: str) -> None:
    v = value(ROUTER)
    effects = play(v, StepResult(output=route == "true", route=route))
    assert (kinds(effects), ready_ids(effects)) == (["RoutingDecision", "StepComplete"], [target])
    assert effects.events[0].target_step_id == target  # type: ignore[attr-defined]


LOOP = """
id: loop
name: Loop
steps:
  - {id: a, type: print, print_content: x, output_key: out, next_step_id: b, max_iterations: 1}
  - {id: b, type: switch, switch_expression: "'again'", switch_cases: {again: a}, switch_default_step_id: c}
  - {id: c, type: print, print_content: done, output_key: out}
"""


def test_the_loop_guard_skips_a_step_that_ran_its_max_iterations() -> None:
    v = value(LOOP)
    play(v, StepResult(output="x"))
    back = play(v, StepResult(output="again", route="again"))
    assert ready_ids(back) == ["a"]
    (token,) = list(v.frontier.tokens.values())
    start = transition.start_step(v, token, T0)
    assert (start.run, kinds(start.effects), ready_ids(start.effects)) == (False, ["LoopLimitReached"], ["b"])
    assert [(r.step_id, r.status) for r in start.effects.records] == [("a", "skipped")]


def test_the_turn_limit_stops_the_run_before_a_step_starts() -> None:
    v = value(CHAIN.replace("name: Chain", "name: Chain\nmax_total_turns: 1"))
    play(v, StepResult(output="x"))
    (token,) = list(v.frontier.tokens.values())
    start = transition.start_step(v, token, T0)
    assert (start.run, v.failure is not None and v.failure.message) == (False, "Global turn limit (1) exceeded")


GATE = """
id: gate
name: Gate
steps:
  - {id: ask, type: human, human_prompt: ok?, human_fields: [{name: d, type: text}], output_key: answer,
     next_step_id: after}
  - {id: after, type: print, print_content: done, output_key: out}
"""


def test_a_gate_is_asked_then_its_answer_completes_the_step() -> None:
    v = value(GATE)
    asked = play(v, StepResult(gate=GateRequest("ok?", [{"name": "d"}], "", 60.0)), now=T0)
    gate = v.gates["ask"]
    assert (kinds(asked), asked.gate_changed, asked.ready, gate.deadline, gate.iteration) == (
        ["HumanInputRequired"], True, [], T0 + 0.5 + 60.0, 1)
    assert transition.paused(v) == ([transition.paused(v)[0][0]], gate.deadline)
    answered = transition.answer_gate(v, "ask", {"d": "yes"}, T0 + 10)
    assert (kinds(answered), v.gates, v.state["answer"], v.state["human_response"]) == (
        ["StepComplete"], {}, {"d": "yes"}, {"d": "yes"})
    assert [(r.step_id, r.started_at, r.ended_at) for r in answered.records] == [("ask", T0, T0 + 10)]
    assert [t.step_id for t in v.frontier.tokens.values()] == ["after"]


def test_spending_past_the_cost_limit_fails_the_run_with_the_message() -> None:
    v = value(CHAIN.replace("name: Chain", "name: Chain\nmax_total_cost_usd: 0.5"))
    transition.add_cost(v, 0.3, "a")
    with pytest.raises(CostLimitExceeded) as over:
        transition.add_cost(v, 0.3, "a")
    assert (over.value.message, v.failure is over.value) == ("Cost limit exceeded: $0.60 > max $0.50", True)
    effects = play(v, StepResult(output="x"))  # a step that ends after the limit fails too
    assert (effects.fails_run, kinds(effects)) == (True, ["StepError", "StepComplete"])


def test_endings_name_the_run_outcome() -> None:
    v = value(CHAIN)
    events, response = transition.completed(v)
    assert ([type(e).__name__ for e in events], response) == (
        ["OrchestrationComplete", "Done"], "Orchestration completed. 0 steps executed.")
    assert [type(e).__name__ for e in transition.cancelled()] == ["OrchestrationError", "Done"]
