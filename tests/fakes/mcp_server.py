"""An MCP server written with the official SDK, for the MCP client tests.

    python tests/fakes/mcp_server.py                 # stdio
    python tests/fakes/mcp_server.py --http PORT     # streamable HTTP at http://127.0.0.1:PORT/mcp
    python tests/fakes/mcp_server.py --sse PORT      # the older SSE transport at /sse

With `--token T` the HTTP transports answer 401 unless the request carries `Bearer T`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any, TypedDict

from mcp.server.mcpserver import Context, MCPServer


class Forecast(TypedDict):
    city: str
    celsius: int
    sky: str


app = MCPServer("weather")


@app.tool()
def forecast(city: str) -> Forecast:
    """Tomorrow's weather in a city."""
    return Forecast(city=city, celsius=len(city) + 10, sky="clear")


@app.tool()
def add(a: int, b: int) -> str:
    """Add two numbers."""
    return str(a + b)


@app.tool()
def pid() -> str:
    """The process id of this server."""
    return str(os.getpid())


@app.tool()
def environment() -> list[str]:
    """The names of this server's environment variables."""
    return sorted(os.environ)


@app.tool()
def attempt(ctx: Context) -> str:
    """The idempotency key the caller sent with this call."""
    meta: Any = ctx.request_context.meta or {}
    return str(meta.get("orch/idempotency-key", ""))


@app.tool()
async def wait(seconds: float) -> str:
    """Sleep, then answer."""
    await asyncio.sleep(seconds)
    return f"waited {seconds}"


@app.tool()
def fail(reason: str) -> str:
    """Always fails."""
    raise ValueError(reason)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int)
    parser.add_argument("--sse", type=int)
    parser.add_argument("--token")
    args = parser.parse_args()
    if args.http is None and args.sse is None:
        print("weather MCP server on stdio", file=sys.stderr, flush=True)
        app.run()
        return
    import uvicorn
    from starlette.types import ASGIApp, Receive, Scope, Send

    web = app.streamable_http_app() if args.http is not None else app.sse_app()

    def guarded(inner: ASGIApp) -> ASGIApp:
        async def guard(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and args.token:
                headers = dict(scope["headers"])
                if headers.get(b"authorization") != f"Bearer {args.token}".encode():
                    await send({"type": "http.response.start", "status": 401, "headers": []})
                    await send({"type": "http.response.body", "body": b"bad token"})
                    return
            await inner(scope, receive, send)
        return guard

    uvicorn.run(guarded(web), host="127.0.0.1", port=args.http or args.sse, log_level="warning")


if __name__ == "__main__":
    main()
