"""How a console page is rendered: the template, and the context every page shares (who is
signed in, how many gates wait, asset URLs that change when the asset does)."""

from __future__ import annotations

import datetime as dt
import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any

import msgspec
from jinja2 import Environment, PackageLoader, StrictUndefined
from litestar import Request
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Template
from litestar.template import TemplateConfig

from orch.server.context import ServerContext
from orch.server.ui import queries

PREFIX = "/ui"
STATIC = Path(__file__).parent / "static"
STATUS_WORDS = {"waiting-join": "waiting where branches meet", "waiting-person": "waiting for a person"}


@lru_cache(maxsize=None)
def asset(name: str) -> str:
    """The URL of a static file, with a digest of its content so browsers refetch changed files."""
    digest = hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:10]
    return f"{PREFIX}/static/{name}?v={digest}"


def when(ts: float | None) -> str:
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(ts: float | None) -> str:
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def usd(value: float | None) -> str:
    """Dollars with two decimals, or up to four where cents would hide the amount."""
    if value is None:
        return ""
    if value >= 1:
        return f"${value:,.2f}"
    text = f"{value:.4f}".rstrip("0")
    return "$" + text + "0" * max(0, 2 - len(text.split(".")[1]))


def pretty_json(value: Any) -> str:
    return msgspec.json.format(msgspec.json.encode(value), indent=2).decode()


def environment() -> Environment:
    env = Environment(loader=PackageLoader("orch.server.ui", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(when=when, iso=iso, usd=usd, pretty_json=pretty_json)
    env.globals.update(asset=asset, status_words=STATUS_WORDS)
    return env


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(environment()))


async def render(request: Request[Any, Any, Any], name: str, *, status: int = 200, **context: Any) -> Template:
    """A full page, with what the layout needs."""
    ctx: ServerContext = request.app.state.ctx
    keyring = request.app.state.keyring
    context.setdefault("section", "")
    context.setdefault("bare", False)
    return Template(template_name=name, status_code=status, context={
        **context, "local": keyring.open, "gate_count": await queries.open_gate_count(ctx),
        "path": request.url.path,
    })


def fragment(name: str, **context: Any) -> Template:
    """Part of a page, which the page's script swaps in."""
    return Template(template_name=name, context=context)
