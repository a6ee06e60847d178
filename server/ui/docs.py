"""The API documentation page at /schema, working offline: Swagger UI's files come from the
installed `swagger-ui-py` package (Swagger UI 5, which reads OpenAPI 3.1) and are served by
this server, never from a CDN."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from litestar import Router
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.static_files import create_static_files_router

ASSETS = "/schema/assets"


def swagger_files() -> Path:
    """Swagger UI's folder inside the installed package (found without importing it, which
    would import its web-framework adapters)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is not installed (pip install swagger-ui-py)")
    return Path(list(spec.submodule_search_locations)[0]) / "static"


def swagger_plugin() -> SwaggerRenderPlugin:
    return SwaggerRenderPlugin(
        js_url=f"{ASSETS}/swagger-ui-bundle.js", css_url=f"{ASSETS}/swagger-ui.css",
        standalone_preset_js_url=f"{ASSETS}/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' type='image/png' href='{ASSETS}/favicon-32x32.png'>",
    )


def swagger_assets() -> Router:
    return create_static_files_router(path=ASSETS, directories=[swagger_files()], include_in_schema=False,
                                      name="swagger-assets")
