"""Every HTTP request: a request id, one log line, its metrics and, with tracing on, a server
span continuing the caller's trace.

The id is the caller's `X-Request-ID` when it is a plain token (letters, digits, `._:-`, at most
128 characters), else a new one; it is sent back in `X-Request-ID` and bound to every log event
made while the request is handled (a run it starts logs it too). The log line names the method,
the path (without the query), the status and the time taken; never a header.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any, Awaitable, Callable, MutableMapping

import structlog
from prometheus_client import Counter, Histogram

from orch.observe.logs import get_logger

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Any  # Litestar's handler, typed with its own scope types
log = get_logger("orch.http")
HEADER = b"x-request-id"
_TOKEN = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
_QUIET = frozenset({"/health", "/api/v1/health", "/metrics"})  # probes and scrapes log at debug

HTTP_REQUESTS = Counter("orch_http_requests", "HTTP requests answered", ["method", "route", "status"])
HTTP_SECONDS = Histogram("orch_http_request_duration_seconds", "Time to answer an HTTP request (event streams: "
                         "until they close)", ["method", "route"])


class RequestLog:
    """ASGI middleware around the application's handler (inside Litestar, after its lifespan)."""

    def __init__(self, app: ASGIApp, tracer_provider: Any = None) -> None:
        self.app = app
        self.tracer = tracer_provider.get_tracer("orch.server") if tracer_provider is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(HEADER, b"")
        request_id = given.decode() if _TOKEN.match(given) else uuid.uuid4().hex
        status = 500
        began = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (HEADER, request_id.encode())]
            await send(message)

        span = self._span(scope) if self.tracer is not None else None
        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                if span is None:
                    await self.app(scope, receive, send_with_id)
                else:
                    from opentelemetry import trace

                    with trace.use_span(span, end_on_exit=False):
                        await self.app(scope, receive, send_with_id)
            finally:
                seconds = time.perf_counter() - began
                route = scope.get("path_template") or "unmatched"
                method = scope["method"]
                HTTP_REQUESTS.labels(method, route, str(status)).inc()
                HTTP_SECONDS.labels(method, route).observe(seconds)
                if span is not None:
                    _end_span(span, route, status)
                level = log.debug if scope["path"] in _QUIET and status < 400 else log.info
                level("request", method=method, path=scope["path"], status=status,
                      duration_ms=round(seconds * 1000, 2), client=(scope.get("client") or ("",))[0])

    def _span(self, scope: Scope) -> Any:
        from opentelemetry import propagate
        from opentelemetry.trace import SpanKind

        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        assert self.tracer is not None
        return self.tracer.start_span(
            scope["method"], context=propagate.extract(carrier), kind=SpanKind.SERVER,
            attributes={"http.request.method": scope["method"], "url.path": scope["path"]})


def _end_span(span: Any, route: str, status: int) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.update_name(f"{span.name} {route}")
    span.set_attribute("http.route", route)
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))
    span.end()
