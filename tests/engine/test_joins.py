"""Where branches meet before their fan-out's join (SPEC §3.2): a step that several branches can
reach waits for every live branch that may still arrive, and runs once."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from orch.run import scheduler
from orch.steps.base import StepResult


def ran(result: Any) -> Counter[str]:
    return Counter(h.step_id for h in result.step_history)


def order(result: Any) -> list[str]:
    return [h.step_id for h in result.step_history]


CROSSING = """
id: crossing
name: Crossing
state_schema:
  flag: {type: bool, default: true}
  trail: {type: "list[str]", reducer: append}
steps:
  - {id: P, type: parallel, parallel_branches: [r2, a4], next_step_id: j6}
  - {id: r2, type: if_else, if_condition: "state.flag", if_true_step_id: a5, if_false_step_id: a3}
  - {id: a4, type: agent, output_key: trail, next_step_id: a5}
  - {id: a5, type: agent, output_key: trail, next_step_id: j6}
  - {id: a3, type: agent, output_key: trail, next_step_id: j6}
  - {id: j6, type: agent, output_key: trail}
"""


@pytest.mark.parametrize("flag", [True, False])
@pytest.mark.parametrize("slow", ["r2", "a4"])
async def test_a_step_two_branches_reach_runs_once_although_one_branch_can_go_around_it(
        make_engine, sqlite_url, flag, slow):
    async def exe(ctx: Any) -> StepResult:
        if ctx.step.spec.id == slow:
            await asyncio.sleep(0.02)
        return StepResult(output=ctx.step.spec.id)

    engine = await make_engine(sqlite_url, CROSSING, executors={"agent": exe})
    result = await engine.run("crossing", "", {"flag": flag})
    expected = {"P", "r2", "a4", "a5", "j6"} | ({"a3"} if not flag else set())
    assert (result.status, ran(result)) == ("completed", Counter(expected))
    assert order(result)[-1] == "j6"
    assert sorted(result.shared_state["trail"]) == sorted(expected - {"P", "r2"})


async def test_a_crossing_into_a_nested_join_waits_for_that_fan_out_to_finish(make_engine, sqlite_url):
    """The branch of `x` jumps to `jn`, the join of the inner fan-out `n`, whose branches end
    without an edge to it; `jn` still runs once, after them."""
    graph = """
id: nested
name: Nested
state_schema:
  trail: {type: "list[str]", reducer: append}
steps:
  - {id: P, type: parallel, parallel_branches: [x, n], next_step_id: done}
  - {id: x, type: agent, output_key: trail, next_step_id: cross}
  - {id: cross, type: if_else, if_condition: "True", if_true_step_id: jn, if_false_step_id: done}
  - {id: n, type: parallel, parallel_branches: [d1, d2], next_step_id: jn}
  - {id: d1, type: agent, output_key: trail}
  - {id: d2, type: agent, output_key: trail}
  - {id: jn, type: agent, output_key: trail, next_step_id: done}
  - {id: done, type: agent, output_key: trail}
"""

    async def exe(ctx: Any) -> StepResult:
        if ctx.step.spec.id == "d1":
            await asyncio.sleep(0.03)
        return StepResult(output=ctx.step.spec.id)

    engine = await make_engine(sqlite_url, graph, executors={"agent": exe})
    result = await engine.run("nested")
    assert (result.status, ran(result)) == ("completed", Counter(["P", "x", "cross", "n", "d1", "d2", "jn", "done"]))
    assert order(result).index("jn") > order(result).index("d1")


async def test_a_step_waits_for_a_gate_in_a_branch_that_can_reach_it(make_engine, sqlite_url):
    graph = """
id: gated
name: Gated
state_schema:
  trail: {type: "list[str]", reducer: append}
