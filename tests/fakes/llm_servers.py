"""Fake LLM vendors speaking the real HTTP protocols over loopback.

One server answers both `POST /v1/chat/completions` (and `/chat/completions`) in OpenAI's format
and `POST /v1/messages` in Anthropic's. A test scripts what comes back, then reads what the
client sent:

    with running_fake_llm() as server:
        server.script([Reply(tool_calls=[("search", {"q": "x"})]), Status(429), Reply(text="done")])
        ...  # point a provider at server.openai_base_url or server.anthropic_base_url
        assert server.requests[0].json["tool_choice"] == ...

Each scripted item answers one request, in order; once the queue is empty `server.default`
(`(protocol, request_json) -> Reply`) answers.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import msgspec
import uvicorn

VendorProtocol: TypeAlias = Literal["openai", "anthropic"]
ToolCallScript: TypeAlias = tuple[str, "dict[str, Any] | str"]

ROUTES: dict[str, VendorProtocol] = {
    "/v1/chat/completions": "openai",
    "/chat/completions": "openai",
    "/v1/messages": "anthropic",
}

ERROR_TYPES = {401: "authentication_error", 429: "rate_limit_error", 529: "overloaded_error"}


@dataclass(frozen=True)
class Reply:
    """A successful answer, rendered in the protocol of the request it answers.

    A tool call's arguments given as a str go out verbatim (OpenAI) so tests can send broken
    JSON; Anthropic has no arguments text, so a str that is not JSON becomes the `input` itself.
    """

    text: str = ""
    tool_calls: Sequence[ToolCallScript] = ()
    input_tokens: int = 10  # every prompt token, cached ones included
    output_tokens: int = 5
    cached_tokens: int = 0  # of input_tokens, read from the vendor's prompt cache
    cache_written_tokens: int = 0  # of input_tokens, written to it (Anthropic reports these)
    stop_reason: str | None = None  # None: the protocol's usual value for this reply
    model: str | None = None  # None: echo the requested model


@dataclass(frozen=True)
class Status:
    """A non-2xx answer. `body` goes out as JSON (bytes or str verbatim); without a body,
    `message` is wrapped in the protocol's error format; with neither the body is empty."""

    code: int
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    message: str | None = None


@dataclass(frozen=True)
class Malformed:
    """A 200 whose body is not what the protocol promises."""

    body: str | bytes = "not json"


@dataclass(frozen=True)
class Delay:
    """Wait, then answer; a client that gives up meanwhile simply disconnects."""

    seconds: float
    then: Reply | Status | Malformed = Reply(text="late")


ScriptItem: TypeAlias = Reply | Status | Malformed | Delay


@dataclass(frozen=True)
class RecordedRequest:
    protocol: VendorProtocol
    path: str
    json: Any
    headers: dict[str, str]  # lower-cased names


def default_reply(protocol: VendorProtocol, request_json: Any) -> Reply:
    return Reply(text="ok")


Response: TypeAlias = tuple[int, dict[str, str], bytes]
Receive: TypeAlias = Callable[[], Awaitable[dict[str, Any]]]
Send: TypeAlias = Callable[[dict[str, Any]], Awaitable[None]]


