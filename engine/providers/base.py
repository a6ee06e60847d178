"""The contract every model provider implements: messages and tool schemas in; text, tool calls
and token usage out."""

from __future__ import annotations

from typing import Any, Literal, Protocol

import msgspec

Role = Literal["system", "user", "assistant", "tool"]


class ToolCall(msgspec.Struct, frozen=True):
    id: str
    name: str
    arguments: dict[str, Any] = {}
    # The arguments text exactly as the model produced it; `arguments` is {} when it is not JSON.
    raw_arguments: str = "{}"
    # Set when raw_arguments did not parse as a JSON object.
    parse_error: str | None = None


class Message(msgspec.Struct, frozen=True, omit_defaults=True):
    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None  # on role "tool": which call this answers
    name: str | None = None  # on role "tool": the tool's name


class ToolSpec(msgspec.Struct, frozen=True):
    name: str
    description: str
    parameters: dict[str, Any]  # JSON schema of the arguments object


class Usage(msgspec.Struct, frozen=True):
    """Tokens of one call. `input_tokens` counts every prompt token; of those,
    `cache_read_tokens` came from the vendor's prompt cache and `cache_write_tokens` were
    written to it (both priced apart when the price table says how)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


class CompletionRequest(msgspec.Struct, frozen=True):
    model: str
    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...] = ()
    # Name of a tool the model must call (tool steps); None lets the model choose.
    force_tool: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    timeout_seconds: float = 120.0


class Completion(msgspec.Struct, frozen=True):
    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = Usage()
    model: str = ""
    provider: str = ""
    stop_reason: str | None = None


class Provider(Protocol):
    """One model vendor (or the offline model). Raises errors.ProviderError on failure."""

    name: str

    async def complete(self, request: CompletionRequest) -> Completion: ...

    async def aclose(self) -> None: ...
