"""The runtime on SQLite: scheduling, typed state, gates, limits and failures, each asserted on
the whole history or state at once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from orch.errors import InvalidAnswer, InvalidInput, NotPaused
from orch.steps.base import StepResult


async def echo_agent(ctx: Any) -> StepResult:
    """A deterministic stand-in for LLM steps: names the step and what it read."""
    seen = ",".join(f"{k}={ctx.state.get(k)}" for k in ctx.step.spec.input_keys)
    return StepResult(output=f"{ctx.step.spec.id}({seen})", turns=1, cost_usd=0.0)


def brief(result: Any) -> list[tuple[str, str, int]]:
    return [(h.step_id, h.status, h.iteration) for h in result.step_history]


CHAIN = """
id: chain
name: Chain
state_schema:
  topic: {type: str}
  count: {type: int, default: 0, reducer: add}
steps:
  - {id: a, type: agent, input_keys: [topic], output_key: first, next_step_id: b}
  - {id: b, type: transform, transform_code: "result = len(state['first'])", output_key: count, next_step_id: c}
  - {id: c, type: print, print_content: "{state.topic} has {state.count}", output_key: final}
"""


async def test_chain_runs_and_records_typed_state(make_engine, sqlite_url):
    engine = await make_engine(sqlite_url, CHAIN, executors={"agent": echo_agent})
    result = await engine.run("chain", "tides")
    assert (result.status, result.response, result.shared_state, brief(result)) == (
        "completed",
        "tides has 14",
        {"topic": "tides", "count": 14, "user_input": "tides", "user_query": "tides",
         "first": "a(topic=tides)", "final": "tides has 14"},
        [("a", "completed", 1), ("b", "completed", 1), ("c", "completed", 1)],
    )


async def test_bad_write_fails_the_step_naming_key_and_types(make_engine, sqlite_url):
    graph = CHAIN.replace("result = len(state['first'])", "result = 'many'")
    engine = await make_engine(sqlite_url, graph, executors={"agent": echo_agent})
    result = await engine.run("chain", "tides")
    assert (result.status, result.response, brief(result)) == (
        "failed",
        "step b: state key 'count' expects int (add), got str",
        [("a", "completed", 1), ("b", "failed", 1)],
    )


async def test_initial_state_is_checked_against_the_schema(make_engine, sqlite_url):
    engine = await make_engine(sqlite_url, CHAIN, executors={"agent": echo_agent})
    with pytest.raises(InvalidInput) as err:
        await engine.start("chain", "x", {"count": "lots"})
    assert err.value.message == "state.count: state key 'count' expects int, got str"


FAN = """
id: fan
name: Fan
state_schema:
  notes: {type: "list[str]", reducer: append}
  skip: {type: bool, default: false}
steps:
  - {id: start, type: print, print_content: go, output_key: started, next_step_id: [left, right]}
  - {id: left, type: agent, output_key: notes, next_step_id: join}
  - {id: right, type: if_else, if_condition: "state.skip", if_true_step_id: nowhere, if_false_step_id: r2}
  - {id: nowhere, type: end}
  - {id: r2, type: agent, output_key: notes, next_step_id: join}
  - {id: join, type: merge, input_keys: [notes], merge_strategy: list, output_key: merged}
"""


async def test_list_fanout_joins_and_never_waits_for_a_dead_branch(make_engine, sqlite_url):
    engine = await make_engine(sqlite_url, FAN, executors={"agent": echo_agent})
    live = await engine.run("fan", "", {"skip": False})
    dead = await engine.run("fan", "", {"skip": True})
    assert sorted(live.shared_state["notes"]) == ["left()", "r2()"]
    assert [h.step_id for h in live.step_history][-1] == "join"
    assert dead.status == "completed"
    assert dead.shared_state["merged"] == [{"source": "left", "data": ["left()"]}]
    assert sorted(h.step_id for h in dead.step_history) == ["join", "left", "nowhere", "right", "start"]


def wide(n: int, gate_branch: int | None = None) -> str:
    branches = []
    steps = []
    for i in range(n):
        kind = "human" if i == gate_branch else "agent"
        extra = ", human_fields: [{name: ok, type: boolean}]" if kind == "human" else ""
        steps.append(f"  - {{id: b{i}, type: {kind}, output_key: out, next_step_id: join{extra}}}")
        branches.append(f"[b{i}]")
    head = f"""
id: wide
name: Wide
state_schema:
  out: {{type: list, reducer: append}}
steps:
  - {{id: fan, type: parallel, parallel_branches: [{', '.join(branches)}], next_step_id: join}}
