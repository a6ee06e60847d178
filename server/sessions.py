"""Browser sign-in: a signed token in an HttpOnly cookie, never the API key itself.

Signing in with an API key gives a token naming the key's hash, an expiry and a random nonce,
signed with HMAC-SHA256 under the server's session secret. Each request checks the signature,
the expiry, and that the key is still known (a key removed from the store ends its sessions).
Signing out forgets the cookie and refuses its nonce in this process until it expires.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import msgspec

COOKIE = "orch_session"
LIFETIME_SECONDS = 12 * 3600
MIN_SECRET_LENGTH = 16


class SessionSecretTooShort(ValueError):
    """ORCH_SESSION_SECRET is too short to sign anything."""


@dataclass(frozen=True)
class Session:
    key_hash: str
    expires: float
    nonce: str


class _Body(msgspec.Struct, array_like=True):
    key_hash: str
    expires: float
    nonce: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    def __init__(self, secret: str | None) -> None:
        if secret is not None and len(secret) < MIN_SECRET_LENGTH:
            raise SessionSecretTooShort(f"ORCH_SESSION_SECRET must be at least {MIN_SECRET_LENGTH} characters "
                                        f"long (it has {len(secret)})")
        self._key = hashlib.sha256((secret or secrets.token_hex(32)).encode()).digest()
        self._revoked: dict[str, float] = {}  # nonce → expiry

    @property
    def csrf_secret(self) -> str:
        """A secret for CSRF tokens, derived from the session secret (the same on every worker)."""
        return hmac.new(self._key, b"csrf", hashlib.sha256).hexdigest()

    def issue(self, key_hash: str, *, now: float | None = None) -> str:
        body = _Body(key_hash, (now or time.time()) + LIFETIME_SECONDS, secrets.token_urlsafe(12))
        payload = _b64(msgspec.json.encode(body))
        return f"{payload}.{self._mac(payload)}"

    def verify(self, token: str, *, now: float | None = None) -> Session | None:
        payload, _, mac = token.partition(".")
        if not payload or not hmac.compare_digest(mac, self._mac(payload)):
            return None
        try:
            body = msgspec.json.decode(_unb64(payload), type=_Body)
        except (ValueError, msgspec.DecodeError):
            return None
        if body.expires <= (now or time.time()) or body.nonce in self._revoked:
            return None
        return Session(body.key_hash, body.expires, body.nonce)

    def revoke(self, session: Session) -> None:
        now = time.time()
        self._revoked = {n: exp for n, exp in self._revoked.items() if exp > now}
        self._revoked[session.nonce] = session.expires

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())
