"""Resumes and cancels racing at a paused gate, over HTTP, on one server (SQLite, PostgreSQL) and
across two servers on one PostgreSQL database. Whatever the interleaving: no 500, exactly one
winner per transition, every response tells the run's real status, and the history and the
state agree."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from orch.settings import Settings
from tests.conftest import pg_schema_url
from tests.server.conftest import AUTH, LiveServer
from tests.server.flows import slowed

GRAPH = """
id: gate-race
name: Gate race
steps:
  - id: ask
    type: human
    human_prompt: Go on?
    human_fields: [{name: decision, type: select, options: [approve, reject], required: true}]
    next_step_id: work
  - {id: work, type: agent, agent_id: worker, prompt_template: "{state.user_input}", output_key: report}
agents:
  - {id: worker, name: Worker, system_prompt: Work.}
"""
TRIALS = 30


def start_servers(tmp: Path, url: str, count: int) -> list[LiveServer]:
    (tmp / "graphs").mkdir(exist_ok=True)
    (tmp / "graphs" / "race.yaml").write_text(GRAPH)
    servers = []
    for i in range(count):
        settings = Settings(database_url=url, graphs_dir=str(tmp / "graphs"), sandbox_root=str(tmp / f"sandbox{i}"))
        servers.append(LiveServer(settings, executors=slowed(0.05)).start())
    return servers


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres),
                        pytest.param("two-servers", marks=pytest.mark.postgres)])
def servers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[LiveServer]]:
    drop = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'orch.db'}"
    else:
        url, drop = pg_schema_url()
    started = start_servers(tmp_path, url, 2 if request.param == "two-servers" else 1)
    try:
        yield started
    finally:
        for server in started:
            server.stop()
        if drop is not None:
            drop()


async def paused_run(http: httpx.AsyncClient, server: LiveServer) -> str:
    reply = await http.post(f"{server.url}/api/v1/orchestrations/gate-race/run", json={"message": "m"})
    assert reply.json()["status"] == "paused", reply.text
    return str(reply.json()["run_id"])


async def after(delay_ms: float, request: Any) -> httpx.Response:
    await asyncio.sleep(delay_ms / 1000)
    return await request  # type: ignore[no-any-return]


def check_agrees(detail: dict[str, Any]) -> None:
    """The gate's record and its answer in the state go together."""
    answered = any(h["step_id"] == "ask" and h["status"] == "completed" for h in detail["step_history"])
    assert answered == ("human_response" in detail["state"]), detail
    if any(h["step_id"] == "work" and h["status"] == "completed" for h in detail["step_history"]):
        assert answered and "report" in detail["state"], detail


async def test_one_resume_and_ten_cancels_at_a_gate(servers: list[LiveServer]) -> None:
    rng = random.Random(7)
    async with httpx.AsyncClient(headers=AUTH, timeout=30) as http:
        for trial in range(TRIALS):
            run_id = await paused_run(http, servers[0])
            base = [f"{s.url}/api/v1/orchestrations/runs/{run_id}" for s in servers]
            resume = after(rng.uniform(0, 7), http.post(base[0] + "/resume",
                                                        json={"response": {"decision": "approve"}}))
            cancels = [after(rng.uniform(0, 7), http.post(base[i % len(base)] + "/cancel")) for i in range(10)]
            replies = await asyncio.gather(resume, *cancels)
            assert all(r.status_code in (200, 409) for r in replies), [(r.status_code, r.text) for r in replies]
            final = (await http.get(base[-1])).json()
            status = final["status"]
            resumed, cancelled = replies[0], replies[1:]
            won = [r for r in cancelled if r.status_code == 200]
            assert status in ("completed", "cancelled"), final
            assert len(won) == (status == "cancelled"), (trial, status, [(r.status_code, r.text) for r in replies])
            for r in won:
                assert r.json()["status"] == "cancelled"
            for r in cancelled:
                if r.status_code == 409:
                    assert r.json()["detail"] == (f"run '{run_id}' is {status}; only running or paused runs "
                                                  "can be cancelled"), (trial, r.text)
                    assert r.json()["code"] == "not_paused"
            if resumed.status_code == 200:
                assert resumed.json()["status"] == status
            else:
                assert status == "cancelled" and f"run '{run_id}' is cancelled" in resumed.json()["detail"]
            check_agrees(final)


async def test_fifty_cancels_at_once_have_one_winner(servers: list[LiveServer]) -> None:
    async with httpx.AsyncClient(headers=AUTH, timeout=30) as http:
        for resumed_first in (False, True):
            run_id = await paused_run(http, servers[0])
            base = [f"{s.url}/api/v1/orchestrations/runs/{run_id}" for s in servers]
            resume = None
            if resumed_first:  # the run is running its slow step when the cancels arrive
                resume = asyncio.create_task(http.post(base[0] + "/resume", json={"response": {"decision": "approve"}}))
                await asyncio.sleep(0.02)
            replies = await asyncio.gather(*(http.post(base[i % len(base)] + "/cancel") for i in range(50)))
            if resume is not None:
                assert (await resume).status_code == 200
            codes = sorted(r.status_code for r in replies)
            final = (await http.get(base[0])).json()
            if final["status"] == "completed":  # the slow step finished before any cancel came
                assert codes == [409] * 50
            else:
                assert (final["status"], codes) == ("cancelled", [200] + [409] * 49), [r.text for r in replies]
            check_agrees(final)