steps:
  - {id: P, type: parallel, parallel_branches: [ask, quick], next_step_id: J}
  - id: ask
    type: human
    human_fields: [{name: ok, type: boolean}]
    next_step_id: check
  - {id: check, type: if_else, if_condition: "state.human_response.ok", if_true_step_id: m, if_false_step_id: J}
  - {id: quick, type: agent, output_key: trail, next_step_id: m}
  - {id: m, type: agent, output_key: trail, next_step_id: J}
  - {id: J, type: agent, output_key: trail}
"""

    async def exe(ctx: Any) -> StepResult:
        return StepResult(output=ctx.step.spec.id)

    engine = await make_engine(sqlite_url, graph, executors={"agent": exe})
    paused = await engine.run("gated")
    assert (paused.status, ran(paused)) == ("paused", Counter(["P", "quick"]))
    await engine.resume(paused.run_id, {"ok": "yes"})
    done = await engine.wait(paused.run_id)
    assert (done.status, order(done)) == ("completed", ["P", "quick", "ask", "check", "m", "J"])
    assert done.shared_state["trail"] == ["quick", "m", "J"]


async def test_an_if_else_diamond_after_a_fan_out_runs_its_meeting_step_at_once(make_engine, sqlite_url):
    """A meeting step no other branch can reach does not wait for unrelated branches."""
    graph = """
id: diamond
name: Diamond
state_schema:
  trail: {type: "list[str]", reducer: append}
steps:
  - {id: P, type: parallel, parallel_branches: [slow, r], next_step_id: J}
  - {id: slow, type: agent, output_key: trail, next_step_id: J}
  - {id: r, type: if_else, if_condition: "True", if_true_step_id: t, if_false_step_id: f}
  - {id: t, type: agent, output_key: trail, next_step_id: m}
  - {id: f, type: agent, output_key: trail, next_step_id: m}
  - {id: m, type: agent, output_key: trail, next_step_id: J}
  - {id: J, type: agent, output_key: trail}
"""
    release = asyncio.Event()

    async def exe(ctx: Any) -> StepResult:
        if ctx.step.spec.id == "slow":
            await release.wait()
        if ctx.step.spec.id == "m":
            release.set()
        return StepResult(output=ctx.step.spec.id)

    engine = await make_engine(sqlite_url, graph, executors={"agent": exe})
    result = await asyncio.wait_for(engine.run("diamond"), 10)
    assert (result.status, order(result)[-1], ran(result)) == (
        "completed", "J", Counter(["P", "slow", "r", "t", "m", "J"]))


async def test_branches_that_run_past_their_own_join_cannot_stall_the_run(make_engine, sqlite_url):
    """`b1` runs past its parallel's join `J` into `W`, which `X` (after `J`) also reaches, and
    `X` is where the outer branch `y` arrives: every step waits on another. When nothing else
    can move, the earliest waiting step goes, so the run ends; `X` and `W` then run once for
    `y` and once after `J` (the graph asks for both)."""
    graph = """
id: tangle
name: Tangle
steps:
  - {id: O, type: parallel, parallel_branches: [p, y], next_step_id: end}
  - {id: p, type: parallel, parallel_branches: [b1], next_step_id: J}
  - {id: b1, type: agent, output_key: o1, next_step_id: W}
  - {id: J, type: agent, output_key: o2, next_step_id: X}
  - {id: y, type: agent, output_key: o3, next_step_id: X}
  - {id: X, type: agent, output_key: o4, next_step_id: W}
  - {id: W, type: agent, output_key: o5, next_step_id: end}
  - {id: end, type: agent, output_key: o6}
