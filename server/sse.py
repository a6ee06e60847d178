"""Server-sent events framing: `id: <seq>` and one `data: <json>` line per event, no `event:`
line (so `EventSource.onmessage` sees every event), and a `: ping` comment on idle streams."""

from __future__ import annotations

from typing import Any, AsyncIterator, cast

from litestar import Litestar
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIType, Reference, Schema
from litestar.response import Stream

from orch.events import AnyEvent
from orch.observe.metrics import STREAMS_OPEN
from orch.server.feed import RunFeed

PING = b": ping\n\n"
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
MEDIA_TYPE = "text/event-stream"
# The OpenAPI entry of a stream's 200 response: each `data:` line holds one of these events.
EVENT_STREAM = {200: ResponseSpec(cast(Any, AnyEvent), media_type=MEDIA_TYPE, generate_examples=False,
                                  description="Server-sent events: `id: <seq>` and one `data:` line of JSON per "
                                              "event, each one of these shapes (told apart by `type`)")}


def document_event_streams(app: Litestar) -> None:
    """Describe each event of every stream the way OpenAPI 3.1 tools read `text/event-stream`:
    the schema is one event's fields (`id`, `data`), and `data` holds JSON of the documented
    shapes (`contentSchema`). Runs at startup, on the document Litestar generated."""
    for item in (app.openapi_schema.paths or {}).values():
        for operation in (item.get, item.post):
            response = (operation.responses or {}).get("200") if operation else None
            content = getattr(response, "content", None) or {}
            media = content.get(MEDIA_TYPE)
            if media is None or not isinstance(media.schema, (Schema, Reference)):
                continue
            if isinstance(media.schema, Schema) and media.schema.properties and "data" in media.schema.properties:
                continue  # already described
            media.schema = Schema(type=OpenAPIType.OBJECT, required=["id", "data"], properties={
                "id": Schema(type=OpenAPIType.STRING, description="The event's `seq`; EventSource sends the last "
                                                                   "one back as Last-Event-ID when it reconnects"),
                "data": Schema(type=OpenAPIType.STRING, content_media_type="application/json",
                               content_schema=media.schema),
            })


def frame(seq: int, body: bytes) -> bytes:
    """One event. Encoded JSON never contains a raw newline, so one data line carries it."""
    return b"id: %d\ndata: %s\n\n" % (seq, body)


async def frames(feed: RunFeed) -> AsyncIterator[bytes]:
    STREAMS_OPEN.inc()
    try:
        async for item in feed:
            yield PING if item is None else frame(*item)
    finally:
        STREAMS_OPEN.dec()


def event_stream(feed: RunFeed) -> Stream:
    return Stream(frames(feed), media_type=MEDIA_TYPE, headers=HEADERS)
