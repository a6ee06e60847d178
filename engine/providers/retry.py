"""One vendor HTTP call, and which of its failures are worth retrying.

Every failure becomes a `ProviderError` carrying the provider, the model and the HTTP status.
Transient failures are marked `retryable` so a step's retry policy may try again:

    429 rate limited, 408 request timeout, 5xx (Anthropic's 529 "overloaded" among them)
    timeouts, refused or dropped connections
    a 200 whose body is not the documented shape (vendors occasionally glitch)

Any other 4xx means the request itself is wrong and would fail the same way again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import httpx
import msgspec

from orch.errors import ProviderError

_SNIPPET = 200


def is_retryable_status(status: int) -> bool:
    return status in (408, 429) or status >= 500


def vendor_message(body: bytes) -> str | None:
    """The human-readable message of a vendor error body, when there is one.

    Understands OpenAI's and Anthropic's `{"error": {"message", "type"}}`, plus the shapes
    some OpenAI-compatible servers use instead (`{"error": "text"}`, `{"message": "text"}`).
    """
    try:
        data: Any = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None
    if not isinstance(data, dict):
        return None
    error = data.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        kind = error.get("type")
        text: str = error["message"]
        return f"{text} [{kind}]" if isinstance(kind, str) and kind else text
    if isinstance(error, str):
        return error
    message = data.get("message")
    return message if isinstance(message, str) else None


def snippet(body: bytes) -> str:
    text = body.decode("utf-8", errors="replace").strip()
    return text if len(text) <= _SNIPPET else text[:_SNIPPET] + "…"


def status_error(response: httpx.Response, *, provider: str, model: str) -> ProviderError:
    status = response.status_code
    body = response.content
    message = vendor_message(body)
    if message is None:
        message = response.reason_phrase or "HTTP error"
        if body.strip():
            message += f": {snippet(body)}"
    retry_after = response.headers.get("retry-after")
    if retry_after is not None and is_retryable_status(status):
        message += f" (retry after {retry_after} s)"
    return ProviderError(
        message, provider=provider, model=model, status=status, retryable=is_retryable_status(status)
    )


def malformed_error(detail: str, *, provider: str, model: str, status: int = 200) -> ProviderError:
    return ProviderError(
        f"malformed response: {detail}", provider=provider, model=model, status=status, retryable=True
    )


async def post_json(
    client: httpx.AsyncClient,
    url: str,
    *,
    body: Any,
    headers: Mapping[str, str],
    timeout: float,
    provider: str,
    model: str,
) -> bytes:
    """POST `body` as JSON and return the raw 2xx response body; raise ProviderError otherwise.

    `timeout` bounds the whole exchange, not only each read, so a server that trickles bytes
    cannot hold a step past its budget.
    """
    content = msgspec.json.encode(body)
    all_headers = {"content-type": "application/json", "accept": "application/json", **headers}
    try:
        async with asyncio.timeout(timeout):
            response = await client.post(
                url, content=content, headers=all_headers, timeout=httpx.Timeout(timeout)
            )
    except (TimeoutError, httpx.TimeoutException) as exc:
        raise ProviderError(
            f"timed out after {timeout:g} s", provider=provider, model=model, retryable=True
        ) from exc
    except httpx.TransportError as exc:
        detail = str(exc) or type(exc).__name__
        raise ProviderError(
            f"request to {url} failed: {detail}", provider=provider, model=model, retryable=True
        ) from exc
    if not response.is_success:
        raise status_error(response, provider=provider, model=model)
    return response.content
