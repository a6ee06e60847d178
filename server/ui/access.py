"""Who may use the console: sign-in with an API key (the browser then holds a session cookie,
HttpOnly and SameSite=Lax, never the key), sign-out, the guard of every page, and error pages.

In local mode (`orch serve --local`) everyone may, and there is nothing to sign in to.
Forms are protected against cross-site requests by the CSRF middleware of the console router.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any
from urllib.parse import quote

from litestar import Request, Response, get, post
from litestar.connection import ASGIConnection
from litestar.enums import RequestEncodingType
from litestar.exceptions import HTTPException, NotAuthorizedException
from litestar.handlers import BaseRouteHandler
from litestar.params import Body, FromQuery
from litestar.response import Redirect, Template

from orch.errors import RunNotFound
from orch.server.auth import hash_key, session_of
from orch.server.sessions import COOKIE, LIFETIME_SECONDS, SessionSigner
from orch.server.ui.rendering import PREFIX, render

log = logging.getLogger("orch.server")
PART_HEADER = "x-console-part"  # sent by the pages' scripts when they fetch a part of a page
Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]


class SignInRequired(NotAuthorizedException):
    """A console page was asked for without a valid session."""


async def require_console_session(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    keyring = connection.app.state.keyring
    await keyring.refresh()
    if keyring.open or await session_of(connection) is not None:
        return
    raise SignInRequired("sign in with an API key to use the console")


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path of this server, never another site."""
    if target and target.startswith(PREFIX) and not target.startswith("//") and "\\" not in target:
        return target
    return PREFIX


@get("/sign-in", name="sign-in")
async def sign_in_page(request: Request[Any, Any, Any], next: FromQuery[str | None] = None) -> Response[Any]:
    if request.app.state.keyring.open or await session_of(request) is not None:
        return Redirect(safe_next(next), status_code=303)
    return await render(request, "sign_in.html", next=safe_next(next), error="", bare=True)


@post("/sign-in", status_code=303)
async def sign_in(request: Request[Any, Any, Any], data: Form) -> Response[Any]:
    keyring = request.app.state.keyring
    key = data.get("api_key", "").strip()
    target = safe_next(data.get("next"))
    if keyring.open:
        return Redirect(target, status_code=303)
    if not key or not await keyring.verify(key):
        error = "Enter an API key." if not key else "That API key is not valid."
        return await render(request, "sign_in.html", status=401, next=target, error=error, bare=True)
    signer: SessionSigner = request.app.state.sessions
    response = Redirect(target, status_code=303)
    response.set_cookie(COOKIE, signer.issue(hash_key(key)), max_age=LIFETIME_SECONDS, path="/", httponly=True,
                        samesite="lax", secure=request.url.scheme == "https")
    return response


@post("/sign-out", status_code=303)
async def sign_out(request: Request[Any, Any, Any]) -> Response[Any]:
    session = await session_of(request)
    if session is not None:
        request.app.state.sessions.revoke(session)
    response = Redirect(f"{PREFIX}/sign-in", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


# -- error pages -----------------------------------------------------------------------------

def _sign_in_required(request: Request[Any, Any, Any], exc: SignInRequired) -> Response[Any]:
    if request.headers.get(PART_HEADER):
        return Response("signed out", status_code=401, media_type="text/plain")
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return Redirect(f"{PREFIX}/sign-in?next={quote(here, safe='')}", status_code=303)


def _error_page(request: Request[Any, Any, Any], status: int, title: str, detail: str) -> Template:
    return Template(template_name="error.html", status_code=status,
                    context={"title": title, "detail": detail, "section": "", "local": True, "gate_count": 0,
                             "path": request.url.path, "bare": True})


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if exc.status_code == 403 and "CSRF" in str(exc.detail):
        return _error_page(request, 403, "This form has expired",
                           "The page was open too long or came from elsewhere. Go back, reload it and send it again.")
    return _error_page(request, exc.status_code, "Something is not right", str(exc.detail))


def _not_found(request: Request[Any, Any, Any], exc: RunNotFound) -> Response[Any]:
    return _error_page(request, 404, "Not found", exc.message)


def _internal(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _error_page(request, 500, "Internal error", "The server could not show this page; the error is in its log.")


EXCEPTION_HANDLERS: dict[type[Exception], Any] = {
    SignInRequired: _sign_in_required,
    HTTPException: _http_error,
    RunNotFound: _not_found,
    Exception: _internal,
}
