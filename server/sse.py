"""Server-sent events framing: `id: <seq>` and one `data: <json>` line per event, no `event:`
line (so `EventSource.onmessage` sees every event), and a `: ping` comment on idle streams."""

from __future__ import annotations

from typing import AsyncIterator

from litestar.response import Stream

from orch.server.feed import RunFeed

PING = b": ping\n\n"
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
MEDIA_TYPE = "text/event-stream"


def frame(seq: int, body: bytes) -> bytes:
    """One event. Encoded JSON never contains a raw newline, so one data line carries it."""
    return b"id: %d\ndata: %s\n\n" % (seq, body)


async def frames(feed: RunFeed) -> AsyncIterator[bytes]:
    async for item in feed:
        yield PING if item is None else frame(*item)


def event_stream(feed: RunFeed) -> Stream:
    return Stream(frames(feed), media_type=MEDIA_TYPE, headers=HEADERS)
