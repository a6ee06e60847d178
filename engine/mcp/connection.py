"""One MCP server's connection: opened on first use, shared by every step, opened again after
the server went away, and closed at shutdown.

The SDK's client lives in anyio task groups that must be left by the task that entered them,
so each connection is held by a task of its own; steps send their requests through it from
their own tasks. A connection is given up when its server closes it (a stdio server's process
ended, a remote server's transport failed) or on `close()`; the next call opens a new one. A
call that was in flight when the server went away fails and is never sent again: the server
may have acted on it (a step's `retry` policy decides).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import IO, Any

import httpx2
import mcp_types
from mcp import Client, MCPError, StdioServerParameters
from mcp.client._transport import Transport, TransportStreams
from mcp.client.sse import sse_client
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._stream_protocols import ReadStream
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.message import SessionMessage
from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT
from typing_extensions import Self

from orch.definition.mcp_servers import McpServer
from orch.errors import ToolError
from orch.mcp.policy import McpPolicy

log = logging.getLogger("orch.mcp")
IDEMPOTENCY_META = "orch/idempotency-key"  # `_meta` key of the attempt identity sent with each call
SESSION_ENDED = "Session terminated"  # the SDK's error when a server answers 404 for our session


class McpUnavailable(ToolError):
    """The server cannot be used: refused by the operator's policy, not reachable, or gone."""


class McpConnection:
    def __init__(self, server: McpServer, policy: McpPolicy) -> None:
        self.server, self.policy = server, policy
        self._live: _Live | None = None
        self._lock = asyncio.Lock()
        self.opened = 0  # connections opened so far (the first, then one per reconnection)

    async def tools(self) -> list[mcp_types.Tool]:
        """The server's tools, listed once per connection."""
        live = await self._open()
        if live.tools is None:
            listed: list[mcp_types.Tool] = []
            cursor: str | None = None
            while True:
                page = await self._request(live, "listing its tools", lambda c: c.list_tools(cursor=cursor))
                listed.extend(page.tools)
                cursor = page.next_cursor
                if not cursor:
                    break
            live.tools = listed
        return live.tools

    async def call(self, tool: str, arguments: dict[str, Any], *, key: str = "",
                   timeout: float | None = None) -> mcp_types.CallToolResult:
        live = await self._open()
        limit = timeout or self.server.timeout_seconds or self.policy.call_timeout_seconds
        meta = {IDEMPOTENCY_META: key} if key else None
        result: mcp_types.CallToolResult = await self._request(live, f"the call of '{tool}'", lambda c: c.call_tool(
            tool, arguments, read_timeout_seconds=limit, meta=meta))  # type: ignore[arg-type]
        return result

    async def close(self) -> None:
        async with self._lock:
            if self._live is not None:
                await self._live.close()
                self._live = None

    async def _open(self) -> _Live:
        live = self._live
        if live is not None and live.usable:
            return live
        async with self._lock:
            if self._live is not None and self._live.usable:
                return self._live
            if self._live is not None:
                await self._live.close()
                self._live = None
            refusal = self.policy.refusal(self.server)
            if refusal is not None:
                raise McpUnavailable(refusal, tool=self.server.name, retryable=False)
            self._live = await _Live.open(self.server, self.policy)
            self.opened += 1
            return self._live

    async def _request(self, live: _Live, what: str, send: Callable[[Client], Awaitable[Any]]) -> Any:
        try:
            try:
                return await send(live.connected)
            except MCPError as exc:
                if exc.error.message != SESSION_ENDED:
                    raise
                # The server no longer knows our session (it restarted) and did not act on the
                # request: open a new session and send it once more.
                live.lost.set()
                live = await self._open()
                return await send(live.connected)
        except MCPError as exc:
            if exc.error.code == CONNECTION_CLOSED:
                live.lost.set()
                if live.task is not None:  # its failure, if the transport failed, says more
                    await asyncio.wait({live.task}, timeout=2)
                if live.error is not None and _unreachable(live.error):
                    raise McpUnavailable(f"MCP server '{self.server.name}' ({self.server.where}) cannot be reached: "
                                         f"{describe_failure(live.error)}", tool=self.server.name) from None
                raise McpUnavailable(f"MCP server '{self.server.name}' closed the connection during {what}"
                                     + live.stderr_tail(), tool=self.server.name) from None
            if exc.error.code == REQUEST_TIMEOUT:
                raise ToolError(f"MCP server '{self.server.name}' did not answer {what} in time",
                                tool=self.server.name) from None
            raise ToolError(f"MCP server '{self.server.name}' refused {what}: {exc.error.message}",
                            tool=self.server.name) from None


