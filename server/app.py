"""The Litestar application: `create_app` wires the engine, auth, routes and error mapping."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Mapping

from litestar import Litestar, Router, asgi
from litestar.types import Receive, Scope, Send
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from orch.bootstrap import LoadReport, build_engine, left_out_because
from orch.observe.otel_env import tracing_requested
from orch.observe.watch import observe_engine
from orch.settings import Settings
from orch.steps.base import Executor
from orch.server.auth import KeyRing, env_keys, require_api_key
from orch.server.context import ServerContext, server_context
from orch.server.cors import cors_config
from orch.server.errors import EXCEPTION_HANDLERS
from orch.server.mcp.server import HttpEndpoint
from orch.server.routes import agents, execution, orchestrations, runs
from orch.server.requestlog import RequestLog
from orch.server.routes.health import health
from orch.server.routes.metrics import metrics
from orch.server.sessions import SessionSigner
from orch.server.sse import document_event_streams
from orch.server.ui import console_router, redirects
from orch.server.ui.docs import swagger_assets, swagger_plugin
from orch.server.ui.rendering import template_config

API_PREFIX = "/api/v1"
log = logging.getLogger("orch.server")


def create_app(settings: Settings, *, api_keys: list[str] | None = None, allow_unauthenticated: bool = False,
               executors: Mapping[str, Executor] | None = None, sse_ping_seconds: float = 15.0,
               tracer_provider: Any = None) -> Litestar:
    """The API and the console for the graphs of `settings.graphs_dir`. Startup fails when no
    API key exists (given here, in settings, in ORCH_API_KEYS or stored) unless
    `allow_unauthenticated`; a bad ORCH_CORS_ORIGINS or ORCH_SESSION_SECRET raises ValueError here.
    Runs are logged and counted (orch.observe); they are traced with `tracer_provider`, else
    as the OTEL_* variables say (orch.observe.traces: off unless asked for)."""
    keys = [*(api_keys or []), *settings.api_keys, *env_keys()]
    if tracer_provider is None and tracing_requested():
        from orch.observe.traces import start_tracing

        tracer_provider = start_tracing()
    sessions = SessionSigner(settings.session_secret)
    cors = cors_config(settings.cors_origins)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        engine, report = await build_engine(settings, executors=executors, recover=False, local=allow_unauthenticated)
        stop_observing = observe_engine(engine, tracer_provider)
        try:
            keyring = KeyRing(keys, engine.store.api_key_hashes, allow_unauthenticated=allow_unauthenticated)
            await keyring.require_some_key()
            if keyring.open:
                log.warning("local mode: every request is accepted, no API key needed")
            transforms = engine.services.transforms
            log.log(logging.INFO if transforms.mode == "isolated" else logging.WARNING, "%s", transforms.summary)
            log_report(report)
            await engine.recover()
            app.state.keyring = keyring
            app.state.sessions = sessions
            app.state.ctx = ServerContext(settings, engine, report, sse_ping_seconds)
            app.state.mcp = HttpEndpoint(engine, local=allow_unauthenticated)
            async with app.state.mcp.running():
                yield
        finally:
            await engine.close()
            await stop_observing()

    api = Router(
        path=API_PREFIX, guards=[require_api_key], security=[{"BearerAuth": []}],
        route_handlers=[orchestrations.router, execution.router, runs.router, agents.router],
    )
    scrape = Router(path="/", route_handlers=[metrics], guards=[] if settings.metrics_public else [require_api_key])
    app = Litestar(
        # /health at the root too, where load balancers and probes look for it.
        route_handlers=[api, Router(path=API_PREFIX, route_handlers=[health]),
                        Router(path="/", route_handlers=[health]), scrape,
                        console_router(sessions.csrf_secret), *redirects, swagger_assets(), mcp_endpoint],
        lifespan=[lifespan],
        on_startup=[document_event_streams],
        template_config=template_config(),
        cors_config=cors,
        dependencies={"ctx": Provide(server_context, sync_to_thread=False)},
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        openapi_config=OpenAPIConfig(
            title="Orchestration API", version="1.0.0", path="/schema",
            description="Run AI orchestrations, answer their human gates and follow their events.",
            render_plugins=[swagger_plugin()],
            components=Components(security_schemes={
                "BearerAuth": SecurityScheme(type="http", scheme="bearer", description="An API key"),
            }),
        ),
        logging_config=None,
        request_max_body_size=settings.max_request_body_bytes,
    )
    # Outside Litestar's routing, so that every request gets an id and a log line, 404s too.
    app.asgi_handler = RequestLog(app.asgi_handler, tracer_provider)  # type: ignore[assignment]
    return app


@asgi("/mcp", is_mount=True, copy_scope=True, guards=[require_api_key], include_in_schema=False)
async def mcp_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    """The orchestrations as MCP tools over streamable HTTP (docs/mcp.md), behind the API keys."""
    await scope["app"].state.mcp(scope, receive, send)


def log_report(report: LoadReport) -> None:
    for orch_id, problems in sorted(report.rejected.items()):
        log.warning("orchestration %s left out, %s:\n%s", orch_id, left_out_because(problems),
                    "\n".join(f"  {p}" for p in problems))
    for problem in report.problems:
        if problem.severity == "error" and problem.orchestration_id not in report.rejected:
            log.warning("%s", problem)
    log.info("serving %d orchestrations: %s", len(report.graphs), ", ".join(sorted(report.graphs)))
