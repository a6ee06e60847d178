"""A client for Anthropic's messages API."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec

from orch.providers.base import Completion, CompletionRequest, Message, ToolCall, ToolSpec, Usage
from orch.providers.retry import malformed_error, post_json


class _Block(msgspec.Struct):
    # One lenient shape for every block type, so new block kinds (thinking, citations…) are
    # skipped rather than failing the whole response.
    type: str
    text: str | None = None
    id: str | None = None
    name: str | None = None
    input: Any = None


class _Usage(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class _Response(msgspec.Struct):
    content: list[_Block]
    usage: _Usage | None = None
    stop_reason: str | None = None
    model: str | None = None


_response_decoder = msgspec.json.Decoder(_Response)


def _assistant_content(message: Message) -> str | list[dict[str, Any]]:
    if not message.tool_calls:
        return message.content
    # The API rejects empty text blocks, so a bare tool call carries only tool_use blocks.
    blocks: list[dict[str, Any]] = [{"type": "text", "text": message.content}] if message.content else []
    blocks.extend(
        {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
        for call in message.tool_calls
    )
    return blocks


def encode_messages(messages: tuple[Message, ...]) -> tuple[str, list[dict[str, Any]]]:
    """The `system` text and the `messages` list of a request.

    Tool results travel as `tool_result` blocks of a user turn; the results of one assistant
    turn's calls share a single user message, as the API expects.
    """
    system = "\n\n".join(m.content for m in messages if m.role == "system" and m.content)
    out: list[dict[str, Any]] = []
    previous_was_tool = False
    for message in messages:
        if message.role == "system":
            continue
        if message.role == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id or "",
                "content": message.content,
            }
            if previous_was_tool:
                out[-1]["content"].append(block)
            else:
                out.append({"role": "user", "content": [block]})
            previous_was_tool = True
            continue
        previous_was_tool = False
        if message.role == "assistant":
            out.append({"role": "assistant", "content": _assistant_content(message)})
        else:
            out.append({"role": "user", "content": message.content})
    return system, out


def encode_tool(tool: ToolSpec) -> dict[str, Any]:
    return {"name": tool.name, "description": tool.description, "input_schema": tool.parameters}


def _decode_call(index: int, block: _Block) -> ToolCall:
    call_id = block.id or f"toolu_{index}"
    name = block.name or ""
    if isinstance(block.input, dict):
        text = msgspec.json.encode(block.input).decode()
        return ToolCall(id=call_id, name=name, arguments=block.input, raw_arguments=text)
    text = msgspec.json.encode(block.input).decode()
    error = f"arguments must be a JSON object, got {type(block.input).__name__}"
    return ToolCall(id=call_id, name=name, arguments={}, raw_arguments=text, parse_error=error)


class AnthropicProvider:
    """Calls `POST {base_url}/v1/messages`."""

    name = "anthropic"

    def __init__(
        self,
        api_key: str | None,
        *,
        base_url: str = "https://api.anthropic.com",
        client: httpx.AsyncClient | None = None,
        anthropic_version: str = "2023-06-01",
        default_max_tokens: int = 4096,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.default_max_tokens = default_max_tokens
        self._headers = {"anthropic-version": anthropic_version}
        if api_key:
            self._headers["x-api-key"] = api_key
        self._owns_client = client is None
        self._client = client if client is not None else httpx.AsyncClient()

    def encode_request(self, request: CompletionRequest) -> dict[str, Any]:
        system, messages = encode_messages(request.messages)
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens if request.max_tokens is not None else self.default_max_tokens,
            "messages": messages,
        }
        if system:
            body["system"] = system
        if request.tools:
            body["tools"] = [encode_tool(t) for t in request.tools]
        if request.force_tool is not None:
            body["tool_choice"] = {"type": "tool", "name": request.force_tool}
        if request.temperature is not None:
            body["temperature"] = request.temperature
        return body

    async def complete(self, request: CompletionRequest) -> Completion:
        raw = await post_json(
            self._client,
            f"{self.base_url}/v1/messages",
            body=self.encode_request(request),
            headers=self._headers,
            timeout=request.timeout_seconds,
            provider=self.name,
            model=request.model,
        )
        try:
            response = _response_decoder.decode(raw)
        except msgspec.DecodeError as exc:
            raise malformed_error(str(exc), provider=self.name, model=request.model) from exc
        text = "".join(b.text or "" for b in response.content if b.type == "text")
        uses = [b for b in response.content if b.type == "tool_use"]
        usage = response.usage or _Usage()
        # Cached prompt tokens are reported apart from input_tokens; all of them were read.
        input_tokens = (
            (usage.input_tokens or 0)
            + (usage.cache_creation_input_tokens or 0)
            + (usage.cache_read_input_tokens or 0)
        )
        return Completion(
            text=text,
            tool_calls=tuple(_decode_call(i, b) for i, b in enumerate(uses)),
            usage=Usage(input_tokens=input_tokens, output_tokens=usage.output_tokens or 0,
                        cache_read_tokens=usage.cache_read_input_tokens or 0,
                        cache_write_tokens=usage.cache_creation_input_tokens or 0),
            model=response.model or request.model,
            provider=self.name,
            stop_reason=response.stop_reason,
        )

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()
