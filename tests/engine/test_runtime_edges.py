"""Edge cases of scheduling and failure that once went wrong: each test pins the behaviour."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from orch.steps.base import StepResult


def brief(result: Any) -> list[tuple[str, str]]:
    return [(h.step_id, h.status) for h in result.step_history]


async def test_a_failing_branch_fails_the_run_even_when_a_sibling_finishes_with_it(make_engine, sqlite_url):
    graph = """
id: sb
name: Sb
steps:
  - {id: P, type: parallel, parallel_branches: [[bad], [good]], next_step_id: J}
  - {id: bad, type: agent, output_key: a, next_step_id: J}
  - {id: good, type: agent, output_key: b, next_step_id: J}
  - {id: J, type: print, print_content: joined, output_key: final}
"""

    async def exe(ctx: Any) -> StepResult:
        await asyncio.sleep(0.01)
        if ctx.step.spec.id == "bad":
            raise RuntimeError("boom")
        return StepResult(output="ok")

    engine = await make_engine(sqlite_url, graph, executors={"agent": exe})
    statuses = {(await engine.run("sb")).status for _ in range(15)}
    assert statuses == {"failed"}


async def test_a_branch_jumping_to_the_outer_join_still_waits_for_its_inner_siblings(make_engine, sqlite_url):
    graph = """
id: esc
name: Esc
state_schema:
  go_out: {type: bool, default: true}
steps:
  - {id: P, type: parallel, parallel_branches: [[a], [b]], next_step_id: J}
  - {id: a, type: print, print_content: a, output_key: a_out, next_step_id: Q}
  - {id: Q, type: parallel, parallel_branches: [[c], [d]], next_step_id: K}
  - {id: c, type: if_else, if_condition: "state.go_out", if_true_step_id: J, if_false_step_id: K}
  - {id: d, type: agent, output_key: d_out, next_step_id: K}
  - {id: K, type: agent, output_key: k_out, next_step_id: J}
  - {id: b, type: agent, output_key: b_out, next_step_id: J}
  - {id: J, type: print, print_content: joined, output_key: final}
"""

    async def slow(ctx: Any) -> StepResult:
        await asyncio.sleep({"d": 0.02, "b": 0.04, "K": 0.08}.get(ctx.step.spec.id, 0))
        return StepResult(output=ctx.step.spec.id)

    engine = await make_engine(sqlite_url, graph, executors={"agent": slow})
    result = await engine.run("esc")
    order = [h.step_id for h in result.step_history]
    assert (result.status, order.count("J"), order[-1], order.index("K") < order.index("J")) == (
        "completed", 1, "J", True)


async def test_a_list_fanout_joins_once_even_when_a_branch_may_end_early(make_engine, sqlite_url):
    graph = """
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

    async def note(ctx: Any) -> StepResult:
        await asyncio.sleep(0.02 if ctx.step.spec.id == "r2" else 0)
        return StepResult(output=ctx.step.spec.id)

    engine = await make_engine(sqlite_url, graph, executors={"agent": note})
    assert engine.graphs["fan"].steps["start"].fanout.join == "join"
    result = await engine.run("fan")
    assert [h.step_id for h in result.step_history].count("join") == 1
    assert result.shared_state["merged"] == [{"source": "left", "data": ["left", "r2"]}]


async def test_exhausted_steps_that_point_at_each_other_end_the_branch(make_engine, sqlite_url):
    graph = """
id: pingpong
name: Ping pong
steps:
  - {id: a, type: print, print_content: a, output_key: x, next_step_id: b}
  - {id: b, type: print, print_content: b, output_key: y, next_step_id: a}
"""
    engine = await make_engine(sqlite_url, graph)
    result = await asyncio.wait_for(engine.run("pingpong"), 10)
    assert (result.status, brief(result)) == ("completed", [
        ("a", "completed"), ("b", "completed"), ("a", "completed"), ("b", "completed"), ("a", "completed"),
        ("b", "completed"), ("a", "skipped"), ("b", "skipped")])


async def test_loop_body_spend_and_turns_are_recorded_when_the_loop_fails(make_engine, sqlite_url):
    graph = """
id: lc
name: Lc
max_total_turns: 50
steps:
  - {id: L, type: loop, loop_count: 3, loop_step_ids: [w]}
  - {id: w, type: agent, output_key: x}
"""
    calls = 0

    async def spend(ctx: Any) -> StepResult:
        nonlocal calls
        calls += 1
        ctx.add_cost(0.25)
        if calls == 3:
            raise RuntimeError("boom")
        return StepResult(output="ok", turns=1)

    engine = await make_engine(sqlite_url, graph, executors={"agent": spend})
    result = await engine.run("lc")
    assert (result.status, brief(result), result.total_cost_usd, sum(h.cost_usd for h in result.step_history)) == (
        "failed", [("w", "completed"), ("w", "completed"), ("w", "failed"), ("L", "failed")], 0.75, 0.75)
    stored = await engine.store.step_records(result.run_id)
    assert sum(r.cost_usd for r in stored) == 0.75