class _Live:
    """One open connection and the task that holds it."""

    def __init__(self, server: McpServer) -> None:
        self.server = server
        self.client: Client | None = None  # set once connected
        self.tools: list[mcp_types.Tool] | None = None
        self.ready = asyncio.Event()
        self.lost = asyncio.Event()  # the server closed the connection, or close() was called
        self.error: BaseException | None = None
        self.stderr: IO[str] | None = None
        self.task: asyncio.Task[None] | None = None
        self.closing = False

    @property
    def connected(self) -> Client:
        if self.client is None:
            raise McpUnavailable(f"MCP server '{self.server.name}' closed the connection", tool=self.server.name)
        return self.client

    @property
    def usable(self) -> bool:
        return self.client is not None and not self.lost.is_set()

    @classmethod
    async def open(cls, server: McpServer, policy: McpPolicy) -> _Live:
        live = cls(server)
        live.task = asyncio.create_task(live._hold(policy), name=f"mcp {server.name}")
        try:
            await asyncio.wait_for(live.ready.wait(), policy.connect_timeout_seconds)
        except TimeoutError:
            await live.close()
            raise McpUnavailable(f"MCP server '{server.name}' ({server.where}) did not connect within "
                                 f"{policy.connect_timeout_seconds:g}s" + live.stderr_tail(), tool=server.name) from None
        if live.client is None:
            await live.close()
            raise McpUnavailable(f"MCP server '{server.name}' ({server.where}) cannot be reached: "
                                 f"{describe_failure(live.error)}" + live.stderr_tail(), tool=server.name)
        return live

    async def _hold(self, policy: McpPolicy) -> None:
        try:
            if self.server.server_type == "stdio":
                # The server's stderr goes to a file of ours: its last lines explain a failure.
                self.stderr = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")
                params = StdioServerParameters(command=self.server.command, args=list(self.server.args),
                                               env=policy.environment(self.server))
                await self._serve(stdio_client(params, errlog=self.stderr), policy)
            elif self.server.transport == "sse":
                await self._serve(self._sse(policy), policy)
            else:
                try:
                    await self._serve(self._streamable(policy), policy)
                except Exception as exc:
                    # A server that answered, but not as a streamable HTTP endpoint, may speak the
                    # older SSE transport.
                    if self.server.transport != "auto" or self.client is not None or not _answered(exc):
                        raise
                    log.info("MCP server %s: streamable HTTP refused (%s), trying SSE", self.server.name,
                             describe_failure(exc))
                    if self.closing:
                        raise
                    self.lost.clear()  # set as the refused transport closed
                    await self._serve(self._sse(policy), policy)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported to the steps that use the server
            self.error = exc
            if self.client is not None:
                log.warning("MCP server %s: connection ended: %s", self.server.name, describe_failure(exc))
        finally:
            self.client = None
            self.lost.set()
            self.ready.set()

    async def _serve(self, transport: Transport, policy: McpPolicy) -> None:
        async with Client(_Watched(transport, self.lost), read_timeout_seconds=policy.call_timeout_seconds) as client:
            self.client = client
            self.ready.set()
            await self.lost.wait()

    def _headers(self) -> dict[str, str]:
        headers = dict(self.server.headers)
        if self.server.token:
            headers["Authorization"] = f"Bearer {self.server.token}"
        return headers

    def _streamable(self, policy: McpPolicy) -> Transport:
        timeout = httpx2.Timeout(policy.connect_timeout_seconds, read=policy.call_timeout_seconds)
        http = create_mcp_http_client(headers=self._headers(), timeout=timeout)
        return _closing(streamable_http_client(self.server.url, http_client=http), http)

    def _sse(self, policy: McpPolicy) -> Transport:
        return sse_client(self.server.url, headers=self._headers(), timeout=policy.connect_timeout_seconds,
                          sse_read_timeout=policy.call_timeout_seconds)

    async def close(self) -> None:
        self.closing = True
        self.lost.set()
        if self.task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self.task), 10)
            except (TimeoutError, asyncio.CancelledError):
                self.task.cancel()
                await asyncio.gather(self.task, return_exceptions=True)
        if self.stderr is not None:
            self.stderr.close()
            self.stderr = None

    def stderr_tail(self, lines: int = 3) -> str:
        """`; stderr: …` with the last lines the server wrote there (stdio servers)."""
        if self.stderr is None or self.stderr.closed:
            return ""
        try:
            self.stderr.flush()
            self.stderr.seek(0)
            text = [line.strip() for line in self.stderr.read()[-4000:].splitlines() if line.strip()]
        except (OSError, ValueError):
            return ""
        return f"; its stderr ends: {' | '.join(text[-lines:])}" if text else ""