"""
    return head + "\n".join(steps) + "\n  - {id: join, type: print, print_content: done, output_key: final}\n"


async def test_64_branches_are_all_in_flight_at_once(make_engine, sqlite_url):
    in_flight, peak = 0, 0
    release = asyncio.Event()

    async def waiting(ctx: Any) -> StepResult:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        if in_flight == 64:
            release.set()
        await release.wait()
        in_flight -= 1
        return StepResult(output=ctx.step.spec.id)

    engine = await make_engine(sqlite_url, wide(64), executors={"agent": waiting})
    result = await asyncio.wait_for(engine.run("wide"), 20)
    assert (result.status, peak, len(result.shared_state["out"])) == ("completed", 64, 64)


async def test_gate_in_one_branch_lets_the_others_finish_first(make_engine, sqlite_url):
    async def quick(ctx: Any) -> StepResult:
        return StepResult(output=ctx.step.spec.id)

    engine = await make_engine(sqlite_url, wide(64, gate_branch=7), executors={"agent": quick})
    paused = await asyncio.wait_for(engine.run("wide"), 20)
    assert paused.status == "paused"
    assert paused.human_input_required.step_id == "b7"
    assert len(paused.shared_state["out"]) == 63 and "join" not in [h.step_id for h in paused.step_history]
    await engine.resume(paused.run_id, {"ok": "yes"})
    done = await engine.wait(paused.run_id)
    assert (done.status, len(done.shared_state["out"]), done.step_history[-1].step_id) == ("completed", 64, "join")
    assert {"ok": True} in done.shared_state["out"]


GATE = """
id: gated
name: Gated
steps:
  - {id: draft, type: agent, output_key: article, next_step_id: approve}
  - id: approve
    type: human
    human_prompt: "Publish {state.user_input}?"
    human_fields:
      - {name: decision, type: select, options: "approve,reject", required: true}
      - {name: words, type: number}
      - {key: contact, type: email}
    input_keys: [article]
    output_key: review
    next_step_id: done
  - {id: done, type: print, print_content: "{state.review.decision}", output_key: final}
"""


async def test_gate_pauses_validates_answers_and_resumes_once(make_engine, sqlite_url):
    engine = await make_engine(sqlite_url, GATE, executors={"agent": echo_agent})
    paused = await engine.run("gated", "tides")
    gate = paused.human_input_required
    assert (gate.step_id, gate.prompt, gate.agent_context, [f["name"] for f in gate.fields]) == (
        "approve", "Publish tides?", "draft()", ["decision", "words", "contact"])
    with pytest.raises(InvalidAnswer) as bad:
        await engine.resume(paused.run_id, {"decision": "maybe", "words": "ten", "contact": "nobody"})
    assert bad.value.field_errors == {
        "decision": "'maybe' is not one of: approve, reject",
        "words": "'ten' is not a number",
        "contact": "'nobody' is not an email address",
    }
    assert (await engine.result(paused.run_id)).status == "paused"
    await engine.resume(paused.run_id, {"decision": "approve", "words": "10"})
    done = await engine.wait(paused.run_id)
    assert (done.status, done.response, done.shared_state["human_response"]) == (
        "completed", "approve", {"decision": "approve", "words": 10})
    with pytest.raises(NotPaused):
        await engine.resume(paused.run_id, {"decision": "approve"})


LOOP_BACK = """
id: looping
name: Looping
steps:
  - {id: write, type: agent, output_key: draft, next_step_id: check, max_iterations: 2}
  - {id: check, type: if_else, if_condition: "True", if_true_step_id: write, next_step_id: after}
  - {id: after, type: print, print_content: "out", output_key: final}
"""


async def test_loop_guard_skips_and_follows_next_step(make_engine, sqlite_url):
    engine = await make_engine(sqlite_url, LOOP_BACK, executors={"agent": echo_agent})
    result = await engine.run("looping")
    assert brief(result) == [
        ("write", "completed", 1), ("check", "completed", 1), ("write", "completed", 2),
        ("check", "completed", 2), ("write", "skipped", 2), ("check", "completed", 3),
        ("write", "skipped", 2), ("check", "skipped", 3), ("after", "completed", 1),
    ]
    events = [e for _, e in await engine.store.events(result.run_id)]
    assert any(b'"loop_limit_reached"' in e for e in events)


async def test_global_turn_limit(make_engine, sqlite_url):
    graph = LOOP_BACK.replace("max_iterations: 2", "max_iterations: 50") + "max_total_turns: 7\n"
    engine = await make_engine(sqlite_url, graph, executors={"agent": echo_agent})
    result = await engine.run("looping")
    executed = [h for h in result.step_history if h.status != "skipped"]
    assert (result.status, result.response, len(executed)) == ("failed", "Global turn limit (7) exceeded", 7)


async def test_step_timeout_retry_and_on_error_continue(make_engine, sqlite_url):
    from orch.errors import ProviderError

    calls = {"flaky": 0}

    async def behave(ctx: Any) -> StepResult:
        sid = ctx.step.spec.id
        if sid == "slow":
            await asyncio.sleep(5)
        if sid == "flaky":
            calls["flaky"] += 1
            if calls["flaky"] < 3:
                raise ProviderError("rate limited", provider="fake", model="m", status=429, retryable=True)
        return StepResult(output=sid)

    graph = """