async def test_loop_body_executions_count_against_the_turn_limit(make_engine, sqlite_url):
    graph = """
id: lt
name: Lt
max_total_turns: 3
steps:
  - {id: L, type: loop, loop_count: 50, loop_step_ids: [w]}
  - {id: w, type: print, print_content: x, output_key: x}
"""
    engine = await make_engine(sqlite_url, graph)
    result = await engine.run("lt")
    assert (result.status, result.response) == ("failed", "Global turn limit (3) exceeded")


async def test_a_concurrent_loop_reports_the_real_error(make_engine, sqlite_url):
    from orch.errors import ProviderError

    graph = """
id: lg
name: Lg
state_schema:
  items: {type: list, default: [1, 2, 3]}
steps:
  - {id: L, type: loop, loop_over: items, max_concurrency: 3, loop_step_ids: [w]}
  - {id: w, type: agent, output_key: x}
"""

    async def overloaded(ctx: Any) -> StepResult:
        raise ProviderError("model overloaded", provider="fake", model="m", status=529)

    engine = await make_engine(sqlite_url, graph, executors={"agent": overloaded})
    result = await engine.run("lg")
    assert (result.status, result.response) == ("failed", "fake m (HTTP 529): model overloaded")


async def test_a_sub_orchestration_in_a_loop_runs_a_new_child_each_pass(make_engine, sqlite_url):
    parent = """
id: parent
name: Parent
state_schema:
  round: {type: int, default: 0, reducer: add}
steps:
  - {id: L, type: loop, loop_count: 1, loop_step_ids: [sub], output_key: results, next_step_id: bump, max_iterations: 5}
  - {id: sub, type: agent, agent_id: kid, prompt_template: "round {state.round}", output_key: said}
  - {id: bump, type: transform, transform_code: "result = 1", output_key: round, next_step_id: again, max_iterations: 5}
  - {id: again, type: if_else, if_condition: "state.round < 2", if_true_step_id: L, if_false_step_id: fin, max_iterations: 5}
  - {id: fin, type: print, print_content: "{state.results}", output_key: final}
agents:
  - {id: kid, name: Kid, type: orchestrator, orchestration_id: child}
"""
    child = "id: child\nname: Child\nsteps:\n  - {id: echo, type: print, print_content: 'child got {state.user_input}', output_key: out}\n"
    engine = await make_engine(sqlite_url, parent, child)
    result = await engine.run("parent")
    assert (result.status, result.shared_state["results"]) == ("completed", {"sub": ["child got round 1"]})
    assert len(await engine.store.list_runs(orchestration_id="child")) == 2


async def test_an_output_that_cannot_be_stored_fails_its_step(make_engine, sqlite_url):
    graph = "id: t\nname: T\nsteps:\n  - {id: t, type: agent, output_key: x}\n"

    async def weird(ctx: Any) -> StepResult:
        return StepResult(output=complex(1, 2))

    engine = await make_engine(sqlite_url, graph, executors={"agent": weird})
    result = await engine.run("t")
    assert (result.status, result.response) == (
        "failed", "step t: its output cannot be stored as JSON (Encoding objects of type complex is unsupported)")


async def test_a_gate_timer_of_another_engine_does_not_fail_a_run_answered_in_time(make_engine, sqlite_url, tmp_path):
    graph = """
id: g
name: G
steps:
  - {id: ask, type: human, human_timeout_seconds: 1.0, next_step_id: work}
  - {id: work, type: agent, output_key: done}
"""

    async def slow(ctx: Any) -> StepResult:
        await asyncio.sleep(1.5)  # outlasts the gate's timeout, which engine a still has armed
        return StepResult(output="done")

    a = await make_engine(sqlite_url, graph, executors={"agent": slow})
    b = await make_engine(sqlite_url, graph, executors={"agent": slow})
    paused = await a.run("g")
    await b.resume(paused.run_id, "ok")
    done = await b.wait(paused.run_id)
    assert (done.status, done.response) == ("completed", "done")


def _wide(n: int) -> str:
    return (f"""
id: wide
name: Wide
state_schema:
  out: {{type: list, reducer: append}}
steps:
  - {{id: P, type: parallel, parallel_branches: [{', '.join(f'b{i}' for i in range(n))}], next_step_id: J}}
""" + "".join(f"  - {{id: b{i}, type: agent, output_key: out, next_step_id: J}}\n" for i in range(n))
            + "  - {id: J, type: agent, output_key: out}\n")


async def _hang_and_watch(engine: Any) -> tuple[str, list[int], list[int]]:
    """Start the run with every branch hanging; the seqs seen live and those committed."""
    run_id = await engine.start("wide")
    seen: list[int] = []
    with engine.hub.subscribe(run_id) as sub:
        while True:
            try:
                event = await sub.get(timeout=0.1)
            except TimeoutError:
                break
            assert event is not None
            seen.append(event.seq)
    return run_id, seen, [s for s, _ in await engine.store.events(run_id)]


