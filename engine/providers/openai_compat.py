"""A client for the OpenAI chat-completions API and the many servers that speak it (vLLM, Ollama,
llama.cpp server, OpenRouter…)."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec

from orch.providers.base import Completion, CompletionRequest, Message, ToolCall, ToolSpec, Usage
from orch.errors import ProviderError
from orch.providers.retry import malformed_error, post_json, vendor_message


class _Function(msgspec.Struct):
    name: str = ""
    # A JSON string per the API; a few compatible servers send the object itself.
    arguments: str | dict[str, Any] | None = None


class _ToolCall(msgspec.Struct):
    function: _Function
    id: str | None = None


class _Message(msgspec.Struct):
    content: str | None = None
    tool_calls: list[_ToolCall] | None = None


class _Choice(msgspec.Struct):
    message: _Message
    finish_reason: str | None = None


class _PromptDetails(msgspec.Struct):
    cached_tokens: int | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    prompt_tokens_details: _PromptDetails | None = None  # cached_tokens are part of prompt_tokens


class _Response(msgspec.Struct):
    choices: list[_Choice]
    usage: _Usage | None = None
    model: str | None = None


_response_decoder = msgspec.json.Decoder(_Response)


def parse_arguments(raw: str) -> tuple[dict[str, Any], str | None]:
    """The arguments object of a tool call, or ({}, why not) when the text is not a JSON object."""
    if not raw.strip():
        return {}, None  # some servers send "" for a tool without parameters
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        return {}, f"arguments are not valid JSON: {exc}"
    if not isinstance(value, dict):
        return {}, f"arguments must be a JSON object, got {type(value).__name__}"
    return value, None


def _arguments_text(call: ToolCall) -> str:
    # A call whose arguments did not parse goes back as the model wrote it, so a retry shows it
    # its own mistake rather than an empty object.
    if call.parse_error is not None:
        return call.raw_arguments
    return msgspec.json.encode(call.arguments).decode()


def encode_message(message: Message) -> dict[str, Any]:
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id or "", "content": message.content}
    if message.role == "assistant" and message.tool_calls:
        return {
            "role": "assistant",
            "content": message.content or None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": _arguments_text(call)},
                }
                for call in message.tool_calls
            ],
        }
    return {"role": message.role, "content": message.content}


def encode_tool(tool: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": tool.name, "description": tool.description, "parameters": tool.parameters},
    }


def encode_request(request: CompletionRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": request.model,
        "messages": [encode_message(m) for m in request.messages],
    }
    if request.tools:
        body["tools"] = [encode_tool(t) for t in request.tools]
    if request.force_tool is not None:
        body["tool_choice"] = {"type": "function", "function": {"name": request.force_tool}}
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    return body


def _decode_call(index: int, call: _ToolCall) -> ToolCall:
    call_id = call.id or f"call_{index}"
    raw = call.function.arguments
    if isinstance(raw, dict):
        text = msgspec.json.encode(raw).decode()
        return ToolCall(id=call_id, name=call.function.name, arguments=raw, raw_arguments=text)
    text = raw or ""
    arguments, error = parse_arguments(text)
    return ToolCall(
        id=call_id, name=call.function.name, arguments=arguments, raw_arguments=text, parse_error=error
    )


class OpenAICompatProvider:
    """Calls `POST {base_url}/chat/completions`.

    `base_url` includes the version prefix, as vendors document it: `https://api.openai.com/v1`,
    `http://localhost:11434/v1` (Ollama), `http://localhost:8000/v1` (vLLM).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        name: str = "openai",
        default_headers: dict[str, str] | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self._headers = dict(default_headers or {})
        if api_key:
            self._headers["authorization"] = f"Bearer {api_key}"
        self._owns_client = client is None
        self._client = client if client is not None else httpx.AsyncClient()

    async def complete(self, request: CompletionRequest) -> Completion:
        raw = await post_json(
            self._client,
            f"{self.base_url}/chat/completions",
            body=encode_request(request),
            headers=self._headers,
            timeout=request.timeout_seconds,
            provider=self.name,
            model=request.model,
        )
        try:
            response = _response_decoder.decode(raw)
        except msgspec.DecodeError as exc:
            vendor = vendor_message(raw)  # some gateways answer 200 with {"error": {...}}
            if vendor is not None:
                raise ProviderError(vendor, provider=self.name, model=request.model, status=200,
                                    retryable=False) from exc
            raise malformed_error(str(exc), provider=self.name, model=request.model) from exc
        if not response.choices:
            raise malformed_error("no choices", provider=self.name, model=request.model)
        choice = response.choices[0]
        usage = response.usage or _Usage()
        return Completion(
            text=choice.message.content or "",
            tool_calls=tuple(_decode_call(i, c) for i, c in enumerate(choice.message.tool_calls or ())),
            usage=Usage(input_tokens=usage.prompt_tokens or 0, output_tokens=usage.completion_tokens or 0,
                        cache_read_tokens=(usage.prompt_tokens_details or _PromptDetails()).cached_tokens or 0),
            model=response.model or request.model,
            provider=self.name,
            stop_reason=choice.finish_reason,
        )

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()