"""

    async def exe(ctx: Any) -> StepResult:
        return StepResult(output=ctx.step.spec.id)

    engine = await make_engine(sqlite_url, graph, executors={"agent": exe})
    result = await asyncio.wait_for(engine.run("tangle"), 10)
    assert result.status == "completed"
    assert ran(result) == Counter(["O", "p", "y", "b1", "X", "W", "J", "X", "W", "end"])
    # An unrelated gate waiting elsewhere does not hold the tangle up until it is answered.
    gated = graph.replace("id: tangle", "id: tangle2").replace("parallel_branches: [p, y]", "parallel_branches: [p, y, g]")
    gated += "  - {id: g, type: human, human_fields: [{name: ok, type: boolean}], next_step_id: end}\n"
    from orch.steps import default_executors

    ask = default_executors()["human"]

    async def slow_to_ask(ctx: Any) -> StepResult:  # parks after the tangle has formed
        await asyncio.sleep(0.1)
        return await ask(ctx)

    for human in (ask, slow_to_ask):
        engine = await make_engine(sqlite_url, gated, executors={"agent": exe, "human": human})
        paused = await asyncio.wait_for(engine.run("tangle2"), 10)
        assert (paused.status, ran(paused)) == ("paused", Counter(["O", "p", "y", "b1", "X", "W", "J", "X", "W"]))


def test_waiting_tokens_are_kept_in_the_checkpoint():
    f = scheduler.Frontier()
    f.waiting.append(scheduler.Token(7, "m", (3,)))
    back = scheduler.decode(scheduler.encode(f))
    assert back.waiting == [scheduler.Token(7, "m", (3,))]
    assert scheduler.decode(b'{"tokens": {}, "scopes": {}, "gates": [], "next_id": 4}').waiting == []


@pytest.mark.parametrize("go", [True, False])
async def test_a_router_inside_a_multi_step_branch_takes_the_branch_where_it_routes(make_engine, sqlite_url, go):
    graph = """
id: queued
name: Queued
state_schema:
  go: {type: bool, default: false}
  trail: {type: "list[str]", reducer: append}
steps:
  - {id: P, type: parallel, parallel_branches: [[a, r, b], [c]], next_step_id: J}
  - {id: a, type: agent, output_key: trail}
  - {id: r, type: if_else, if_condition: "state.go", if_true_step_id: x, if_false_step_id: b}
  - {id: b, type: agent, output_key: trail, next_step_id: J}
  - {id: x, type: agent, output_key: trail, next_step_id: J}
  - {id: c, type: agent, output_key: trail, next_step_id: J}
  - {id: J, type: agent, output_key: trail}
"""

    async def exe(ctx: Any) -> StepResult:
        return StepResult(output=ctx.step.spec.id)

    engine = await make_engine(sqlite_url, graph, executors={"agent": exe})
    result = await engine.run("queued", "", {"go": go})
    assert (result.status, ran(result)) == ("completed", Counter(["P", "a", "r", "x" if go else "b", "c", "J"]))


async def test_a_branch_crossing_into_a_multi_step_branch_joins_it_there(make_engine, sqlite_url):
    graph = """
id: into_queue
name: Into queue
state_schema:
  trail: {type: "list[str]", reducer: append}
steps:
  - {id: P, type: parallel, parallel_branches: [[x, y, z], c], next_step_id: J}
  - {id: x, type: agent, output_key: trail}
  - {id: y, type: agent, output_key: trail}
  - {id: z, type: agent, output_key: trail, next_step_id: J}
  - {id: c, type: if_else, if_condition: "True", if_true_step_id: y, if_false_step_id: J}
  - {id: J, type: agent, output_key: trail}
"""

    async def exe(ctx: Any) -> StepResult:
        if ctx.step.spec.id == "x":
            await asyncio.sleep(0.02)
        return StepResult(output=ctx.step.spec.id)

    engine = await make_engine(sqlite_url, graph, executors={"agent": exe})
    result = await engine.run("into_queue")
    assert (result.status, ran(result)) == ("completed", Counter(["P", "x", "y", "z", "c", "J"]))
    assert result.shared_state["trail"] == ["x", "y", "z", "J"]


async def test_a_skipped_fan_out_still_counts_its_branches_in_the_enclosing_fan_out(make_engine, sqlite_url):
    """`f` is exhausted when `g` sends the run back, so the loop guard skips it and its two
    targets start without a fan-out of their own: `J` must still wait for the slow `y`."""
    graph = """
id: skipfan
name: Skip fan
state_schema:
  o: {type: "list[str]", reducer: append}
