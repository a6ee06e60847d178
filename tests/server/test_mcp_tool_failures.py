"""A served graph whose MCP server goes away: its runs fail with a clear error, the server goes on."""

from __future__ import annotations

from pathlib import Path

import httpx
import msgspec.structs

from tests.engine.test_mcp_tools import FORECAST, FakeServer, bundle
from tests.server.conftest import AUTH, LiveServer, make_settings


def test_killing_the_mcp_server_fails_the_step_and_the_server_keeps_serving(tmp_path: Path) -> None:
    mcp = FakeServer("--http").start()
    url = f"http://127.0.0.1:{mcp.port}/mcp"
    path = bundle(tmp_path, {"server_type": "remote", "url": url})
    settings = msgspec.structs.replace(make_settings(tmp_path), graphs_dir=str(path.parent))
    server = LiveServer(settings).start()
    try:
        with httpx.Client(base_url=server.url + "/api/v1", headers=AUTH, timeout=60) as api:
            run = "/orchestrations/orch-weather-brief/run"
            ok = api.post(run, json={"message": "Oslo"}).json()
            assert ok["status"] == "completed" and ok["shared_state"]["forecast"] == FORECAST
            mcp.kill()
            failed = api.post(run, json={"message": "Oslo"})
            assert failed.status_code == 200
            assert failed.json()["status"] == "failed"
            assert failed.json()["response"] == (f"step step-fetch: MCP server 'weather' ({url}) cannot be reached: "
                                                 "All connection attempts failed")
            assert api.get("/health").json()["status"] == "ok"
            assert [o["id"] for o in api.get("/orchestrations").json()] == ["orch-weather-brief"]
    finally:
        server.stop()
        mcp.kill()
