"""The offline model: deterministic, network-free answers following the rules it documents."""

from __future__ import annotations

import math

import msgspec
import pytest

from orch.providers import OfflineProvider, build_providers
from orch.providers.anthropic import AnthropicProvider
from orch.providers.base import Completion, CompletionRequest, Message, ToolCall, ToolSpec, Usage
from orch.providers.openai_compat import OpenAICompatProvider
from orch.settings import Settings
from orch.tools import ToolRegistry

TOOLS = {spec.name: spec for spec in ToolRegistry.with_builtins().specs()}


async def ask(*messages: Message, **fields: object) -> Completion:
    request = CompletionRequest(model="offline", messages=messages, **fields)  # type: ignore[arg-type]
    return await OfflineProvider().complete(request)


async def test_same_request_same_text() -> None:
    prompt = Message("user", "Write a short article.\n\nTopic: solar panels on city roofs")
    first, second = await ask(prompt), await ask(prompt)
    assert first == second
    assert first.text.startswith("# Solar panels on city roofs\n\n")
    assert "## Discussion" in first.text and "## Conclusion" in first.text
    assert first.tool_calls == ()


async def test_prompt_shapes_the_text() -> None:
    research = await ask(Message("user", "Research the history of tea.\n\nQuery: history of tea"))
    plain = await ask(Message("user", "Summarise the meeting about budgets"))
    assert research.text.startswith("# History of tea\n\n## Findings\n\n1. **")
    assert plain.text.startswith("# Summarise the meeting about budgets\n\n- **Overview**:")


async def test_usage_counts_characters_and_echoes_model() -> None:
    system, user = Message("system", "Be brief."), Message("user", "Topic: owls")
    completion = await ask(system, user)
    assert completion.usage == Usage(
        input_tokens=math.ceil((len(system.content) + len(user.content)) / 4),
        output_tokens=math.ceil(len(completion.text) / 4),
    )
    assert (completion.model, completion.provider, completion.stop_reason) == ("offline", "offline", "end_turn")


async def test_evaluator_answers_first_label_by_default() -> None:
    system = Message("system", "Choose one.\nLabels: approve | needs_revision\nAnswer with one label.")
    completion = await ask(system, Message("user", "Draft:\nA fine text."))
    assert completion.text.splitlines()[0] == "approve"
    assert completion.text.splitlines()[1].startswith("Reason: ")


async def test_evaluator_follows_route_named_in_input() -> None:
    system = Message("system", "Labels: approve | needs_revision")
    completion = await ask(system, Message("user", "Context:\nreview:\nROUTE: Needs_Revision please"))
    assert completion.text == "needs_revision\nReason: the input asks for route 'needs_revision'."


async def test_evaluator_ignores_route_to_unknown_label() -> None:
    completion = await ask(Message("system", "Labels: yes | no"), Message("user", "route: maybe"))
    assert completion.text.startswith("yes\n")


async def test_forced_tool_takes_written_values_then_defaults_then_placeholders() -> None:
    spec = ToolSpec("fill", "", {"type": "object", "properties": {
        "expression": {"type": "string"},
        "count": {"type": "integer"},
        "zone": {"type": "string", "default": "UTC"},
        "flag": {"type": "boolean"},
        "items": {"type": "array"},
        "title": {"type": "string"},
    }})
    user = Message("user", "Topic: sums\nexpression=2+3*4\ncount: 7\nflag: nonsense")
    completion = await ask(user, tools=(spec,), force_tool="fill")
    [call] = completion.tool_calls
    assert call.name == "fill"
    assert call.arguments == {"expression": "2+3*4", "count": 7, "zone": "UTC", "flag": True,
                              "items": [], "title": "sums"}
    assert msgspec.json.decode(call.raw_arguments) == call.arguments
    assert completion.stop_reason == "tool_use"


async def test_first_turn_calls_named_tools_in_order() -> None:
    user = Message("user", 'First use word_count, then calculator({"expression": "6*7"}).\ntext: a b c')
    completion = await ask(user, tools=(TOOLS["calculator"], TOOLS["word_count"], TOOLS["current_time"]))
    assert [(c.name, c.arguments) for c in completion.tool_calls] == [
        ("word_count", {"text": "a b c"}),
        ("calculator", {"expression": "6*7"}),
    ]


async def test_one_parameter_tool_takes_the_text_in_parentheses() -> None:
    completion = await ask(Message("user", "Please compute calculator(2 + 3)."), tools=(TOOLS["calculator"],))
    assert [c.arguments for c in completion.tool_calls] == [{"expression": "2 + 3"}]


async def test_after_tool_results_it_summarises_them_verbatim() -> None:
    call = ToolCall(id="c1", name="calculator", arguments={"expression": "6*7"})
    completion = await ask(
        Message("user", "Topic: arithmetic\nuse calculator"),
        Message("assistant", "", tool_calls=(call,)),
        Message("tool", "42", tool_call_id="c1"),
        tools=(TOOLS["calculator"],),
    )
    assert completion.tool_calls == ()
    assert "- calculator: 42" in completion.text


@pytest.mark.parametrize("shape", ["object", "array"])
async def test_json_requests_get_json(shape: str) -> None:
    user = Message("user", f"Topic: rivers\n\nRespond with a JSON {shape}.")
    value = msgspec.json.decode((await ask(user)).text)
    if shape == "array":
        assert isinstance(value, list) and len(value) == 3 and all(isinstance(v, str) for v in value)
    else:
        assert set(value) == {"topic", "summary", "points"} and value["topic"] == "rivers"


async def test_latency_is_awaited() -> None:
    provider = OfflineProvider(latency_seconds=0.01)
    completion = await provider.complete(CompletionRequest(model="m", messages=(Message("user", "hi"),)))
    assert completion.model == "m"


async def test_build_providers_adds_vendors_only_when_configured() -> None:
    default = build_providers(Settings())
    local = build_providers(Settings(openai_base_url="http://127.0.0.1:11434/v1"))
    keyed = build_providers(Settings(openai_api_key="sk", anthropic_api_key="ak"))
    try:
        assert list(default) == ["offline"] and isinstance(default["offline"], OfflineProvider)
        assert isinstance(local["openai"], OpenAICompatProvider) and "anthropic" not in local
        assert isinstance(keyed["openai"], OpenAICompatProvider)
        assert isinstance(keyed["anthropic"], AnthropicProvider)
    finally:
        for provider in [*default.values(), *local.values(), *keyed.values()]:
            await provider.aclose()