async def _hang(ctx: Any) -> StepResult:
    await asyncio.Event().wait()
    return StepResult(output="never")


async def _quick(ctx: Any) -> StepResult:
    return StepResult(output=ctx.step.spec.id)


async def test_event_numbers_streamed_live_are_never_given_to_other_events_after_recovery(make_engine, sqlite_url):
    """Events reach subscribers before their step's checkpoint commits them. A run recovered
    elsewhere numbers its events beyond any it can have streamed, so no number a subscriber
    saw is reused for another event."""
    from orch.events import decode_event

    first = await make_engine(sqlite_url, _wide(3), executors={"agent": _hang})
    run_id, seen, committed = await _hang_and_watch(first)
    assert max(seen) > max(committed)  # the three step starts were streamed, not yet stored
    await first.close()
    second = await make_engine(sqlite_url, _wide(3), executors={"agent": _quick})
    assert await second.recover() == [run_id]
    done = await second.wait(run_id)
    events = [decode_event(b) for _, b in await second.store.events(run_id)]
    seqs = [e.seq for e in events]
    assert done.status == "completed" and seqs == sorted(set(seqs))
    assert [e.seq for e in events if e.seq > max(committed)][0] > max(seen)


async def test_a_long_stretch_of_live_events_is_committed_without_waiting_for_a_step(
        make_engine, sqlite_url, monkeypatch):
    from orch.run import driver as runner

    monkeypatch.setattr(runner, "LIVE_EVENTS", 5)
    engine = await make_engine(sqlite_url, _wide(8), executors={"agent": _hang})
    run_id, seen, committed = await _hang_and_watch(engine)
    # Run start, P's start and end, eight step starts: all stored while the steps still run.
    assert (committed, seen) == (list(range(1, 12)), list(range(2, 12)))


def test_finished_results_kept_for_wait_are_bounded_by_the_steps_they_hold():
    from orch.run.results import HistoryRow, ResultCache, RunResult, history_entry

    def result(run_id: str, steps: int) -> RunResult:
        row = HistoryRow("a", "a", "agent", "completed", 1, 0.0, 0.0, 0.0, None, 1, None)
        return RunResult(status="completed", run_id=run_id, step_history=[history_entry(row)] * steps)

    cache = ResultCache(max_steps=100)
    for i in range(5):
        cache.put(f"r{i}", result(f"r{i}", 30))  # 31 each with the run itself: three fit
    assert (len(cache), cache.take("r0"), cache.take("r1")) == (3, None, None)
    assert cache.take("r4").run_id == "r4" and cache.take("r4") is None  # handed over once
    cache.put("huge", result("huge", 500))  # too big alone is still kept, alone
    assert len(cache) == 1 and cache.take("huge") is not None


async def test_wait_hands_over_a_finished_result_and_later_reads_the_store(make_engine, sqlite_url):
    engine = await make_engine(sqlite_url, _wide(2), executors={"agent": _quick})
    run_id = await engine.start("wide")
    first = await engine.wait(run_id)
    assert len(engine._results) == 0  # nothing of it left in memory
    again = await engine.wait(run_id)
    assert (first.status, again.status, again.step_history) == ("completed", "completed", first.step_history)
    assert again.shared_state == first.shared_state


async def test_an_idempotency_key_matches_the_request_as_sent(make_engine, sqlite_url):
    from orch.errors import IdempotencyConflict

    engine = await make_engine(sqlite_url, _wide(2), executors={"agent": _quick})
    first = await engine.start("wide", "text with a \x00 in it", {"out": ["seed"]}, idempotency_key="k1")
    again = await engine.start("wide", "text with a \x00 in it", {"out": ["seed"]}, idempotency_key="k1")
    assert again == first  # stored text replaces NUL, yet the retry is recognised
    for message, state in (("other text", {"out": ["seed"]}), ("text with a \x00 in it", {"out": ["other"]})):
        with pytest.raises(IdempotencyConflict):
            await engine.start("wide", message, state, idempotency_key="k1")
    await engine.wait(first)


async def test_a_run_ended_from_another_engine_numbers_its_last_events_past_what_was_streamed(
        make_engine, sqlite_url):
    from orch.events import decode_event

    first = await make_engine(sqlite_url, _wide(3), executors={"agent": _hang})
    run_id, seen, committed = await _hang_and_watch(first)
    assert max(seen) > max(committed)
    await first.close()
    other = await make_engine(sqlite_url, _wide(3), executors={"agent": _quick})
    assert (await other.cancel(run_id)).status == "cancelled"
    closing = [decode_event(b) for s, b in await other.store.events(run_id, after=max(seen))]
    assert [type(e).__name__ for e in closing] == ["OrchestrationError", "Done"]