steps:
  - {id: P, type: parallel, parallel_branches: [x, y], next_step_id: J}
  - {id: x, type: agent, output_key: o, next_step_id: f}
  - {id: f, type: agent, output_key: o, max_iterations: 1, next_step_id: [a, b]}
  - {id: a, type: agent, output_key: o}
  - {id: b, type: agent, output_key: o, next_step_id: g}
  - {id: g, type: if_else, if_condition: "True", if_true_step_id: f, if_false_step_id: J, max_iterations: 1, next_step_id: J}
  - {id: y, type: agent, output_key: o}
  - {id: J, type: agent, output_key: o}
"""

    async def exe(ctx: Any) -> StepResult:
        if ctx.step.spec.id == "y":
            await asyncio.sleep(0.05)
        return StepResult(output=ctx.step.spec.id)

    engine = await make_engine(sqlite_url, graph, executors={"agent": exe})
    result = await engine.run("skipfan")
    steps = order(result)
    assert result.status == "completed" and steps[-1] == "J" and steps.count("J") == 1
    assert steps.index("J") > steps.index("y")


@pytest.mark.parametrize("go", [True, False])
async def test_a_way_into_the_middle_of_a_multi_step_branch_goes_on_down_the_list(make_engine, sqlite_url, go):
    graph = """
id: midlist
name: Mid list
state_schema:
  go: {type: bool, default: false}
  trail: {type: "list[str]", reducer: append}
steps:
  - {id: P, type: parallel, parallel_branches: [[r, m, b], c], next_step_id: J}
  - {id: r, type: if_else, if_condition: "state.go", if_true_step_id: J, if_false_step_id: m}
  - {id: m, type: agent, output_key: trail}
  - {id: b, type: agent, output_key: trail, next_step_id: J}
  - {id: c, type: agent, output_key: trail, next_step_id: m}
  - {id: J, type: agent, output_key: trail}
"""

    async def exe(ctx: Any) -> StepResult:
        return StepResult(output=ctx.step.spec.id)

    engine = await make_engine(sqlite_url, graph, executors={"agent": exe})
    result = await engine.run("midlist", "", {"go": go})
    assert (result.status, ran(result)) == ("completed", Counter(["P", "r", "c", "m", "b", "J"]))
    assert result.shared_state["trail"][-3:] == ["m", "b", "J"]


async def test_a_gate_reached_again_while_it_waits_asks_once(make_engine, sqlite_url):
    """A fan-out inside a loop reaches the human step `h` each time round while its first
    question is still open: the arrivals wait for that one answer, and the run goes on once."""
    from orch.events import decode_event

    graph = """
id: regate
name: Regate
state_schema:
  o: {type: "list[str]", reducer: append}
steps:
  - {id: a, type: agent, output_key: o, next_step_id: [h, r], max_iterations: 3}
  - {id: h, type: human, human_fields: [{name: ok, type: boolean}], next_step_id: done, max_iterations: 3}
  - {id: r, type: if_else, if_condition: "True", if_true_step_id: a, if_false_step_id: done, max_iterations: 2}
  - {id: done, type: agent, output_key: o}
"""

    async def exe(ctx: Any) -> StepResult:
        return StepResult(output=ctx.step.spec.id)

    engine = await make_engine(sqlite_url, graph, executors={"agent": exe})
    paused = await engine.run("regate")
    assert (paused.status, paused.human_input_required.step_id) == ("paused", "h")
    assert Counter((h.step_id, h.status) for h in paused.step_history) == Counter(
        {("a", "completed"): 3, ("r", "completed"): 2, ("r", "skipped"): 1})
    await engine.resume(paused.run_id, {"ok": "yes"})
    done = await engine.wait(paused.run_id)
    assert (done.status, ran(done)["h"], ran(done)["done"], done.shared_state["o"]) == (
        "completed", 1, 1, ["a", "a", "a", "done"])
    events = [decode_event(b) for _, b in await engine.store.events(done.run_id)]
    assert [type(e).__name__ for e in events].count("HumanInputRequired") == 1
