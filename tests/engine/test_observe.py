"""The engine observed through its event hub: listeners see every run's events and never
disturb a run; the run log names each transition, recoveries and endings from outside a driver
included."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from orch.events import Event, RunContinued
from orch.observe.runlog import RunLog
from orch.steps.base import StepResult

GATE = """
id: gate
name: Gate
steps:
  - {id: ask, type: human, human_prompt: "Go on?", human_fields: [{name: ok, type: boolean}], next_step_id: done}
  - {id: done, type: print, print_content: "done", output_key: out}
"""
SLOW = """
id: slow
name: Slow
steps:
  - {id: wait, type: print, print_content: "waited", output_key: out}
"""


def run_events(caplog: pytest.LogCaptureFixture, run_id: str) -> list[tuple[str, str]]:
    """(event, status) of the run's log events, in order."""
    out = []
    for record in caplog.records:
        if record.name == "orch.runs" and isinstance(record.msg, dict) and record.msg.get("run_id") == run_id:
            out.append((record.msg["event"], record.msg["status"]))
    return out


async def test_a_failing_listener_is_logged_and_the_run_goes_on(make_engine, sqlite_url,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    engine = await make_engine(sqlite_url, GATE)
    seen: list[str] = []

    def broken(event: Event) -> None:
        raise RuntimeError("observer bug")

    engine.hub.add_listener(broken)
    engine.hub.add_listener(lambda e: seen.append(type(e).__name__))
    caplog.set_level(logging.ERROR, logger="orch.events")
    result = await engine.run("gate", "x")
    assert result.status == "paused"
    assert seen == ["RunStart", "StepStart", "HumanInputRequired", "Done"]  # every event, after the broken one
    assert caplog.records[0].getMessage().endswith("failed on a RunStart event")
    assert caplog.records[0].exc_info is not None and str(caplog.records[0].exc_info[1]) == "observer bug"


async def test_the_run_log_names_every_transition(make_engine, sqlite_url, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="orch.runs")
    engine = await make_engine(sqlite_url, GATE)
    log = RunLog(engine.store.get_run)
    engine.hub.add_listener(log)
    completed = await engine.run("gate", "x")
    await engine.resume(completed.run_id, {"ok": True})
    assert (await engine.wait(completed.run_id)).status == "completed"
    cancelled = await engine.run("gate", "y")
    await engine.cancel(cancelled.run_id)  # paused: ended from outside a driver, read back from the store
    await log.drain()
    assert run_events(caplog, completed.run_id) == [
        ("run started", "running"), ("run paused", "paused"), ("run resumed", "running"),
        ("run completed", "completed")]
    assert run_events(caplog, cancelled.run_id) == [
        ("run started", "running"), ("run paused", "paused"), ("run cancelled", "cancelled")]
    ended = [r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("event") == "run cancelled"][0]
    assert ended["orchestration"] == "gate" and ended["duration_seconds"] >= 0
    paused = [r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("event") == "run paused"][0]
    assert paused["gate"] == "ask"


async def test_a_run_left_by_a_stopped_engine_is_logged_as_recovered(make_engine, sqlite_url,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="orch.runs")
    started = asyncio.Event()

    async def hang(ctx: Any) -> StepResult:
        started.set()
        await asyncio.Event().wait()
        return StepResult()

    first = await make_engine(sqlite_url, SLOW, executors={"print": hang})
    run_id = await first.start("slow", "x")
    await started.wait()
    await first.close()  # its lease is released: another engine may continue the run at once
    second = await make_engine(sqlite_url, SLOW)
    notices: list[RunContinued] = []
    second.hub.add_listener(RunLog(second.store.get_run))
    second.hub.add_listener(lambda e: notices.append(e) if isinstance(e, RunContinued) else None)
    assert await second.recover() == [run_id]
    assert (await second.wait(run_id)).status == "completed"
    assert [(n.how, n.orchestration_id) for n in notices] == [("recovered", "slow")]
    assert run_events(caplog, run_id) == [("run recovered", "running"), ("run completed", "completed")]
