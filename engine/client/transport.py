"""What both clients share about sending: headers, timeouts, and waiting between attempts."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import httpx

from orch.client.calls import Call

DEFAULT_TIMEOUT = httpx.Timeout(30.0, read=600.0)  # a run answers when it pauses or ends
STREAM_READ_TIMEOUT = 60.0  # idle streams get a ping every 15 s


class Retry(Exception):
    """A status worth trying again (502, 503, 504)."""


def request_options(base_headers: Mapping[str, str], call: Call[Any]) -> dict[str, Any]:
    headers = {**base_headers, **call.headers}
    if call.body is not None:
        headers["Content-Type"] = "application/json"
    return {"params": dict(call.params), "content": call.content, "headers": headers}


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class Backoff:
    """Waits between attempts, within `limit` seconds of the first failure since the last success."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.since: float | None = None
        self.delay = 0.1

    def reset(self) -> None:
        self.since, self.delay = None, 0.1

    def next(self) -> float | None:
        """Seconds to wait before the next attempt; None when time is up."""
        now = time.monotonic()
        if self.since is None:
            self.since = now
        if now - self.since >= self.limit:
            return None
        wait, self.delay = self.delay, min(self.delay * 2, 2.0)
        return min(wait, self.limit - (now - self.since))
