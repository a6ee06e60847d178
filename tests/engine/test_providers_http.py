"""The HTTP providers against fake vendor servers speaking the real protocols over loopback."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from orch.errors import ProviderError
from orch.providers.anthropic import AnthropicProvider
from orch.providers.base import (
    Completion,
    CompletionRequest,
    Message,
    Provider,
    ToolCall,
    ToolSpec,
    Usage,
)
from orch.providers.openai_compat import OpenAICompatProvider
from tests.fakes import Delay, FakeLLMServer, Malformed, Reply, Status, running_fake_llm

MODEL = "model-x"
SEARCH = ToolSpec(
    name="search",
    description="Search the web",
    parameters={"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
)
CATS_AND_DOGS = [("search", {"q": "cats"}), ("search", {"q": "dogs"})]


@pytest.fixture(scope="module")
def module_server() -> Iterator[FakeLLMServer]:
    with running_fake_llm() as server:
        yield server


@pytest.fixture
def server(module_server: FakeLLMServer) -> FakeLLMServer:
    module_server.reset()
    return module_server


@pytest.fixture
async def openai(server: FakeLLMServer) -> AsyncIterator[OpenAICompatProvider]:
    provider = OpenAICompatProvider(server.openai_base_url, "sk-test")
    yield provider
    await provider.aclose()


@pytest.fixture
async def anthropic(server: FakeLLMServer) -> AsyncIterator[AnthropicProvider]:
    provider = AnthropicProvider("ak-test", base_url=server.anthropic_base_url)
    yield provider
    await provider.aclose()


@pytest.fixture(params=["openai", "anthropic"])
def provider(request: pytest.FixtureRequest) -> Provider:
    result: Provider = request.getfixturevalue(request.param)
    return result


def ask(text: str = "hi", **fields: Any) -> CompletionRequest:
    return CompletionRequest(model=MODEL, messages=(Message("user", text),), **fields)


async def failure(provider: Provider, request: CompletionRequest | None = None) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await provider.complete(request or ask())
    return info.value


async def test_text_completion_with_usage(server: FakeLLMServer, provider: Provider) -> None:
    server.script([Reply(text="Hello there", input_tokens=12, output_tokens=3)])
    completion = await provider.complete(ask())
    stop = "stop" if provider.name == "openai" else "end_turn"
    assert completion == Completion(
        text="Hello there",
        usage=Usage(input_tokens=12, output_tokens=3),
        model=MODEL,
        provider=provider.name,
        stop_reason=stop,
    )


async def test_cached_prompt_tokens_are_reported_apart(server: FakeLLMServer, provider: Provider) -> None:
    written = 200 if provider.name == "anthropic" else 0  # OpenAI caches without reporting writes
    server.script([Reply(text="ok", input_tokens=1000, output_tokens=10, cached_tokens=700,
                         cache_written_tokens=written)])
    completion = await provider.complete(ask())
    assert completion.usage == Usage(input_tokens=1000, output_tokens=10, cache_read_tokens=700,
                                     cache_write_tokens=written)


async def test_openai_request_format_and_headers(
    server: FakeLLMServer, openai: OpenAICompatProvider
) -> None:
    request = CompletionRequest(
        model=MODEL,
        messages=(Message("system", "Be brief."), Message("user", "hi")),
        temperature=0.5,
        max_tokens=50,
    )
    await openai.complete(request)
    sent = server.requests[0]
    assert (sent.protocol, sent.path) == ("openai", "/v1/chat/completions")
    assert sent.headers["authorization"] == "Bearer sk-test"
    assert sent.json == {
        "model": MODEL,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        "temperature": 0.5,
        "max_tokens": 50,
    }


async def test_anthropic_request_format_and_headers(
    server: FakeLLMServer, anthropic: AnthropicProvider
) -> None:
    request = CompletionRequest(
        model=MODEL,
        messages=(Message("system", "Be brief."), Message("system", "Be kind."), Message("user", "hi")),
        temperature=0.5,
    )
    await anthropic.complete(request)
    sent = server.requests[0]
    assert (sent.protocol, sent.path) == ("anthropic", "/v1/messages")
    assert (sent.headers["x-api-key"], sent.headers["anthropic-version"]) == ("ak-test", "2023-06-01")
    assert sent.headers["content-type"] == "application/json"
    assert sent.json == {
        "model": MODEL,
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": "hi"}],
        "system": "Be brief.\n\nBe kind.",
        "temperature": 0.5,
    }


async def test_no_credentials_sent_without_api_key(server: FakeLLMServer) -> None:
    async with httpx.AsyncClient() as client:
        openai = OpenAICompatProvider(server.url, None, name="local", client=client)
        anthropic = AnthropicProvider(None, base_url=server.url, client=client)
        assert (await openai.complete(ask())).provider == "local"
        await anthropic.complete(ask())
        await openai.aclose()  # a borrowed client stays open
        await anthropic.aclose()
        assert not client.is_closed
    assert server.requests[0].path == "/chat/completions"
    assert "authorization" not in server.requests[0].headers
    assert "x-api-key" not in server.requests[1].headers


def round_trip(first: Completion) -> CompletionRequest:
    """The follow-up request after running both tools the model asked for."""
    return CompletionRequest(
        model=MODEL,
        messages=(
            Message("system", "Use tools."),
            Message("user", "cats and dogs?"),
            Message("assistant", first.text, tool_calls=first.tool_calls),
            Message("tool", "3 cats", tool_call_id=first.tool_calls[0].id, name="search"),
            Message("tool", "2 dogs", tool_call_id=first.tool_calls[1].id, name="search"),
        ),
        tools=(SEARCH,),
    )


async def test_openai_tool_call_round_trip(server: FakeLLMServer, openai: OpenAICompatProvider) -> None:
    server.script([Reply(tool_calls=CATS_AND_DOGS), Reply(text="5")])
    first = await openai.complete(ask("cats and dogs?", tools=(SEARCH,)))
    assert (first.text, first.stop_reason) == ("", "tool_calls")
    assert [(c.name, c.arguments, c.raw_arguments, c.parse_error) for c in first.tool_calls] == [
        ("search", {"q": "cats"}, '{"q":"cats"}', None),
        ("search", {"q": "dogs"}, '{"q":"dogs"}', None),
    ]
    second = await openai.complete(round_trip(first))
    assert second.text == "5"
    a, b = (c.id for c in first.tool_calls)
    tool = {
        "type": "function",
        "function": {"name": "search", "description": "Search the web", "parameters": SEARCH.parameters},
    }

    def call(call_id: str, q: str) -> dict[str, Any]:
        arguments = f'{{"q":"{q}"}}'
        return {"id": call_id, "type": "function", "function": {"name": "search", "arguments": arguments}}

    assert server.requests[1].json == {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "Use tools."},
            {"role": "user", "content": "cats and dogs?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [call(a, "cats"), call(b, "dogs")],
            },
            {"role": "tool", "tool_call_id": a, "content": "3 cats"},
            {"role": "tool", "tool_call_id": b, "content": "2 dogs"},
        ],
        "tools": [tool],
    }


async def test_anthropic_tool_call_round_trip(server: FakeLLMServer, anthropic: AnthropicProvider) -> None:
    server.script([Reply(text="Searching.", tool_calls=CATS_AND_DOGS), Reply(text="5")])
    first = await anthropic.complete(ask("cats and dogs?", tools=(SEARCH,)))
    assert (first.text, first.stop_reason) == ("Searching.", "tool_use")
    assert [(c.name, c.arguments, c.raw_arguments, c.parse_error) for c in first.tool_calls] == [
        ("search", {"q": "cats"}, '{"q":"cats"}', None),
        ("search", {"q": "dogs"}, '{"q":"dogs"}', None),
    ]
    await anthropic.complete(round_trip(first))
    a, b = (c.id for c in first.tool_calls)
    assert server.requests[1].json == {
        "model": MODEL,
        "max_tokens": 4096,
        "system": "Use tools.",
        "messages": [
            {"role": "user", "content": "cats and dogs?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Searching."},
                    {"type": "tool_use", "id": a, "name": "search", "input": {"q": "cats"}},
                    {"type": "tool_use", "id": b, "name": "search", "input": {"q": "dogs"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": a, "content": "3 cats"},
                    {"type": "tool_result", "tool_use_id": b, "content": "2 dogs"},
                ],
            },
        ],
        "tools": [{"name": "search", "description": "Search the web", "input_schema": SEARCH.parameters}],
    }


async def test_forced_tool_sets_tool_choice(server: FakeLLMServer, provider: Provider) -> None:
    server.script([Reply(tool_calls=[("search", {"q": "x"})])])
    completion = await provider.complete(ask(tools=(SEARCH,), force_tool="search"))
    assert completion.tool_calls[0].arguments == {"q": "x"}
    expected = (
        {"type": "function", "function": {"name": "search"}}
        if provider.name == "openai"
        else {"type": "tool", "name": "search"}
    )
    assert server.requests[0].json["tool_choice"] == expected


BAD_KEYS = "JSON is malformed: object keys must be strings (byte 1)"


async def test_openai_invalid_arguments_keep_raw_text(
    server: FakeLLMServer, openai: OpenAICompatProvider
) -> None:
    server.script([Reply(tool_calls=[("search", "{bad json"), ("search", "[1]")])])
    calls = (await openai.complete(ask(tools=(SEARCH,)))).tool_calls
    assert [(c.arguments, c.raw_arguments, c.parse_error) for c in calls] == [
        ({}, "{bad json", f"arguments are not valid JSON: {BAD_KEYS}"),
        ({}, "[1]", "arguments must be a JSON object, got list"),
    ]
    # Sent back, the broken call shows the model exactly what it wrote.
    retry = Message("assistant", tool_calls=calls[:1])
    await openai.complete(CompletionRequest(model=MODEL, messages=(retry,)))
    assert server.requests[1].json["messages"][0]["tool_calls"][0]["function"]["arguments"] == "{bad json"


async def test_anthropic_non_object_input_is_a_parse_error(
    server: FakeLLMServer, anthropic: AnthropicProvider
) -> None:
    server.script([Reply(tool_calls=[("search", "{bad json")])])
    (call,) = (await anthropic.complete(ask(tools=(SEARCH,)))).tool_calls
    assert call == ToolCall(
        id=call.id,
        name="search",
        arguments={},
        raw_arguments='"{bad json"',
        parse_error="arguments must be a JSON object, got str",
    )


async def test_rate_limit_is_retryable(server: FakeLLMServer, provider: Provider) -> None:
    server.script([Status(429, message="Rate limit reached", headers={"retry-after": "0"})])
    error = await failure(provider)
    assert (error.status, error.retryable, error.provider, error.model) == (429, True, provider.name, MODEL)
    vendor = "Rate limit reached [rate_limit_error] (retry after 0 s)"
    assert str(error) == f"{provider.name} {MODEL} (HTTP 429): {vendor}"


async def test_server_errors_are_retryable(server: FakeLLMServer, provider: Provider) -> None:
    server.script([Status(500)])
    error = await failure(provider)
    assert (error.status, error.retryable) == (500, True)
    assert str(error) == f"{provider.name} {MODEL} (HTTP 500): Internal Server Error"


async def test_anthropic_overloaded_is_retryable(server: FakeLLMServer, anthropic: AnthropicProvider) -> None:
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    server.script([Status(529, body=body)])
    error = await failure(anthropic)
    assert (error.status, error.retryable) == (529, True)
    assert str(error) == f"anthropic {MODEL} (HTTP 529): Overloaded [overloaded_error]"


async def test_bad_request_is_not_retryable(server: FakeLLMServer, provider: Provider) -> None:
    server.script([Status(400, message="messages: roles must alternate")])
    error = await failure(provider)
    assert (error.status, error.retryable) == (400, False)
    vendor = "messages: roles must alternate [invalid_request_error]"
    assert str(error) == f"{provider.name} {MODEL} (HTTP 400): {vendor}"


async def test_error_body_that_is_not_json_is_quoted(
    server: FakeLLMServer, openai: OpenAICompatProvider
) -> None:
    server.script([Status(403, body="<html>Forbidden by proxy</html>")])
    error = await failure(openai)
    assert (error.status, error.retryable) == (403, False)
    assert str(error) == f"openai {MODEL} (HTTP 403): Forbidden: <html>Forbidden by proxy</html>"


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ("not json", "JSON is malformed: invalid character (byte 4)"),
        ('{"id": "x"}', None),
    ],
)
async def test_malformed_body_is_retryable(
    server: FakeLLMServer, provider: Provider, body: str, detail: str | None
) -> None:
    server.script([Malformed(body)])
    error = await failure(provider)
    missing = "choices" if provider.name == "openai" else "content"
    detail = detail or f"Object missing required field `{missing}`"
    assert (error.status, error.retryable) == (200, True)
    assert str(error) == f"{provider.name} {MODEL} (HTTP 200): malformed response: {detail}"


async def test_openai_empty_choices_is_malformed(server: FakeLLMServer, openai: OpenAICompatProvider) -> None:
    server.script([Malformed('{"choices": [], "usage": {"prompt_tokens": 1}}')])
    error = await failure(openai)
    assert str(error) == f"openai {MODEL} (HTTP 200): malformed response: no choices"


async def test_timeout_is_retryable(server: FakeLLMServer, provider: Provider) -> None:
    server.script([Delay(2.0)])
    error = await failure(provider, ask(timeout_seconds=0.2))
    assert (error.status, error.retryable) == (None, True)
    assert str(error) == f"{provider.name} {MODEL}: timed out after 0.2 s"


async def test_refused_connection_is_retryable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = OpenAICompatProvider(f"http://127.0.0.1:{port}/v1", None)
    try:
        error = await failure(provider)
    finally:
        await provider.aclose()
    assert (error.status, error.retryable) == (None, True)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    assert str(error).startswith(f"openai {MODEL}: request to {url} failed: ")
