"""Bearer API keys: stored as sha256 hashes, compared in constant time against every known hash.

Keys come from three places: the `api_keys` given to `create_app`, the `ORCH_API_KEYS`
environment variable (comma-separated) and the store's `api_keys` table (written by the CLI).
Stored hashes are re-read every few seconds, so a key added while the server runs works without
a restart. With no key anywhere the server refuses to start, unless the operator explicitly
allows unauthenticated local use; then every request passes until a key appears.

A browser signed in to the console (server.sessions) may also read the API with its session
cookie: GET requests only (the event stream, which `EventSource` cannot send a header with,
and lists), so no request that changes anything is ever authorised by a cookie.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import secrets
import time
from typing import Any, Awaitable, Callable, Iterable

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers import BaseRouteHandler

from orch.server.sessions import COOKIE, Session, SessionSigner

KEY_PREFIX = "orch_"


class NoApiKeyConfigured(RuntimeError):
    """Starting without any API key and without the explicit unauthenticated opt-in."""


def generate_key() -> str:
    """A new random API key (shown once; only its hash is kept)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def env_keys(env: dict[str, str] | None = None) -> list[str]:
    raw = (os.environ if env is None else env).get("ORCH_API_KEYS", "")
    return [k.strip() for k in raw.split(",") if k.strip()]


class KeyRing:
    """The hashes a presented key is checked against."""

    def __init__(self, keys: Iterable[str], load_stored: Callable[[], Awaitable[list[str]]],
                 *, allow_unauthenticated: bool = False, refresh_seconds: float = 5.0) -> None:
        self._static = [hash_key(k) for k in keys]
        self._load_stored = load_stored
        self._stored: list[str] = []
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()
        self.allow_unauthenticated = allow_unauthenticated
        self.refresh_seconds = refresh_seconds

    @property
    def hashes(self) -> list[str]:
        return self._static + self._stored

    async def refresh(self, *, force: bool = False) -> None:
        if not force and time.monotonic() - self._loaded_at < self.refresh_seconds:
            return
        async with self._lock:
            if force or time.monotonic() - self._loaded_at >= self.refresh_seconds:
                self._stored = [h.strip().lower() for h in await self._load_stored()]
                self._loaded_at = time.monotonic()

    async def require_some_key(self) -> None:
        await self.refresh(force=True)
        if not self.hashes and not self.allow_unauthenticated:
            raise NoApiKeyConfigured(
                "no API key is configured: create one with `orch keys create`, pass keys in "
                "ORCH_API_KEYS (comma-separated), or start with --allow-unauthenticated for local use"
            )

    async def verify(self, key: str) -> bool:
        return await self.knows_hash(hash_key(key))

    async def knows_hash(self, key_hash: str) -> bool:
        await self.refresh()
        presented = key_hash.encode()
        match = False
        for known in self.hashes:  # no early exit: the time taken does not depend on which key matched
            match |= hmac.compare_digest(known.encode(), presented)
        return match

    @property
    def open(self) -> bool:
        """Unauthenticated use was allowed (local mode: loopback only, whatever keys exist)."""
        return self.allow_unauthenticated


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


async def session_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Session | None:
    """The console session of this request's cookie, if it is valid and its key still known."""
    token = connection.cookies.get(COOKIE)
    if not token:
        return None
    signer: SessionSigner = connection.app.state.sessions
    session = signer.verify(token)
    if session is None or not await connection.app.state.keyring.knows_hash(session.key_hash):
        return None
    return session


async def require_api_key(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard of every /api/v1 route except /health."""
    keyring: KeyRing = connection.app.state.keyring
    await keyring.refresh()
    if keyring.open:
        return
    header = connection.headers.get("authorization")
    if header is None and connection.scope.get("method") in ("GET", "HEAD") and await session_of(connection):
        return
    token = bearer_token(header)
    challenge = {"WWW-Authenticate": "Bearer"}
    if token is None:
        detail = ("the Authorization header must read 'Bearer <key>'" if header
                  else "missing API key: send the header 'Authorization: Bearer <key>'")
        raise NotAuthorizedException(detail, headers=challenge)
    if not await keyring.verify(token):
        raise NotAuthorizedException("invalid API key", headers=challenge)
