"""API keys: required on every /api/v1 route but /health, hashed at rest, from three sources."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from litestar.testing import AsyncTestClient

from orch.settings import Settings
from orch.store.sql import SQLStore
from orch.server.app import create_app
from orch.server.auth import NoApiKeyConfigured, hash_key
from tests.server.conftest import LiveServer


@pytest.fixture(autouse=True)
def no_env_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORCH_API_KEYS", raising=False)


@pytest.mark.parametrize("headers, detail", [
    ({}, "missing API key: send the header 'Authorization: Bearer <key>'"),
    ({"Authorization": "Bearer wrong"}, "invalid API key"),
    ({"Authorization": "Basic dGVzdDp0ZXN0"}, "the Authorization header must read 'Bearer <key>'"),
    ({"Authorization": "Bearer"}, "the Authorization header must read 'Bearer <key>'"),
    ({"Authorization": "orch_bare_key"}, "the Authorization header must read 'Bearer <key>'"),
])
def test_requests_without_a_valid_key_get_401(live: LiveServer, headers: dict[str, str], detail: str) -> None:
    for method, path in [("GET", "/orchestrations"), ("POST", "/orchestrations/orch-research-report/run"),
                         ("GET", "/orchestrations/runs/run_x/events"), ("GET", "/agents")]:
        response = httpx.request(method, live.url + "/api/v1" + path, headers=headers, json={"message": "x"})
        assert response.status_code == 401
        assert response.json() == {"detail": detail, "code": "unauthorized"}
        assert response.headers["www-authenticate"] == "Bearer"


def test_health_and_the_openapi_document_are_open(live: LiveServer) -> None:
    assert httpx.get(live.url + "/api/v1/health").status_code == 200
    assert httpx.get(live.url + "/health").json()["status"] == "ok"
    document = httpx.get(live.url + "/schema/openapi.json")
    assert document.status_code == 200 and document.json()["info"]["title"] == "Orchestration API"
    assert httpx.get(live.url + "/schema").status_code == 200


async def test_starting_with_no_key_anywhere_is_an_error(settings: Settings) -> None:
    with pytest.raises(ExceptionGroup) as info:
        async with AsyncTestClient(create_app(settings)):
            pass
    assert info.group_contains(NoApiKeyConfigured, match="^no API key is configured: create one with")


def test_unauthenticated_mode_must_be_asked_for(settings: Settings) -> None:
    server = LiveServer(settings, api_keys=[], allow_unauthenticated=True).start()
    try:
        assert httpx.get(server.url + "/api/v1/orchestrations").status_code == 200
    finally:
        server.stop()


def test_keys_from_the_environment_and_the_store(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    async def store_key(key: str) -> None:
        store = SQLStore(settings.database_url)
        await store.open()
        await store.add_api_key(key, "ci", hash_key(key))
        await store.close()

    asyncio.run(store_key("stored-key-1"))
    monkeypatch.setenv("ORCH_API_KEYS", " env-key-1 , env-key-2,")
    server = LiveServer(settings, api_keys=[]).start()
    try:
        def status(key: str) -> int:
            return httpx.get(server.url + "/api/v1/agents", headers={"Authorization": f"Bearer {key}"}).status_code

        assert [status(k) for k in ("stored-key-1", "env-key-1", "env-key-2", "env-key-3")] == [200, 200, 200, 401]
        server.app.state.keyring.refresh_seconds = 0  # a key created while serving works at once
        asyncio.run(store_key("stored-key-2"))
        assert status("stored-key-2") == 200
    finally:
        server.stop()
