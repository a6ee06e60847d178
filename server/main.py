"""Serving the API with uvicorn, and the banner that tells the operator how to call it.

One worker serves an app built here. Several workers each build their own app from the
configuration this process leaves in the environment (`app_from_env`, uvicorn factory mode);
they share runs through the database, which must then be PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shlex
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, Iterator

import msgspec
import msgspec.structs
import uvicorn
from litestar import Litestar
from uvicorn.protocols.http.h11_impl import H11Protocol

from orch.bootstrap import LoadReport, left_out_because, load_graphs, refuse_transforms
from orch.config import secrets_of
from orch.observe.logs import configure_logging
from orch.observe.metrics import MULTIPROC_ENV, prepare_multiprocess_dir
from orch.observe.otel_env import tracing_requested
from orch.sandbox import TransformPolicy, transform_policy
from orch.settings import Settings
from orch.store.sql import SQLStore, normalize_url
from orch.tools import ToolRegistry
from orch.server.app import API_PREFIX, create_app
from orch.server.auth import NoApiKeyConfigured, env_keys
from orch.server.cors import cors_config
from orch.server.sessions import SessionSigner
from orch.server.ui.rendering import PREFIX as CONSOLE

CONFIG_ENV = "ORCH_SERVE_CONFIG"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
EXAMPLE_GRAPH = "orch-research-report"
EXAMPLE_BODY = '{"message": "Synapse AI platform"}'


class ServeConfig(msgspec.Struct, kw_only=True):
    settings: Settings
    api_keys: list[str] = []
    allow_unauthenticated: bool = False


def app_from_env() -> Litestar:
    """uvicorn factory for worker processes."""
    config = msgspec.json.decode(os.environ[CONFIG_ENV], type=ServeConfig)
    settings = config.settings
    configure_logging(settings.log_format, settings.log_level, secrets=secrets_of(settings, *config.api_keys))
    return create_app(settings, api_keys=config.api_keys, allow_unauthenticated=config.allow_unauthenticated)


def serve(settings: Settings, *, host: str | None = None, port: int | None = None, workers: int | None = None,
          api_keys: list[str] | None = None, allow_unauthenticated: bool = False, log_level: str | None = None) -> None:
    """Run the API until interrupted; `host`, `port`, `workers` and `log_level` default to the
    settings' (127.0.0.1, 8000, 1, info). Raises NoApiKeyConfigured before listening when no key
    exists and unauthenticated use was not allowed, IsolationUnavailable when transforms must be
    isolated and cannot be, and ValueError (TracingError among them) for settings that cannot work."""
    host = settings.host if host is None else host
    port = settings.port if port is None else port
    workers = settings.workers if workers is None else workers
    log_level = log_level or settings.log_level
    keys = list(api_keys or [])
    if allow_unauthenticated and host not in LOOPBACK:
        raise ValueError(f"--local accepts requests without an API key, so it serves only on this machine "
                         f"(127.0.0.1), not on {host}; give API keys to serve on other addresses")
    if workers > 1 and normalize_url(settings.database_url).startswith("sqlite"):
        raise ValueError("several workers share runs through the database: set ORCH_DATABASE_URL to a "
                         "PostgreSQL URL, or serve with one worker")
    # Opening the store once here also creates its tables before any worker races to.
    stored = len(asyncio.run(_stored_key_hashes(settings)))
    if not (keys or settings.api_keys or env_keys() or stored or allow_unauthenticated):
        raise NoApiKeyConfigured("no API key is configured: create one with `orch keys create`, pass keys in "
                                 "ORCH_API_KEYS (comma-separated), or serve with --local (127.0.0.1, no keys)")
    cors_config(settings.cors_origins)  # raises ValueError before anything is printed
    SessionSigner(settings.session_secret)
    if tracing_requested():
        from orch.observe.traces import exporters_from_env

        exporters_from_env()  # raises TracingError naming the variable
    if settings.session_secret is None and workers > 1:  # every worker must accept the others' cookies
        settings = msgspec.structs.replace(settings, session_secret=secrets.token_urlsafe(32))
    transforms = transform_policy(settings, local=allow_unauthenticated)
    print(banner(settings, _preload(settings, transforms), host=host, port=port,
                 authenticated=not allow_unauthenticated, transforms=transforms), flush=True)
    options: dict[str, Any] = dict(
        host=host, port=port, log_level=log_level, log_config=None, access_log=False,
        timeout_keep_alive=settings.keep_alive_seconds, timeout_graceful_shutdown=settings.shutdown_grace_seconds)
    if workers == 1:
        app = create_app(settings, api_keys=keys, allow_unauthenticated=allow_unauthenticated)
        uvicorn.run(app, **options)
        return
    with metrics_directory():
        config = ServeConfig(settings=settings, api_keys=keys, allow_unauthenticated=allow_unauthenticated)
        os.environ[CONFIG_ENV] = msgspec.json.encode(config).decode()
        # With several workers uvicorn opens the listening socket itself, and asyncio then leaves
        # Nagle's algorithm on for accepted connections (encode/uvicorn#3149): every response on a
        # kept-alive connection would wait ~40 ms for a delayed ACK. The protocol below turns it off.
        uvicorn.run("orch.server.main:app_from_env", factory=True, workers=workers, http=NoDelayHTTP, **options)


@contextlib.contextmanager
def metrics_directory() -> Iterator[None]:
    """Workers share their metrics through files (prometheus-client's multi-process mode): in
    PROMETHEUS_MULTIPROC_DIR when the operator set it (emptied of old samples first), else in a
    temporary directory removed on exit. Set before the workers start, so they see it."""
    given = os.environ.get(MULTIPROC_ENV)
    directory = given or tempfile.mkdtemp(prefix="orch-metrics-")
    prepare_multiprocess_dir(directory)
    os.environ[MULTIPROC_ENV] = directory
    try:
        yield
    finally:
        if not given:
            os.environ.pop(MULTIPROC_ENV, None)
            shutil.rmtree(directory, ignore_errors=True)


class NoDelayHTTP(H11Protocol):
    """uvicorn's HTTP protocol with TCP_NODELAY set on each connection."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)


async def _stored_key_hashes(settings: Settings) -> list[str]:
    store = SQLStore(settings.database_url, synchronous=settings.sqlite_synchronous)
    await store.open()
    try:
        return await store.api_key_hashes()
    finally:
        await store.close()


def _preload(settings: Settings, transforms: TransformPolicy | None = None) -> LoadReport:
    """The graphs as the server will load them (for the banner; each worker loads its own)."""
    tools = ToolRegistry.with_builtins()
    for module in settings.tool_modules:
        tools.load_module(module)
    paths: list[str | Path] = [p for p in [settings.graphs_dir] if Path(p).exists()]
    report = load_graphs(paths, set(tools.names()), mcp_servers_file=settings.mcp_servers_file)
    if transforms is not None:
        refuse_transforms(report, transforms)
    return report


def banner(settings: Settings, report: LoadReport, *, host: str, port: int, authenticated: bool,
           transforms: TransformPolicy | None = None) -> str:
    shown = "localhost" if host in ("0.0.0.0", "::", "") else f"[{host}]" if ":" in host else host
    root = f"http://{shown}:{port}"
    base = root + API_PREFIX
    lines = [f"Console: {root}{CONSOLE}" + ("" if not authenticated else "   (sign in with an API key)"),
             f"Orchestration API: {base}   (OpenAPI UI: {root}/schema)",
             f"Graphs from {settings.graphs_dir}: {len(report.graphs)} loaded"
             + (f": {', '.join(sorted(report.graphs))}" if report.graphs else "")]
    for orch_id, problems in sorted(report.rejected.items()):
        lines.append(f"  left out {orch_id}, {left_out_because(problems)}:")
        lines.extend(f"    {p}" for p in problems)
    if transforms is not None:
        lines.append(transforms.summary[0].upper() + transforms.summary[1:])
    auth = ' \\\n    -H "Authorization: Bearer YOUR_API_KEY"' if authenticated else ""
    example = EXAMPLE_GRAPH if EXAMPLE_GRAPH in report.graphs else min(report.graphs, default=EXAMPLE_GRAPH)
    lines += [
        "List the orchestrations:",
        f"  curl {base}/orchestrations{auth}",
        f"Run {example}:",
        f"  curl -X POST {base}/orchestrations/{example}/run{auth} \\\n"
        f'    -H "Content-Type: application/json" \\\n    -d {shlex.quote(EXAMPLE_BODY)}',
    ]
    if not authenticated:
        lines.append("Local mode: every request is accepted without an API key; only this machine can connect.")
    return "\n".join(lines)
