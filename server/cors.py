"""CORS for the API: only for the origins the operator lists in ORCH_CORS_ORIGINS.

Pages on those origins call the API with a Bearer key; cookies never cross origins (no
credentials are allowed), so a console session cannot be used from another site.
"""

from __future__ import annotations

import re

from litestar.config.cors import CORSConfig

_ORIGIN = re.compile(r"^https?://[^/\s?#]+$")
ALLOWED_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"]


class BadCorsOrigin(ValueError):
    """An entry of ORCH_CORS_ORIGINS that is not an origin."""


def cors_config(origins: list[str]) -> CORSConfig | None:
    """The CORS policy for `origins` (None: no CORS headers at all). Raises BadCorsOrigin."""
    if not origins:
        return None
    for origin in origins:
        if origin != "*" and not _ORIGIN.match(origin):
            raise BadCorsOrigin(f"ORCH_CORS_ORIGINS: '{origin}' is not an origin; write scheme://host[:port] "
                                "with no path, e.g. https://app.example.com")
    return CORSConfig(allow_origins=[o.rstrip("/") for o in origins], allow_methods=["GET", "POST"],
                      allow_headers=ALLOWED_HEADERS, allow_credentials=False, expose_headers=["WWW-Authenticate"],
                      max_age=600)
