"""Shared fixtures: stores on SQLite files and on the PostgreSQL server, and engines over them.

PostgreSQL tests need the server on 127.0.0.1:5432 (database `test`). Locally they skip when it
is not reachable; with ORCH_REQUIRE_POSTGRES=1 (set by .ci/run) they fail instead. Likewise the
tests of isolated transforms need bubblewrap, and fail without it when ORCH_REQUIRE_ISOLATION=1.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest

PG_BASE = os.environ.get("ORCH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
ROOT = Path(__file__).resolve().parents[1]


def _pg_available() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_BASE.replace("postgresql://", "postgresql://", 1), connect_timeout=3):
            return None
    except Exception as exc:  # noqa: BLE001 - reported as the skip reason
        return f"PostgreSQL not reachable at {PG_BASE}: {exc}"


def pg_schema_url() -> tuple[str, Callable[[], None]]:
    """A database URL confined to a fresh schema, and a function that drops it."""
    import psycopg

    reason = _pg_available()
    if reason:
        if os.environ.get("ORCH_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    schema = "t_" + secrets.token_hex(6)
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")

    def drop() -> None:
        with psycopg.connect(PG_BASE, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")

    return f"{PG_BASE}?options=-csearch_path%3D{schema}", drop


def isolation_missing() -> str | None:
    """Why transforms cannot be isolated on this machine, or None when they can."""
    from orch.sandbox import transform_policy
    from orch.settings import Settings

    policy = transform_policy(Settings(), local=False)
    return None if policy.mode == "isolated" else f"transforms cannot be isolated here: {policy.reason}"


def require_isolation() -> None:
    """Skip the calling test where transforms cannot be isolated (fail under ORCH_REQUIRE_ISOLATION=1)."""
    reason = isolation_missing()
    if reason:
        if os.environ.get("ORCH_REQUIRE_ISOLATION") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


def isolation_for_tests() -> str:
    """The `transform_isolation` for tests that are not about isolation: transforms run isolated
    where they can, and unisolated elsewhere rather than being refused."""
    return "auto" if isolation_missing() is None else "unisolated"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'orch.db'}"
        return
    url, drop = pg_schema_url()
    yield url
    drop()


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """Every store implementation: "memory", a SQLite file, a PostgreSQL schema."""
    if request.param == "memory":
        yield "memory"
        return
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'orch.db'}"
        return
    url, drop = pg_schema_url()
    yield url
    drop()


def make_store(url: str) -> Any:
    """The store for `url`: "memory" is the in-memory store, anything else SQL."""
    from orch.store.memory import MemoryStore
    from orch.store.sql import SQLStore

    return MemoryStore() if url == "memory" else SQLStore(url)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'orch.db'}"


async def open_engine(url: str, *graphs: str, sandbox: Path, executors: dict[str, Any] | None = None,
                      kinds: dict[str, Any] | None = None, store: Any = None, **settings: Any) -> Any:
    """An open engine over `url` (or over `store`) with graphs given inline (YAML or JSON
    text), executor overrides and, optionally, a table of step kinds. The caller closes it."""
    from orch.definition.compile import compile_catalog
    from orch.definition.loader import Catalog, load_text
    from orch.run.engine import Engine
    from orch.services import build_services
    from orch.settings import Settings
    from orch.steps import spec_types

    cfg = Settings(database_url=url if url != "memory" else "sqlite://", sandbox_root=str(sandbox), **settings)
    services = build_services(cfg)
    engine = Engine(store if store is not None else make_store(url), services, executors=executors, kinds=kinds)
    await engine.open()
    catalog = Catalog(step_types=spec_types(engine.kinds))
    for i, text in enumerate(graphs):
        load_text(text, f"inline-{i}.yaml", catalog)
    assert not catalog.errors, [str(p) for p in catalog.errors]
    for result in compile_catalog(catalog, tools=set(services.tools.names()), kinds=engine.kinds).values():
        assert result.graph is not None, [str(p) for p in result.problems]
        await engine.add_graph(result.graph)
    return engine


@pytest.fixture
async def make_engine(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """Build engines (see `open_engine`); all are closed at teardown."""
    engines: list[Any] = []

    async def make(url: str, *graphs: str, executors: dict[str, Any] | None = None,
                   kinds: dict[str, Any] | None = None, **settings: Any) -> Any:
        engine = await open_engine(url, *graphs, sandbox=tmp_path / "sandbox", executors=executors, kinds=kinds,
                                   **settings)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await engine.close()
