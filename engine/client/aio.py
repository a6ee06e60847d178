"""`AsyncClient`: the API over httpx for asyncio, method for method as `Client` (orch.client.sync),
sending the same calls (orch.client.calls) and reading streams the same way (orch.client.streams)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any, Literal, TypeVar

import httpx

from orch.client import calls
from orch.client.calls import RETRIED_STATUSES, Call, new_key
from orch.client.transport import DEFAULT_TIMEOUT, STREAM_READ_TIMEOUT, Backoff, Retry, auth_headers, request_options
from orch.client.errors import StreamInterrupted, error_for
from orch.client.streams import Cursor, SSEParser
from orch.definition.spec import Agent, Orchestration
from orch.events import Event
from orch.wire import AgentSummary, Health, OrchestrationSummary, RunDetail, RunPage, RunResult, RunStatus, ValidationReport

T = TypeVar("T")


class AsyncEventStream:
    """A run's events, in order, each once, until the run pauses or ends; reconnects after a
    broken connection.
    `run_id` is known from the first event on; `last_event_id` is the last event's seq."""

    def __init__(self, client: AsyncClient, cursor: Cursor) -> None:
        self._client, self._cursor = client, cursor
        self._events = client._follow(cursor)

    @property
    def run_id(self) -> str | None:
        return self._cursor.run_id

    @property
    def last_event_id(self) -> int:
        return self._cursor.last

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events

    async def aclose(self) -> None:
        await self._events.aclose()


class AsyncClient:
    """The orchestration API for asyncio programs; see `Client`.

    >>> async with AsyncClient("http://localhost:8000", api_key="...") as api:
    ...     result = await api.run("orch-research-report", "Synapse AI platform")
    """

    def __init__(self, base_url: str = "http://localhost:8000", api_key: str | None = None, *,
                 timeout: httpx.Timeout | float = DEFAULT_TIMEOUT, reconnect_timeout: float = 60.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.reconnect_timeout = reconnect_timeout
        self._headers = auth_headers(api_key)
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout, transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- orchestrations and agents ---------------------------------------------------------

    async def health(self) -> Health:
        return await self.send(calls.health())

    async def list_orchestrations(self) -> list[OrchestrationSummary]:
        return await self.send(calls.list_orchestrations())

    async def get_orchestration(self, orchestration_id: str) -> Orchestration:
        return await self.send(calls.get_orchestration(orchestration_id))

    async def graph(self, orchestration_id: str, format: Literal["mermaid", "dot"] = "mermaid") -> str:
        return await self.send(calls.graph(orchestration_id, format))

    async def validate(self, definition: Mapping[str, Any]) -> ValidationReport:
        return await self.send(calls.validate(definition))

    async def list_agents(self) -> list[AgentSummary]:
        return await self.send(calls.list_agents())

    async def get_agent(self, agent_id: str) -> Agent:
        return await self.send(calls.get_agent(agent_id))

    # -- runs ------------------------------------------------------------------------------

    async def run(self, orchestration_id: str, message: str = "", state: Mapping[str, Any] | None = None, *,
            idempotency_key: str | None = None) -> RunResult:
        """Start a run and wait until it completes, pauses at a gate or fails."""
        return await self.send(calls.run(orchestration_id, message, state, idempotency_key or new_key()))

    def run_stream(self, orchestration_id: str, message: str = "", state: Mapping[str, Any] | None = None, *,
                   idempotency_key: str | None = None) -> AsyncEventStream:
        """Start a run and follow its events until it pauses or ends."""
        first = calls.run_stream(orchestration_id, message, state, idempotency_key or new_key())
        return AsyncEventStream(self, Cursor(first))

    async def resume(self, run_id: str, response: Mapping[str, Any] | str, *,
               idempotency_key: str | None = None) -> RunResult:
        """Answer a paused run's gate and wait until the run completes, pauses again or fails."""
        return await self.send(calls.resume(run_id, response, idempotency_key or new_key()))

    async def resume_stream(self, run_id: str, response: Mapping[str, Any] | str, *,
                      idempotency_key: str | None = None) -> AsyncEventStream:
        """Answer a paused run's gate and follow its events until it pauses again or ends."""
        paused_at = (await self.get_run(run_id)).last_event_id  # a broken stream goes on from here
        first = calls.resume_stream(run_id, response, idempotency_key or new_key())
        return AsyncEventStream(self, Cursor(first, run_id=run_id, after=paused_at))

    def events(self, run_id: str, *, after: int = 0) -> AsyncEventStream:
        """The run's events after `after`, then the live run until it pauses or ends."""
        return AsyncEventStream(self, Cursor(calls.events(run_id, after), run_id=run_id, after=after))

    async def get_run(self, run_id: str) -> RunDetail:
        return await self.send(calls.get_run(run_id))

    async def list_runs(self, orchestration_id: str | None = None, status: RunStatus | None = None, *, limit: int = 50,
                  cursor: str | None = None) -> RunPage:
        return await self.send(calls.list_runs(orchestration_id, status, limit, cursor))

    async def iter_runs(self, orchestration_id: str | None = None, status: RunStatus | None = None, *,
                        page_size: int = 50) -> AsyncIterator[Any]:
        """Every run, newest first, page after page."""
        cursor: str | None = None
        while True:
            page = await self.list_runs(orchestration_id, status, limit=page_size, cursor=cursor)
            for run in page.runs:
                yield run
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def cancel(self, run_id: str) -> RunResult:
        return await self.send(calls.cancel(run_id))

    # -- transport -------------------------------------------------------------------------

    async def send(self, call: Call[T]) -> T:
        backoff = Backoff(self.reconnect_timeout)
        while True:
            try:
                r = await self._http.request(call.method, call.path, **request_options(self._headers, call))
                if not (call.retry and r.status_code in RETRIED_STATUSES):
                    return call.parse(r.status_code, r.content, r.headers)
                failure: Exception = error_for(r.status_code, r.content, r.headers)
            except httpx.TransportError as exc:
                if not call.retry:
                    raise
                failure = exc
            wait = backoff.next()
            if wait is None:
                raise failure
            await asyncio.sleep(wait)

    async def _follow(self, cursor: Cursor) -> AsyncGenerator[Event, None]:
        backoff = Backoff(self.reconnect_timeout)
        call = cursor.first
        timeout = httpx.Timeout(self._http.timeout.connect, read=STREAM_READ_TIMEOUT)
        while True:
            try:
                async with self._http.stream(call.method, call.path, timeout=timeout,
                                       **request_options(self._headers, call)) as r:
                    if r.status_code != 200:
                        await r.aread()
                        if r.status_code not in RETRIED_STATUSES:
                            raise error_for(r.status_code, r.content, r.headers)
                        raise Retry()
                    parser = SSEParser()
                    async for chunk in r.aiter_bytes():
                        for event in cursor.accept(parser.feed(chunk)):
                            backoff.reset()
                            yield event
                if cursor.done:
                    return
            except (httpx.TransportError, Retry):
                pass
            wait = backoff.next()
            if wait is None:
                raise StreamInterrupted(f"the event stream broke and could not be resumed within "
                                        f"{self.reconnect_timeout:g}s", run_id=cursor.run_id,
                                        last_event_id=cursor.last)
            await asyncio.sleep(wait)
            call = cursor.resume_call()
