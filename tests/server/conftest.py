"""A real uvicorn server on a free loopback port, over a temporary SQLite file and the project's
graphs/ directory; tests drive it over HTTP."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import uvicorn

from orch.settings import Settings
from orch.server.app import create_app
from tests.conftest import isolation_for_tests

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "test-key-0123456789"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


class LiveServer:
    """One uvicorn server in a thread of its own (with its own event loop)."""

    def __init__(self, settings: Settings, **app_options: Any) -> None:
        app_options.setdefault("api_keys", [API_KEY])
        self.app = create_app(settings, **app_options)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
        self.sock.close()

    @property
    def engine(self) -> Any:
        return self.app.state.ctx.engine


def make_settings(directory: Path) -> Settings:
    return Settings(database_url=f"sqlite:///{directory}/orch.db", graphs_dir=str(ROOT / "graphs"),
                    sandbox_root=str(directory / "sandbox"), transform_isolation=isolation_for_tests())


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A database of the test's own, for tests that start their own servers."""
    return make_settings(tmp_path)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server per test module; tests must not assume they are alone in its database."""
    server = LiveServer(make_settings(tmp_path_factory.mktemp("live")), sse_ping_seconds=0.3).start()
    yield server
    server.stop()


@pytest.fixture
def api(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url + "/api/v1", headers=AUTH, timeout=30) as client:
        yield client


@pytest.fixture
async def aapi(live: LiveServer) -> Any:
    async with httpx.AsyncClient(base_url=live.url + "/api/v1", headers=AUTH, timeout=30) as client:
        yield client
