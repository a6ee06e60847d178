"""One conformance suite for the store (engine.store.base.RunStore), run against every
implementation: memory, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
import pytest

from orch.errors import EngineError, NotPaused, RunFenced
from orch.events import Done, OrchestrationError, decode_event
from orch.run.model import Checkpoint, Gate, Run, RunEnding, RunStatus, StepRecord
from orch.steps.base import StepResult
from tests.conftest import make_store


def new_run(run_id: str, created: float, status: RunStatus = RunStatus.RUNNING, orch: str = "o", **kw: Any) -> Run:
    return Run(id=run_id, orchestration_id=orch, version="v1", status=status, frontier=b"{}", created_at=created,
               updated_at=created, epoch=1, **kw)


def record(run_id: str, idx: int, writes: bytes = b"{}", error: str | None = None) -> StepRecord:
    return StepRecord(run_id=run_id, idx=idx, step_id=f"s{idx}", step_name=f"s{idx}", type="print",
                      status="completed", iteration=1, turns=0, cost_usd=0.0, started_at=1.0, ended_at=2.0,
                      output_key="k", error=error, writes=writes)


def progress(run_id: str, epoch: int, seq: int, steps: list[StepRecord] = [], events: list[tuple[int, bytes]] = [],
             **kw: Any) -> Checkpoint:
    return Checkpoint(run_id=run_id, epoch=epoch, frontier=b'{"x":1}', cost_usd=0.5, turns=len(steps),
                      steps_done=len(steps), last_seq=seq, updated_at=5.0, active_seconds=1.5, steps=steps,
                      events=events, **kw)


@pytest.fixture
async def store(store_url: str) -> Any:
    s = make_store(store_url)
    await s.open()
    yield s
    await s.close()


async def test_a_new_run_reads_back_as_created(store: Any) -> None:
    run = new_run("r1", 1.0, message="hi", owner="me", lease_until=9.0, parent_run_id="p", depth=1)
    await store.create_run(run, [record("r1", 1)], [(1, b'{"type":"run_start"}')])
    assert await store.get_run("r1") == run
    assert await store.step_records("r1") == [record("r1", 1)]
    assert await store.events("r1") == [(1, b'{"type":"run_start"}')]


async def test_checkpoint_commits_step_run_and_events_together(store: Any) -> None:
    await store.create_run(new_run("r1", 1.0), [], [(1, b'{"type":"run_start"}')])
    await store.checkpoint(progress("r1", 1, 3, [record("r1", 1, b'{"k":"v"}')], [(2, b"a"), (3, b"b")]))
    run = await store.get_run("r1")
    assert (run.last_seq, run.turns, run.frontier, run.cost_usd, run.active_seconds, run.status) == (
        3, 1, b'{"x":1}', 0.5, 1.5, RunStatus.RUNNING)
    assert [(r.idx, r.writes) for r in await store.step_records("r1")] == [(1, b'{"k":"v"}')]
    assert await store.events("r1", after=1) == [(2, b"a"), (3, b"b")]


async def test_a_checkpoint_sets_status_state_gates_and_ending_columns(store: Any) -> None:
    await store.create_run(new_run("r1", 1.0), [], [])
    gate = Gate(step_id="g", prompt="ok?", fields=[{"name": "d"}], agent_context="", deadline=99.0,
                started_at=4.0, iteration=1, child_run_id=None)
    await store.checkpoint(progress("r1", 1, 0, status=RunStatus.PAUSED, state=b'{"a":[1,"x"]}',
                                    gates={"g": gate}, gate_deadline=99.0))
    paused = await store.get_run("r1")
    assert (paused.status, paused.state, paused.gates, paused.gate_deadline) == (
        RunStatus.PAUSED, {"a": [1, "x"]}, {"g": gate}, 99.0)
    assert paused.next_gate() == gate
    await store.checkpoint(progress("r1", 1, 0, status=RunStatus.COMPLETED, gates={}, response="done\x00!",
                                    finished_at=7.0))
    done = await store.get_run("r1")
    assert (done.status, done.gates, done.response, done.finished_at, done.state) == (
        RunStatus.COMPLETED, {}, "done\ufffd!", 7.0, {"a": [1, "x"]})


async def test_stale_epoch_is_fenced_and_writes_nothing(store: Any) -> None:
    await store.create_run(new_run("r1", 1.0), [], [])
    with pytest.raises(RunFenced) as raised:
        await store.checkpoint(progress("r1", 7, 1, [record("r1", 1)], [(1, b"x")], status=RunStatus.FAILED))
    assert isinstance(raised.value, EngineError) and raised.value.code == "fenced"
    run = await store.get_run("r1")
    assert (run.turns, run.status, await store.step_records("r1"), await store.events("r1")) == (
        0, RunStatus.RUNNING, [], [])


async def test_many_concurrent_checkpoints_are_all_durable(store: Any) -> None:
    for i in range(20):
        await store.create_run(new_run(f"r{i}", float(i)), [], [])

    async def advance(i: int) -> None:
        for idx in range(1, 11):
            await store.checkpoint(progress(f"r{i}", 1, idx, [record(f"r{i}", idx)], [(idx, b"e")]))

    await asyncio.gather(*(advance(i) for i in range(20)))
    assert (await store.count("step_records"), await store.count("events"), await store.count("runs")) == (200, 200, 20)
    assert {(await store.get_run(f"r{i}")).last_seq for i in range(20)} == {10}


async def test_only_one_claim_of_a_paused_run_wins_and_bumps_the_epoch(store: Any) -> None:
    await store.create_run(new_run("r1", 1.0, status=RunStatus.PAUSED), [], [])
    results = await asyncio.gather(*(store.claim_paused("r1", f"owner{i}", 30, [f"key{i}"]) for i in range(50)))
    winner = next(i for i, r in enumerate(results) if r is not None)
    run = await store.get_run("r1")
    assert (sorted(results, key=lambda r: r is None), run.status, run.owner) == (
        [2] + [None] * 49, RunStatus.RUNNING, f"owner{winner}")
    assert await store.idempotent_runs([f"key{i}" for i in range(50)]) == {f"key{winner}": "r1"}


async def test_only_one_ending_of_a_live_run_wins_and_fences_its_driver(store: Any) -> None:
    await store.create_run(new_run("r1", 1.0, last_seq=4), [], [])

    def ending() -> RunEnding:
        return RunEnding(status=RunStatus.CANCELLED, message="Run cancelled",
                         expect=frozenset({RunStatus.RUNNING, RunStatus.PAUSED}), live_gap=10,
                         events=[OrchestrationError(error="Run cancelled"), Done(status="cancelled")])

    results = await asyncio.gather(*(store.end_run("r1", ending()) for _ in range(20)))
    run = await store.get_run("r1")
    assert (results.count(True), run.status, run.error, run.epoch, run.last_seq, run.state) == (
        1, RunStatus.CANCELLED, "Run cancelled", 2, 16, None)
    assert [(s, type(decode_event(b)).__name__) for s, b in await store.events("r1")] == [
        (15, "OrchestrationError"), (16, "Done")]
    with pytest.raises(RunFenced):
        await store.checkpoint(progress("r1", 1, 5))


async def test_a_gate_timeout_ends_only_a_paused_run_past_its_deadline(store: Any) -> None:
    await store.create_run(new_run("early", 1.0, status=RunStatus.PAUSED, gate_deadline=time.time() + 60), [], [])
    await store.create_run(new_run("late", 2.0, status=RunStatus.PAUSED, gate_deadline=time.time() - 1), [], [])
    timeout = RunEnding(status=RunStatus.FAILED, message="timed out", expect=frozenset({RunStatus.PAUSED}),
                        deadline_passed=True)
    assert [await store.end_run(r, timeout) for r in ("early", "late", "late")] == [False, True, False]


async def test_idempotency_key_returns_the_first_run(store: Any) -> None:
    first = await store.create_run(new_run("r1", 1.0), [], [], idempotency_key="k")
    second = await store.create_run(new_run("r2", 2.0), [], [], idempotency_key="k")
    assert (first, second, await store.get_run("r2"), await store.idempotent_runs(["k", "x"])) == (
        "r1", "r1", None, {"k": "r1"})


async def test_runs_list_newest_first_with_cursor_and_filters(store: Any) -> None:
    for i in range(5):
        await store.create_run(new_run(f"r{i}", float(i), status=RunStatus.COMPLETED if i % 2 else RunStatus.RUNNING,
                                       orch="a" if i < 3 else "b"), [], [])
    page = await store.list_runs(limit=2)
    rest = await store.list_runs(limit=10, before=(page[-1].created_at, page[-1].id))
    assert [r.id for r in page] + [r.id for r in rest] == ["r4", "r3", "r2", "r1", "r0"]
    assert [r.id for r in await store.list_runs(orchestration_id="a", status="running")] == ["r2", "r0"]
    assert [r.id for r in await store.runs_with_status(RunStatus.COMPLETED)] in (["r1", "r3"], ["r3", "r1"])


async def test_orphans_with_expired_leases_or_dead_owners_are_claimed_once(store: Any) -> None:
    await store.create_run(new_run("expired", 1.0, lease_until=time.time() - 5, owner="x"), [], [])
    await store.create_run(new_run("alive", 2.0, lease_until=time.time() + 60, owner="busy"), [], [])
    await store.create_run(new_run("crashed", 3.0, lease_until=time.time() + 60, owner="gone"), [], [])
    first = await store.claim_orphans("me", 30, lambda owner: owner == "gone")
    again = await store.claim_orphans("other", 30, lambda owner: owner == "gone")
    assert (sorted(first), again) == ([("crashed", 2), ("expired", 2)], [])


async def test_released_leases_are_claimed_at_once_and_renewed_ones_are_not(store: Any) -> None:
    for rid in ("a", "b"):
        await store.create_run(new_run(rid, 1.0, lease_until=time.time() + 1, owner="old"), [], [])
    await store.renew_leases("old", ["a"], 60)
    await store.release_leases("old")
    assert sorted(await store.claim_orphans("new", 30)) == [("a", 2), ("b", 2)]
    await store.renew_leases("old", ["a"], 60)  # no longer its owner: changes nothing
    assert (await store.get_run("a")).owner == "new"


async def test_definitions_and_api_keys(store: Any) -> None:
    await store.save_definition("v1", "o", '{"a":1}')
    await store.save_definition("v1", "o", '{"a":2}')  # a version's body never changes
    await store.add_api_key("k1", "ci", "hash1")
    assert (await store.get_definition("v1"), await store.get_definition("v2"), await store.api_key_hashes()) == (
        '{"a":1}', None, ["hash1"])


async def test_api_keys_are_listed_without_hashes_and_revoked_by_id(store: Any) -> None:
    await store.add_api_key("k2", "ci", "hash2")
    await store.add_api_key("k1", "ops", "hash1")
    listed = await store.api_keys()
    assert [(k.id, k.name) for k in listed] == [("k2", "ci"), ("k1", "ops")]
    assert all(abs(k.created_at - time.time()) < 60 for k in listed)
    assert (await store.revoke_api_key("k2"), await store.revoke_api_key("k2")) == (True, False)
    assert ([k.id for k in await store.api_keys()], await store.api_key_hashes()) == (["k1"], ["hash1"])


async def test_runs_are_counted_by_status_and_found_by_prefix(store: Any) -> None:
    for run_id, status in [("run_a_1", RunStatus.RUNNING), ("run_a_2", RunStatus.PAUSED),
                           ("run_b_1", RunStatus.PAUSED), ("run%_1", RunStatus.COMPLETED)]:
        await store.create_run(new_run(run_id, 1.0, status), [], [])
    assert await store.run_counts() == {"running": 1, "paused": 2, "completed": 1}
    assert await store.run_ids_with_prefix("run_a") == ["run_a_1", "run_a_2"]
    assert await store.run_ids_with_prefix("run_", limit=5) == ["run_a_1", "run_a_2", "run_b_1"]
    assert await store.run_ids_with_prefix("run%") == ["run%_1"]  # taken literally, not as a pattern
    assert await store.run_ids_with_prefix("run_b_1") == ["run_b_1"]
    assert await store.run_ids_with_prefix("nope") == []


def test_an_owner_is_dead_only_when_its_process_on_this_host_is_gone() -> None:
    import os
    import socket
    import subprocess
    import sys

    from orch.run.ownership import owner_is_dead

    exited = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = socket.gethostname()
    assert [owner_is_dead(o) for o in (f"{host}:{os.getpid()}:a", f"{host}:{exited.stdout.strip()}:b",
                                       f"elsewhere:{exited.stdout.strip()}:c")] == [False, True, False]


GATE_RACE = """
id: race
name: Race
steps:
  - id: gate
    type: human
    human_fields: [{name: decision, type: select, options: [approve, reject]}]
    next_step_id: after
  - {id: after, type: agent, output_key: done}
