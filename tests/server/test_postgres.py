"""Two servers over one PostgreSQL database: runs move between them, readers follow runs that
the other server drives, and a gate still has exactly one winner."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Iterator

import httpx
import pytest

from orch.settings import Settings
from tests.conftest import ROOT, pg_schema_url
from tests.server.conftest import AUTH, LiveServer
from tests.server.sse_frames import read
from tests.server.flows import FIRST_LEG, slowed

pytestmark = pytest.mark.postgres
RUN = "/orchestrations/orch-research-report/run"


@pytest.fixture
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, LiveServer]]:
    url, drop = pg_schema_url()
    servers: list[LiveServer] = []
    try:
        for name, executors in (("a", slowed(0.4)), ("b", None)):
            sandbox = tmp_path_factory.mktemp(name)
            settings = Settings(database_url=url, graphs_dir=str(ROOT / "graphs"), sandbox_root=str(sandbox))
            servers.append(LiveServer(settings, executors=executors).start())
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()
        drop()


def client(server: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=server.url + "/api/v1", headers=AUTH, timeout=30)


def test_a_run_started_on_one_server_is_followed_and_resumed_on_the_other(
        pair: tuple[LiveServer, LiveServer]) -> None:
    a, b = pair
    with client(a) as api_a, client(b) as api_b:
        with api_a.stream("POST", RUN + "/stream", json={"message": "shared"}) as response:
            head = next(response.iter_bytes())
            run_id = head.split(b'"run_id":"')[1].split(b'"')[0].decode()
            _, followed = read(api_b, "GET", f"/orchestrations/runs/{run_id}/events")  # b polls the store
        assert followed.types == FIRST_LEG and followed.ids == list(range(1, len(FIRST_LEG) + 1))
        final = api_b.post(f"/orchestrations/runs/{run_id}/resume", json={"response": {"decision": "approve"}})
        assert final.json()["status"] == "completed"
        assert api_a.get(f"/orchestrations/runs/{run_id}").json()["status"] == "completed"


async def test_concurrent_resumes_across_servers_have_one_winner(pair: tuple[LiveServer, LiveServer]) -> None:
    a, b = pair
    async with httpx.AsyncClient(headers=AUTH, timeout=30) as http:
        run_id = (await http.post(b.url + "/api/v1" + RUN, json={"message": "race"})).json()["run_id"]
        responses = await asyncio.gather(*(
            http.post(f"{server.url}/api/v1/orchestrations/runs/{run_id}/resume", json={"response": "approve"})
            for server in [a, b] * 10
        ))
    assert Counter(r.status_code for r in responses) == {200: 1, 409: 19}
