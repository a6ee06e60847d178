"""Log lines as structured events (structlog): JSON for machines, or coloured key=value lines
for people; the standard library's loggers (ours, uvicorn's) go through the same formatter.

Secrets never reach the output: fields whose name says they hold one (authorization, api_key,
password, secret, token, cookie) are masked, and the values of the configured secrets (API keys,
provider keys, the session secret, the database password) are masked wherever they appear.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any, Iterable, Literal, TextIO

import structlog
from structlog.typing import EventDict, WrappedLogger

MASK = "********"
_SECRET_FIELD = re.compile(r"authorization|api_?key|password|passwd|secret|token|cookie", re.I)
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class Scrub:
    """A processor masking secret fields and secret values."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self.secrets:
            if secret in value:
                value = value.replace(secret, MASK)
        return value

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: MASK if isinstance(k, str) and _SECRET_FIELD.search(k) else self.value(v)
                    for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(v) for v in value]
        return value

    def __call__(self, logger: WrappedLogger, name: str, event: EventDict) -> EventDict:
        for key, value in list(event.items()):
            if key in ("_record", "_from_structlog"):
                continue
            event[key] = MASK if _SECRET_FIELD.search(key) and value is not None else self.value(value)
        return event


_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def get_logger(name: str) -> Any:
    """A structlog logger writing through the standard library's logger `name`: silent (below
    warnings) until `configure_logging` installs the handler, and captured by pytest's caplog.
    Independent of structlog's global configuration, which embedding programs may own."""
    return structlog.wrap_logger(
        logging.getLogger(name),
        processors=[structlog.stdlib.filter_by_level, *_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.stdlib.BoundLogger,
    )


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Ours, so that configuring again replaces it and leaves other handlers alone."""


def configure_logging(fmt: Literal["console", "json"] = "console", level: str = "info", *,
                      secrets: Iterable[str] = (), stream: TextIO | None = None) -> None:
    """Send every log event, structlog's and the standard library's, to `stream` (standard error)
    as JSON lines or console lines, at `level` and above."""
    out = stream or sys.stderr
    scrub = Scrub(secrets)
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
        final: list[Any] = [structlog.processors.format_exc_info, scrub, renderer]
    else:
        colors = bool(getattr(out, "isatty", lambda: False)())
        final = [scrub, structlog.dev.ConsoleRenderer(colors=colors)]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )
    handler = _Handler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(_LEVELS.get(level, logging.INFO))
    # uvicorn's loggers go through ours; its access lines are replaced by orch.http's (request ids).
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per vendor request is noise
