"""Exceptions to HTTP responses, in one place. Every error body is `{"detail": "..."}`.

    400  a body that is not JSON or does not fit the request schema; bad query/header values
    401  missing or unknown API key (raised by server.auth)
    404  unknown orchestration, run or agent (RunNotFound)
    409  the run is not in a state that allows the action (NotPaused)
    422  input that fails validation: initial state, gate answers (with per-field `fields`),
         definitions, values that do not fit a state key, an Idempotency-Key reused for a
         different request
    500  only for bugs; the body never carries internals
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec

from orch.errors import (
    DefinitionError, EngineError, IdempotencyConflict, InvalidAnswer, InvalidInput, NotPaused, RunFenced,
    RunNotFound, RunStateError, StateWriteError,
)
from orch.server.schemas import ErrorBody

log = logging.getLogger("orch.server")


HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 409: "conflict", 413: "body_too_large", 415: "unsupported_media_type",
              422: "invalid", 429: "too_many_requests", 500: "internal", 503: "unavailable"}


def error_response(status: int, detail: str, *, code: str | None = None, fields: dict[str, str] | None = None,
                   headers: Mapping[str, str] | None = None) -> Response[ErrorBody]:
    body = ErrorBody(detail=detail, code=code or HTTP_CODES.get(status, f"http_{status}"),
                     fields=fields if fields is not None else msgspec.UNSET)
    return Response(body, status_code=status, media_type=MediaType.JSON, headers=dict(headers or {}))


def _validation_detail(exc: ValidationException) -> str:
    """One sentence from Litestar's per-parameter messages (which come from msgspec)."""
    items = exc.extra if isinstance(exc.extra, list) else []
    parts = []
    for item in items:
        if not isinstance(item, dict):
            continue
        key, message = str(item.get("key", "")), str(item.get("message", ""))
        source = getattr(item.get("source"), "value", item.get("source"))
        if source == "body" and key == "data":
            parts.append("a JSON request body is required" if message == repr(key) else f"request body: {message}")
        elif source == "body":
            parts.append(f"request body at $.{key}: {message}")
        elif source == "header":  # the field name, spelled as the header the client sent
            parts.append(f"header '{key.replace('_', '-')}': {message}")
        else:
            parts.append(f"{source or 'request'} parameter '{key}': {message}")
    return "; ".join(parts) or str(exc.detail)


def _http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorBody]:
    if isinstance(exc, ValidationException):
        return error_response(400, _validation_detail(exc))
    return error_response(exc.status_code, str(exc.detail), headers=exc.headers)


def _not_found(request: Request[Any, Any, Any], exc: RunNotFound) -> Response[ErrorBody]:
    return error_response(404, exc.message, code=exc.code)


def _conflict(request: Request[Any, Any, Any], exc: RunStateError) -> Response[ErrorBody]:
    return error_response(409, exc.message, code=exc.code)


def _invalid_answer(request: Request[Any, Any, Any], exc: InvalidAnswer) -> Response[ErrorBody]:
    return error_response(422, f"invalid answer: {exc.message}", code=exc.code, fields=dict(exc.field_errors))


def _unprocessable(request: Request[Any, Any, Any], exc: EngineError) -> Response[ErrorBody]:
    return error_response(422, exc.message, code=exc.code)


def _bad_body(request: Request[Any, Any, Any], exc: msgspec.MsgspecError) -> Response[ErrorBody]:
    return error_response(400, f"invalid request body: {exc}", code="invalid_body")


def _too_deep(request: Request[Any, Any, Any], exc: RecursionError) -> Response[ErrorBody]:
    return error_response(400, "invalid request body: it nests too deeply", code="invalid_body")


def _internal(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal server error", code="internal")


EXCEPTION_HANDLERS: dict[type[Exception], Any] = {
    HTTPException: _http,
    RunNotFound: _not_found,
    NotPaused: _conflict,
    RunFenced: _conflict,
    InvalidAnswer: _invalid_answer,
    InvalidInput: _unprocessable,
    IdempotencyConflict: _unprocessable,
    StateWriteError: _unprocessable,
    DefinitionError: _unprocessable,
    msgspec.MsgspecError: _bad_body,
    RecursionError: _too_deep,
    Exception: _internal,
}

_MEANINGS = {
    400: "The body is not JSON or does not fit the request schema, or a parameter is invalid",
    401: "Missing or invalid API key",
    404: "No such orchestration, run or agent",
    409: "The run is not in a state that allows this action",
    422: "The input failed validation; `fields` names each bad field of a gate answer",
}


def error_responses(*codes: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the error statuses an /api/v1 route can answer with; 400 and 401 always."""
    return {c: ResponseSpec(ErrorBody, description=_MEANINGS[c], generate_examples=False)
            for c in sorted({400, 401, *codes})}