"""


class CountingAgent:
    """An agent executor that counts how often it ran."""

    def __init__(self) -> None:
        self.runs = 0

    async def __call__(self, ctx: Any) -> StepResult:
        self.runs += 1
        return StepResult(output="done")


async def test_fifty_concurrent_resumes_one_wins_and_the_next_step_runs_once(make_engine, store_url) -> None:
    count = CountingAgent()
    engine = await make_engine(store_url, GATE_RACE, executors={"agent": count})
    paused = await engine.run("race")
    outcomes = await asyncio.gather(*(engine.resume(paused.run_id, {"decision": "approve"}) for _ in range(50)),
                                    return_exceptions=True)
    winners = [o for o in outcomes if o == paused.run_id]
    losers = [o for o in outcomes if isinstance(o, NotPaused)]
    final = await engine.wait(paused.run_id)
    assert (len(winners), len(losers), count.runs, final.status) == (1, 49, 1, "completed")
    assert [h.step_id for h in final.step_history] == ["gate", "after"]


async def test_text_with_nul_characters_is_stored(make_engine, store_url) -> None:
    engine = await make_engine(store_url, "id: nul\nname: Nul\nsteps:\n  - {id: p, type: print, print_content: '{state.user_input}!', output_key: out}\n")
    result = await engine.run("nul", "a\x00b")
    stored = await engine.result(result.run_id)
    assert (result.status, stored.shared_state["out"], stored.response) == ("completed", "a\x00b!", "a\ufffdb!")


async def test_a_repeated_resume_with_the_same_idempotency_key_is_not_a_conflict(make_engine, store_url) -> None:
    count = CountingAgent()
    engine = await make_engine(store_url, GATE_RACE, executors={"agent": count})
    paused = await engine.run("race")
    outcomes = await asyncio.gather(
        *(engine.resume(paused.run_id, {"decision": "approve"}, idempotency_key="k1") for _ in range(10)),
        return_exceptions=True)
    again = await engine.resume(paused.run_id, {"decision": "approve"}, idempotency_key="k1")
    with pytest.raises(NotPaused):
        await engine.resume(paused.run_id, {"decision": "approve"}, idempotency_key="k2")
    assert (outcomes, again, count.runs, (await engine.wait(paused.run_id)).status) == (
        [paused.run_id] * 10, paused.run_id, 1, "completed")
