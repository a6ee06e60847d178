"""Random interleavings of resume, cancel, a gate's timeout and engine restarts, against the
memory and SQLite stores. Whatever happens: each transition has at most one winner, the final
status follows from who won, the gate's record and its answer in the state agree, and the
run's events are numbered without a gap and end with the run's ending."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from orch.errors import NotPaused, RunNotFound
from orch.events import decode_event
from orch.steps.base import StepContext, StepResult
from tests.conftest import make_store, open_engine

GRAPH = """
id: gate
name: Gate
steps:
  - id: ask
    type: human
    human_prompt: Go on?
    human_fields: [{name: decision, type: text, required: true}]
    human_timeout_seconds: 0.15
    next_step_id: work
  - {id: work, type: agent, agent_id: worker, prompt_template: go, output_key: report}
agents:
  - {id: worker, name: Worker, system_prompt: Work.}
"""

Op = tuple[str, float]  # ("resume" | "cancel" | "wait", delay in seconds)
ops = st.tuples(st.sampled_from(["resume", "cancel", "wait"]), st.floats(0, 0.02))
rounds = st.lists(st.tuples(st.lists(ops, min_size=1, max_size=5), st.booleans()), min_size=1, max_size=3)


async def slow_work(ctx: StepContext) -> StepResult:
    await asyncio.sleep(0.02)
    return StepResult(output="done")


async def play(url: str, tmp: Path, program: list[tuple[list[Op], bool]]) -> None:
    store = make_store(url)
    engine = await open_engine(url, GRAPH, sandbox=tmp / "sandbox", executors={"agent": slow_work}, store=store)
    won = {"resume": 0, "cancel": 0}
    try:
        run_id = (await engine.run("gate")).run_id

        async def one(kind: str, delay: float) -> None:
            await asyncio.sleep(delay)
            try:
                if kind == "resume":
                    assert await engine.resume(run_id, {"decision": "go"}) == run_id
                    won["resume"] += 1
                elif kind == "cancel":
                    assert (await engine.cancel(run_id)).status == "cancelled"
                    won["cancel"] += 1
                else:
                    await asyncio.sleep(0.2)  # long enough for an unanswered gate to time out
            except NotPaused as exc:  # a loser is told the run's real status
                assert f"run '{run_id}' is " in exc.message

        for concurrent, restart in program:
            await asyncio.gather(*(one(kind, delay) for kind, delay in concurrent))
            if restart:
                await engine.close()
                engine = await open_engine(url, GRAPH, sandbox=tmp / "sandbox", executors={"agent": slow_work},
                                           store=make_store(url) if url != "memory" else store)
                await engine.recover()
        result = await engine.wait(run_id)
        if result.status == "paused":  # nothing answered it yet: let its gate time out
            await asyncio.sleep(0.2)
            result = await engine.wait(run_id)
        final = await engine.result(run_id)
        history = {(h.step_id, h.status) for h in final.step_history or []}
        assert won["resume"] <= 1 and won["cancel"] <= 1, won
        expected = {"completed": (1, 0), "cancelled": (won["resume"], 1), "failed": (0, 0)}
        assert final.status in expected and (won["resume"], won["cancel"]) == expected[final.status], (
            final.status, won, history)
        answered = ("ask", "completed") in history
        assert answered == ("human_response" in (final.shared_state or {})), (history, final.shared_state)
        assert answered == (won["resume"] == 1)
        if final.status == "completed":
            assert ("work", "completed") in history and final.shared_state["report"] == "done"
        events = [decode_event(body) for _, body in await engine.store.events(run_id)]
        seqs = [e.seq for e in events]
        assert seqs == sorted(set(seqs)) and type(events[-1]).__name__ == "Done", seqs
        assert events[-1].status == final.status  # type: ignore[attr-defined]
    finally:
        await engine.close()


@pytest.mark.parametrize("url_kind", ["memory", "sqlite"])
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(program=rounds)
def test_random_interleavings_keep_the_lifecycle_consistent(url_kind: str, tmp_path: Path,
                                                           program: list[tuple[list[Op], bool]]) -> None:
    import secrets

    tmp = tmp_path / secrets.token_hex(4)
    tmp.mkdir()
    url = "memory" if url_kind == "memory" else f"sqlite:///{tmp / 'orch.db'}"
    try:
        asyncio.run(asyncio.wait_for(play(url, tmp, program), 30))
    except TimeoutError:
        raise AssertionError(f"the run never settled: {program}") from None


async def test_a_cancel_of_an_unknown_run_is_not_found(tmp_path: Path) -> None:
    engine = await open_engine("memory", GRAPH, sandbox=tmp_path / "sandbox")
    try:
        with pytest.raises(RunNotFound):
            await engine.cancel("run_nope")
    finally:
        await engine.close()



async def test_a_cancel_here_after_another_process_cancelled_the_run_is_refused(tmp_path: Path) -> None:
    async def slow(ctx: StepContext) -> StepResult:
        await asyncio.sleep(0.3)
        return StepResult(output="done")

    url = f"sqlite:///{tmp_path / 'orch.db'}"
    here = await open_engine(url, GRAPH, sandbox=tmp_path / "a", executors={"agent": slow})
    there = await open_engine(url, GRAPH, sandbox=tmp_path / "b")
    try:
        run_id = (await here.run("gate")).run_id
        assert await here.resume(run_id, {"decision": "go"}) == run_id  # `here` drives the slow step
        assert (await there.cancel(run_id)).status == "cancelled"
        with pytest.raises(NotPaused) as refused:
            await here.cancel(run_id)
        assert refused.value.message == f"run '{run_id}' is cancelled; only running or paused runs can be cancelled"
        assert (await here.wait(run_id)).status == "cancelled"
    finally:
        await here.close()
        await there.close()
