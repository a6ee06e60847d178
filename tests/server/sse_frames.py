"""Reading an SSE body the way a strict client does, checking the framing on the way."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable

import httpx


@dataclass
class SSEBody:
    events: list[dict[str, Any]] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    pings: int = 0

    @property
    def types(self) -> list[str]:
        return [e["type"] for e in self.events]


def parse(raw: bytes) -> SSEBody:
    """Every block is either a `: ping` comment or exactly `id: <seq>` + `data: <json>`."""
    assert raw.endswith(b"\n\n") or raw == b"", raw[-80:]
    body = SSEBody()
    for block in raw.split(b"\n\n")[:-1]:
        lines = block.decode("utf-8").split("\n")
        if lines == [": ping"]:
            body.pings += 1
            continue
        assert len(lines) == 2 and lines[0].startswith("id: ") and lines[1].startswith("data: "), lines
        event = json.loads(lines[1][len("data: "):])
        assert {"type", "run_id", "seq", "ts"} <= event.keys(), event
        assert int(lines[0][len("id: "):]) == event["seq"]
        body.ids.append(event["seq"])
        body.events.append(event)
    assert b"event:" not in raw
    return body


def read(client: httpx.Client, method: str, url: str, **kw: Any) -> tuple[httpx.Response, SSEBody]:
    with client.stream(method, url, **kw) as response:
        raw = response.read()
    if response.status_code != 200:
        return response, SSEBody()
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    return response, parse(raw)


def in_order(types: Iterable[str], expected: list[str]) -> bool:
    """`expected` appears in `types` as a subsequence."""
    it = iter(types)
    return all(any(t == e for t in it) for e in expected)