class _Watched:
    """A transport whose read side sets `lost` when the server closes it."""

    def __init__(self, transport: Transport, lost: asyncio.Event) -> None:
        self._transport, self._lost = transport, lost

    async def __aenter__(self) -> TransportStreams:
        read, write = await self._transport.__aenter__()
        return _EndWatch(read, self._lost), write

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> bool | None:
        return await self._transport.__aexit__(exc_type, exc, tb)


class _EndWatch:
    """A read stream that reports its end."""

    def __init__(self, stream: ReadStream[SessionMessage | Exception], ended: asyncio.Event) -> None:
        self._stream, self._ended = stream, ended

    @property
    def last_context(self) -> Any:  # the SDK reads it where the stream carries one
        return getattr(self._stream, "last_context", None)

    async def receive(self) -> SessionMessage | Exception:
        try:
            return await self._stream.receive()
        except Exception:
            self._ended.set()
            raise

    async def aclose(self) -> None:
        await self._stream.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self._stream.__anext__()
        except (StopAsyncIteration, Exception):
            self._ended.set()
            raise

    async def __aenter__(self) -> Self:
        await self._stream.__aenter__()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> bool | None:
        self._ended.set()
        return await self._stream.__aexit__(exc_type, exc, tb)


@contextlib.asynccontextmanager
async def _closing(transport: Transport, http: httpx2.AsyncClient) -> AsyncIterator[TransportStreams]:
    async with http:
        async with transport as streams:
            yield streams


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _answered(exc: BaseException) -> bool:
    """The failure came from the server's answer, not from failing to reach it."""
    return any(isinstance(e, (MCPError, httpx2.HTTPStatusError)) for e in _leaves(exc))


def _unreachable(exc: BaseException) -> bool:
    """The request never reached the server."""
    return any(isinstance(e, (httpx2.ConnectError, httpx2.ConnectTimeout)) for e in _leaves(exc))


def describe_failure(exc: BaseException | None) -> str:
    """The innermost causes of a connection failure, in words."""
    if exc is None:
        return "the connection closed"
    parts = []
    for leaf in _leaves(exc):
        if isinstance(leaf, MCPError):
            parts.append(leaf.error.message)
        elif isinstance(leaf, FileNotFoundError):
            parts.append(f"command not found: {leaf.filename or leaf}")
        else:
            parts.append(str(leaf) or type(leaf).__name__)
    return "; ".join(dict.fromkeys(parts))
