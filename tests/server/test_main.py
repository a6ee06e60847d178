"""Starting the server: graphs that do not validate are left out and logged, the banner, serve()."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import msgspec
import pytest

from orch.settings import Settings
from orch.server.auth import NoApiKeyConfigured
from orch.server.main import CONFIG_ENV, ServeConfig, _preload, app_from_env, banner, serve
from tests.server.conftest import AUTH, LiveServer

GOOD = """
id: orch-good
name: Good
steps:
  - {id: hello, type: print, print_content: "hello {state.user_input}", output_key: greeting}
"""
BAD = """
id: orch-bad
name: Bad
steps:
  - {id: one, type: print, print_content: hi, next_step_id: nowhere}
"""


@pytest.fixture
def two_graphs(settings: Settings, tmp_path: Path) -> Settings:
    graphs = tmp_path / "graphs"
    graphs.mkdir()
    (graphs / "good.yaml").write_text(GOOD)
    (graphs / "bad.yaml").write_text(BAD)
    return msgspec.structs.replace(settings, graphs_dir=str(graphs))


def test_a_graph_that_does_not_validate_is_logged_and_left_out(two_graphs: Settings,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="orch.server")
    server = LiveServer(two_graphs).start()
    try:
        api = httpx.Client(base_url=server.url + "/api/v1", headers=AUTH)
        assert [o["id"] for o in api.get("/orchestrations").json()] == ["orch-good"]
        assert api.get("/health").json()["rejected"] == 1
        assert api.post("/orchestrations/orch-good/run", json={"message": "you"}).json()["response"] == "hello you"
        api.close()
    finally:
        server.stop()
    [record] = [r for r in caplog.records if "orch-bad" in r.getMessage()]
    assert "next_step_id points to 'nowhere', which is not a step" in record.getMessage()


def test_the_banner_says_how_to_call_the_server(two_graphs: Settings) -> None:
    text = banner(two_graphs, _preload(two_graphs), host="0.0.0.0", port=9000, authenticated=True)
    assert text.startswith("Console: http://localhost:9000/ui   (sign in with an API key)\n")
    assert "Orchestration API: http://localhost:9000/api/v1" in text
    assert "1 loaded: orch-good" in text and "left out orch-bad, it does not validate:" in text
    assert "curl http://localhost:9000/api/v1/orchestrations \\\n    -H \"Authorization: Bearer YOUR_API_KEY\"" in text
    assert ("curl -X POST http://localhost:9000/api/v1/orchestrations/orch-good/run \\\n"
            "    -H \"Authorization: Bearer YOUR_API_KEY\" \\\n    -H \"Content-Type: application/json\" \\\n"
            "    -d '{\"message\": \"Synapse AI platform\"}'") in text


def test_serve_refuses_to_start_without_a_key(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORCH_API_KEYS", raising=False)
    with pytest.raises(NoApiKeyConfigured, match="^no API key is configured"):
        serve(settings, port=1)


def test_several_workers_need_postgresql(settings: Settings) -> None:
    with pytest.raises(ValueError, match="^several workers share runs through the database"):
        serve(settings, workers=2, api_keys=["k"])


def test_workers_build_their_app_from_the_environment(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    config = ServeConfig(settings=settings, api_keys=["k"])
    monkeypatch.setenv(CONFIG_ENV, msgspec.json.encode(config).decode())
    app = app_from_env()
    assert app.openapi_schema.info.title == "Orchestration API"