class FakeLLMServer:
    """A uvicorn server on a free 127.0.0.1 port, run in a background thread."""

    def __init__(self) -> None:
        self.default: Callable[[VendorProtocol, Any], Reply] = default_reply
        self.requests: list[RecordedRequest] = []
        self._queue: deque[ScriptItem] = deque()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.port = 0


    def script(self, items: Iterable[ScriptItem]) -> None:
        with self._lock:
            self._queue.extend(items)

    def reset(self) -> None:
        """Forget scripted items, recorded requests and the custom default."""
        with self._lock:
            self._queue.clear()
            self.requests.clear()
            self.default = default_reply

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url


    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._socket = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            log_level="warning",
            log_config=None,
            access_log=False,
            lifespan="off",
            interface="asgi3",
            loop="asyncio",
            http="h11",
            ws="none",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        for _ in range(500):
            if self._server.started or not self._thread.is_alive():
                break
            time.sleep(0.01)
        if not self._server.started:
            self.stop()
            raise RuntimeError("fake LLM server did not start")

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None


    async def _app(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        response = await self._handle(scope, body, receive)
        if response is None:
            return  # the client hung up while we were delaying
        status, headers, content = response
        raw_headers = [(k.encode(), v.encode()) for k, v in headers.items()]
        raw_headers.append((b"content-length", str(len(content)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": content})

    async def _handle(self, scope: dict[str, Any], body: bytes, receive: Receive) -> Response | None:
        protocol = ROUTES.get(scope["path"])
        if protocol is None or scope["method"] != "POST":
            return _json(404, {"error": {"message": f"no route {scope['method']} {scope['path']}"}})
        try:
            request_json = msgspec.json.decode(body)
        except msgspec.DecodeError:
            return _error(protocol, 400, "request body is not JSON")
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        problem = _request_problem(protocol, request_json)
        with self._lock:
            self.requests.append(RecordedRequest(protocol, scope["path"], request_json, headers))
            # A request the vendor would reject outright leaves the script for the next one.
            item = self._queue.popleft() if self._queue and problem is None else None
        if problem is not None:
            return _error(protocol, 400, problem)
        if item is None:
            item = self.default(protocol, request_json)
        if isinstance(item, Delay):
            if await _client_left_within(item.seconds, receive):
                return None
            item = item.then
        return self._render(protocol, request_json, item)

    def _render(
        self, protocol: VendorProtocol, request_json: Any, item: Reply | Status | Malformed
    ) -> Response:
        if isinstance(item, Malformed):
            content = item.body.encode() if isinstance(item.body, str) else item.body
            return 200, {"content-type": "application/json"}, content
        if isinstance(item, Status):
            return _status(protocol, item)
        model = item.model or str(request_json.get("model", ""))
        n = next(self._ids)
        if protocol == "openai":
            return _json(200, _openai_reply(item, model, n))
        return _json(200, _anthropic_reply(item, model, n))


@contextmanager
def running_fake_llm() -> Iterator[FakeLLMServer]:
    server = FakeLLMServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def _client_left_within(seconds: float, receive: Receive) -> bool:
    """Sleep `seconds`; True when the client disconnected first."""
    try:
        async with asyncio.timeout(seconds):
            while (await receive())["type"] != "http.disconnect":
                pass
    except TimeoutError:
        return False
    return True


def _request_problem(protocol: VendorProtocol, data: Any) -> str | None:
    """The 400 a real vendor would give for a body missing what it requires."""
    if not isinstance(data, dict):
        return "request body must be a JSON object"
    required = ("model", "messages", "max_tokens") if protocol == "anthropic" else ("model", "messages")
    missing = [name for name in required if name not in data]
    return f"{missing[0]}: Field required" if missing else None


def _json(status: int, data: Any) -> Response:
    return status, {"content-type": "application/json"}, msgspec.json.encode(data)


def _error(protocol: VendorProtocol, status: int, message: str) -> Response:
    kind = ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
    if protocol == "anthropic":
        return _json(status, {"type": "error", "error": {"type": kind, "message": message}})
    return _json(status, {"error": {"message": message, "type": kind, "param": None, "code": None}})


def _status(protocol: VendorProtocol, item: Status) -> Response:
    if item.body is None:
        if item.message is None:
            return item.code, dict(item.headers), b""
        _, headers, content = _error(protocol, item.code, item.message)
    elif isinstance(item.body, (bytes, str)):
        headers = {"content-type": "application/json"}
        content = item.body.encode() if isinstance(item.body, str) else item.body
    else:
        _, headers, content = _json(item.code, item.body)
    return item.code, {**headers, **item.headers}, content


def _arguments_text(arguments: dict[str, Any] | str) -> str:
    return arguments if isinstance(arguments, str) else msgspec.json.encode(arguments).decode()


def _openai_reply(reply: Reply, model: str, n: int) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": f"call_{n}_{i}",
                "type": "function",
                "function": {"name": name, "arguments": _arguments_text(args)},
            }
            for i, (name, args) in enumerate(reply.tool_calls)
        ]
    finish = reply.stop_reason or ("tool_calls" if reply.tool_calls else "stop")
    return {
        "id": f"chatcmpl-fake{n}",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": reply.input_tokens,
            "completion_tokens": reply.output_tokens,
            "total_tokens": reply.input_tokens + reply.output_tokens,
            "prompt_tokens_details": {"cached_tokens": reply.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        },
    }


def _anthropic_input(arguments: dict[str, Any] | str) -> Any:
    if not isinstance(arguments, str):
        return arguments
    try:
        return msgspec.json.decode(arguments)
    except msgspec.DecodeError:
        return arguments


def _anthropic_reply(reply: Reply, model: str, n: int) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": reply.text}] if reply.text else []
    content.extend(
        {"type": "tool_use", "id": f"toolu_fake{n}_{i}", "name": name, "input": _anthropic_input(args)}
        for i, (name, args) in enumerate(reply.tool_calls)
    )
    stop = reply.stop_reason or ("tool_use" if reply.tool_calls else "end_turn")
    return {
        "id": f"msg_fake{n}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        # Anthropic counts cache reads and writes apart from input_tokens.
        "usage": {
            "input_tokens": reply.input_tokens - reply.cached_tokens - reply.cache_written_tokens,
            "cache_read_input_tokens": reply.cached_tokens,
            "cache_creation_input_tokens": reply.cache_written_tokens,
            "output_tokens": reply.output_tokens,
        },
    }