id: limits
name: Limits
steps:
  - {id: slow, type: agent, output_key: a, timeout_seconds: 0.2, on_error: continue, next_step_id: flaky}
  - {id: flaky, type: agent, output_key: b, retry: {attempts: 3, backoff_seconds: 0.01}, next_step_id: last}
  - {id: last, type: agent, output_key: c}
"""
    engine = await make_engine(sqlite_url, graph, executors={"agent": behave})
    result = await engine.run("limits")
    assert (result.status, [(h.step_id, h.status, h.error) for h in result.step_history], calls["flaky"]) == (
        "completed",
        [("slow", "failed", "step slow exceeded its timeout of 0.2s"), ("flaky", "completed", None),
         ("last", "completed", None)],
        3,
    )


async def test_cancel_a_running_and_a_paused_run(make_engine, sqlite_url):
    started = asyncio.Event()

    async def stuck(ctx: Any) -> StepResult:
        started.set()
        await asyncio.sleep(60)
        return StepResult(output="never")

    engine = await make_engine(sqlite_url, CHAIN, GATE, executors={"agent": stuck})
    run_id = await engine.start("chain", "x")
    await started.wait()
    cancelled = await engine.cancel(run_id)
    assert (cancelled.status, cancelled.response, brief(cancelled)) == ("cancelled", "Run cancelled", [("a", "failed", 1)])

    engine2 = await make_engine(sqlite_url.replace("orch.db", "orch2.db"), GATE, executors={"agent": echo_agent})
    paused = await engine2.run("gated")
    assert (await engine2.cancel(paused.run_id)).status == "cancelled"
    with pytest.raises(NotPaused):
        await engine2.resume(paused.run_id, {"decision": "approve"})


async def test_events_have_monotonic_seq_and_are_persisted_in_order(make_engine, sqlite_url):
    from orch.events import decode_event

    engine = await make_engine(sqlite_url, CHAIN, executors={"agent": echo_agent})
    result = await engine.run("chain", "tides")
    events = [decode_event(b) for _, b in await engine.store.events(result.run_id)]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [type(e).__name__ for e in events] == [
        "RunStart", "StepStart", "StepComplete", "StepStart", "StepComplete", "StepStart", "StepComplete",
        "OrchestrationComplete", "Done",
    ]


async def test_unanswered_gate_fails_the_run_after_its_timeout(make_engine, sqlite_url):
    graph = GATE.replace("    next_step_id: done", "    human_timeout_seconds: 0.3\n    next_step_id: done")
    engine = await make_engine(sqlite_url, graph, executors={"agent": echo_agent})
    paused = await engine.run("gated", "tides")
    assert paused.status == "paused"
    await asyncio.sleep(0.6)
    failed = await engine.result(paused.run_id)
    assert (failed.status, failed.response) == ("failed", "human gate was not answered in time")
    with pytest.raises(NotPaused):
        await engine.resume(paused.run_id, {"decision": "approve"})


async def test_run_timeout_stops_a_run_that_overruns(make_engine, sqlite_url):
    async def slow(ctx: Any) -> StepResult:
        await asyncio.sleep(5)
        return StepResult(output="late")

    graph = CHAIN + "timeout_minutes: 0.005\n"
    engine = await make_engine(sqlite_url, graph, executors={"agent": slow})
    result = await asyncio.wait_for(engine.run("chain", "x"), 10)
    assert (result.status, result.response, brief(result)) == (
        "failed", "Run exceeded its time limit of 0.005 minutes", [("a", "failed", 1)])


async def test_a_paused_run_resumes_on_the_definition_it_started_with(make_engine, sqlite_url, tmp_path):
    from orch.definition.compile import compile_catalog
    from orch.definition.loader import load_text

    engine = await make_engine(sqlite_url, GATE, executors={"agent": echo_agent})
    paused = await engine.run("gated", "tides")
    changed = GATE.replace('print_content: "{state.review.decision}"', 'print_content: "v2 {state.review.decision}"')
    await engine.add_graph(compile_catalog(load_text(changed, "gated.yaml"))["gated"].graph)
    await engine.resume(paused.run_id, {"decision": "approve"})
    old = await engine.wait(paused.run_id)
    new = await engine.run("gated", "tides")
    await engine.resume(new.run_id, {"decision": "approve"})
    assert ((old.response, (await engine.wait(new.run_id)).response)) == ("approve", "v2 approve")


async def test_an_answer_the_state_cannot_hold_is_rejected_and_the_run_stays_paused(make_engine, sqlite_url):
    graph = GATE.replace("name: Gated\n", "name: Gated\nstate_schema:\n  review: {type: str}\n")
    engine = await make_engine(sqlite_url, graph, executors={"agent": echo_agent})
    paused = await engine.run("gated", "tides")
    with pytest.raises(InvalidAnswer) as bad:
        await engine.resume(paused.run_id, {"decision": "approve"})
    assert bad.value.field_errors == {"response": "step approve: state key 'review' expects str, got dict"}
    assert (await engine.result(paused.run_id)).status == "paused"
