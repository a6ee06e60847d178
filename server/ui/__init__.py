"""The console: server-rendered pages at /ui to start runs, watch them live, answer gates,
see graphs and validate files. Jinja2 templates, one stylesheet, a little JavaScript for the
live parts (EventSource), no CDN and no build step.

    access.py         sign-in/out, the guard of every page, error pages
    orchestrations.py the orchestrations, their graphs, the start form
    runs.py           the run list and one run as it goes
    gates.py          the gate inbox
    validate.py       checking a pasted or uploaded graph file
    forms.py          forms generated from state_schema and human_fields
    queries.py        every store read the console makes
    rendering.py      templates and the context every page shares
    docs.py           /schema with Swagger UI served from the installed package
"""

from __future__ import annotations

from litestar import Router, get
from litestar.config.csrf import CSRFConfig
from litestar.middleware import DefineMiddleware
from litestar.middleware.csrf import CSRFMiddleware
from litestar.response import Redirect
from litestar.static_files import create_static_files_router

from orch.server.ui import access, gates, orchestrations, runs, validate
from orch.server.ui.rendering import PREFIX, STATIC

CSRF_COOKIE = "orch_csrf"


def console_router(csrf_secret: str) -> Router:
    """Every console route under /ui; pages need a session (or local mode), forms a CSRF token."""
    csrf = CSRFConfig(secret=csrf_secret, cookie_name=CSRF_COOKIE, cookie_path=PREFIX, cookie_httponly=True,
                      cookie_samesite="lax")
    pages = Router(path="/", guards=[access.require_console_session], route_handlers=[
        orchestrations.orchestrations_page, orchestrations.orchestration_page, orchestrations.start_run,
        runs.runs_page, runs.run_page, runs.run_part, runs.cancel_run,
        gates.gates_page, gates.answer_gate, validate.validate_page, validate.validate_file,
        access.sign_out,
    ])
    static = create_static_files_router(path="/static", directories=[STATIC], include_in_schema=False,
                                        name="console-static")
    return Router(path=PREFIX, include_in_schema=False, middleware=[DefineMiddleware(CSRFMiddleware, config=csrf)],
                  exception_handlers=access.EXCEPTION_HANDLERS,  # type: ignore[arg-type]
                  route_handlers=[pages, access.sign_in_page, access.sign_in, static])


@get("/", include_in_schema=False)
async def root() -> Redirect:
    return Redirect(PREFIX, status_code=302)


@get("/docs", include_in_schema=False)
async def docs() -> Redirect:
    return Redirect("/schema", status_code=302)


redirects = [root, docs]
