"""The client's exceptions: one class per status the API answers with.

    ClientError
    ├── ApiError                 the server answered with an error status (`status`, `detail`, `code`)
    │   ├── BadRequest             400  the body or a parameter does not fit the API
    │   ├── Unauthorized           401  missing or unknown API key
    │   ├── Forbidden              403
    │   ├── NotFound               404  no such orchestration, run or agent
    │   ├── Conflict               409  the run's status does not allow the action
    │   ├── PayloadTooLarge        413
    │   ├── Unprocessable          422  input failed validation; `fields` names each bad gate field
    │   ├── TooManyRequests        429
    │   ├── ServerError            500 and any other 5xx
    │   └── Unavailable            503  the server (or its database) is not available
    └── StreamInterrupted        an event stream could not be resumed within `reconnect_timeout`
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec


class ClientError(Exception):
    """Root of the client's exceptions (transport failures that are not retried stay httpx's)."""


class ApiError(ClientError):
    status = 0

    def __init__(self, status: int, detail: str, *, code: str = "", fields: Mapping[str, str] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status}: {detail}")
        self.status, self.detail, self.code = status, detail, code
        self.fields = dict(fields or {})
        self.headers = dict(headers or {})


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class PayloadTooLarge(ApiError):
    status = 413


class Unprocessable(ApiError):
    status = 422


class TooManyRequests(ApiError):
    status = 429


class ServerError(ApiError):
    status = 500


class Unavailable(ServerError):
    status = 503


class StreamInterrupted(ClientError):
    """The stream broke and could not be resumed in time; `last_event_id` is where it stood."""

    def __init__(self, message: str, *, run_id: str | None, last_event_id: int) -> None:
        super().__init__(message)
        self.run_id, self.last_event_id = run_id, last_event_id


BY_STATUS: dict[int, type[ApiError]] = {
    cls.status: cls for cls in (BadRequest, Unauthorized, Forbidden, NotFound, Conflict, PayloadTooLarge,
                                Unprocessable, TooManyRequests, ServerError, Unavailable)
}


class _Body(msgspec.Struct):
    detail: str = ""
    code: str = ""
    fields: dict[str, str] = {}


def error_for(status: int, content: bytes, headers: Mapping[str, str] | None = None) -> ApiError:
    """The exception for an error response (`{"detail", "code", "fields"}`, or any other body)."""
    try:
        body = msgspec.json.decode(content, type=_Body)
        detail = body.detail or content.decode("utf-8", "replace")
    except (msgspec.DecodeError, msgspec.ValidationError):
        body, detail = _Body(), content.decode("utf-8", "replace").strip() or f"HTTP {status}"
    cls = BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
    return cls(status, detail, code=body.code, fields=body.fields, headers=headers)
