"""One conformance suite for the store, run against SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from orch.errors import NotPaused
from orch.steps.base import StepResult
from orch.store.sql import Checkpoint, Fenced, SQLStore


def run_row(run_id: str, created: float, status: str = "running", orch: str = "o") -> dict[str, Any]:
    return {"id": run_id, "orchestration_id": orch, "version": "v1", "status": status, "message": "",
            "frontier": b"{}", "created_at": created, "updated_at": created, "epoch": 1, "last_seq": 0}


def step_row(run_id: str, idx: int, writes: bytes = b"{}") -> dict[str, Any]:
    return {"run_id": run_id, "idx": idx, "step_id": f"s{idx}", "step_name": f"s{idx}", "type": "print",
            "status": "completed", "iteration": 1, "turns": 0, "cost_usd": 0.0, "started_at": 1.0,
            "ended_at": 2.0, "output_key": "k", "error": None, "writes": writes}


@pytest.fixture
async def store(db_url: str) -> Any:
    s = SQLStore(db_url)
    await s.open()
    yield s
    await s.close()


async def test_checkpoint_commits_step_run_and_events_together(store: SQLStore) -> None:
    await store.create_run(run_row("r1", 1.0), [(1, b'{"type":"run_start"}')])
    await store.checkpoint(Checkpoint("r1", 1, {"last_seq": 3, "turns": 1, "frontier": b'{"x":1}'},
                                      [step_row("r1", 1, b'{"k":"v"}')], [(2, b"a"), (3, b"b")]))
    run = await store.get_run("r1")
    assert (run["last_seq"], run["turns"], bytes(run["frontier"])) == (3, 1, b'{"x":1}')
    assert [(r["idx"], bytes(r["writes"])) for r in await store.step_records("r1")] == [(1, b'{"k":"v"}')]
    assert await store.events("r1", after=1) == [(2, b"a"), (3, b"b")]


async def test_stale_epoch_is_fenced_and_writes_nothing(store: SQLStore) -> None:
    await store.create_run(run_row("r1", 1.0))
    with pytest.raises(Fenced):
        await store.checkpoint(Checkpoint("r1", 7, {"turns": 9}, [step_row("r1", 1)], [(1, b"x")]))
    assert (await store.get_run("r1"))["turns"] == 0
    assert await store.step_records("r1") == [] and await store.events("r1") == []


async def test_many_concurrent_checkpoints_are_all_durable(store: SQLStore) -> None:
    for i in range(20):
        await store.create_run(run_row(f"r{i}", float(i)))

    async def progress(i: int) -> None:
        for idx in range(1, 11):
            await store.checkpoint(Checkpoint(f"r{i}", 1, {"steps_done": idx}, [step_row(f"r{i}", idx)], [(idx, b"e")]))

    await asyncio.gather(*(progress(i) for i in range(20)))
    assert await store.count("step_records") == 200 and await store.count("events") == 200
    assert {(await store.get_run(f"r{i}"))["steps_done"] for i in range(20)} == {10}


async def test_only_one_claim_of_a_paused_run_wins(store: SQLStore) -> None:
    await store.create_run(run_row("r1", 1.0, status="paused"))
    results = await asyncio.gather(*(store.claim_paused("r1", f"owner{i}", 30) for i in range(50)))
    assert sorted(results, key=lambda r: r is None) == [2] + [None] * 49


async def test_idempotency_key_returns_the_first_run(store: SQLStore) -> None:
    first = await store.create_run(run_row("r1", 1.0), idempotency_key="k")
    second = await store.create_run(run_row("r2", 2.0), idempotency_key="k")
    assert (first, second, await store.get_run("r2")) == ("r1", "r1", None)


async def test_runs_list_newest_first_with_cursor_and_filters(store: SQLStore) -> None:
    for i in range(5):
        await store.create_run(run_row(f"r{i}", float(i), status="completed" if i % 2 else "running",
                                       orch="a" if i < 3 else "b"))
    page = await store.list_runs(limit=2)
    rest = await store.list_runs(limit=10, before=(page[-1]["created_at"], page[-1]["id"]))
    assert [r["id"] for r in page] + [r["id"] for r in rest] == ["r4", "r3", "r2", "r1", "r0"]
    assert [r["id"] for r in await store.list_runs(orchestration_id="a", status="running")] == ["r2", "r0"]


async def test_orphans_with_expired_leases_or_dead_owners_are_claimed_once(store: SQLStore) -> None:
    await store.create_run({**run_row("expired", 1.0), "lease_until": time.time() - 5, "owner": "x"})
    await store.create_run({**run_row("alive", 2.0), "lease_until": time.time() + 60, "owner": "busy"})
    await store.create_run({**run_row("crashed", 3.0), "lease_until": time.time() + 60, "owner": "gone"})
    first = await store.claim_orphans("me", 30, lambda owner: owner == "gone")
    again = await store.claim_orphans("other", 30, lambda owner: owner == "gone")
    assert (sorted(first), again) == ([("crashed", 2), ("expired", 2)], [])


def test_an_owner_is_dead_only_when_its_process_on_this_host_is_gone() -> None:
    import os
    import socket
    import subprocess
    import sys

    from orch.run.engine import owner_is_dead

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


async def test_fifty_concurrent_resumes_one_wins_and_the_next_step_runs_once(make_engine, db_url) -> None:
    count = CountingAgent()
    engine = await make_engine(db_url, GATE_RACE, executors={"agent": count})
    paused = await engine.run("race")
    outcomes = await asyncio.gather(*(engine.resume(paused.run_id, {"decision": "approve"}) for _ in range(50)),
                                    return_exceptions=True)
    winners = [o for o in outcomes if o == paused.run_id]
    losers = [o for o in outcomes if isinstance(o, NotPaused)]
    final = await engine.wait(paused.run_id)
    assert (len(winners), len(losers), count.runs, final.status) == (1, 49, 1, "completed")
    assert [h.step_id for h in final.step_history] == ["gate", "after"]


async def test_text_with_nul_characters_is_stored(make_engine, db_url) -> None:
    engine = await make_engine(db_url, "id: nul\nname: Nul\nsteps:\n  - {id: p, type: print, print_content: '{state.user_input}!', output_key: out}\n")
    result = await engine.run("nul", "a\x00b")
    stored = await engine.result(result.run_id)
    assert (result.status, stored.shared_state["out"], stored.response) == ("completed", "a\x00b!", "a\ufffdb!")


async def test_a_repeated_resume_with_the_same_idempotency_key_is_not_a_conflict(make_engine, db_url) -> None:
    count = CountingAgent()
    engine = await make_engine(db_url, GATE_RACE, executors={"agent": count})
    paused = await engine.run("race")
    outcomes = await asyncio.gather(
        *(engine.resume(paused.run_id, {"decision": "approve"}, idempotency_key="k1") for _ in range(10)),
        return_exceptions=True)
    again = await engine.resume(paused.run_id, {"decision": "approve"}, idempotency_key="k1")
    with pytest.raises(NotPaused):
        await engine.resume(paused.run_id, {"decision": "approve"}, idempotency_key="k2")
    assert (outcomes, again, count.runs, (await engine.wait(paused.run_id)).status) == (
        [paused.run_id] * 10, paused.run_id, 1, "completed")
