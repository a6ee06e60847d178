"""A Python client of the orchestration API: `Client` (blocking) and `AsyncClient` (asyncio).

Results are the msgspec Structs the server answers with (orch.wire, orch.run.results,
orch.definition.spec), events those of orch.events; errors one exception per status
(orch.client.errors). Event streams reconnect with `Last-Event-ID` and pass on every event once,
in order. This package never imports the server. See docs/client.md.
"""

from orch.client.aio import AsyncClient, AsyncEventStream
from orch.client.errors import (
    ApiError, BadRequest, ClientError, Conflict, Forbidden, NotFound, PayloadTooLarge, ServerError, StreamInterrupted,
    TooManyRequests, Unauthorized, Unavailable, Unprocessable,
)
from orch.client.streams import UnknownEvent
from orch.client.sync import Client, EventStream

__all__ = [
    "ApiError", "AsyncClient", "AsyncEventStream", "BadRequest", "Client", "ClientError", "Conflict", "EventStream",
    "Forbidden", "NotFound", "PayloadTooLarge", "ServerError", "StreamInterrupted", "TooManyRequests", "Unauthorized",
    "Unavailable", "UnknownEvent", "Unprocessable",
]
