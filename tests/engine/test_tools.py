from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import msgspec
import pytest

from orch.errors import ToolError
from orch.providers.base import ToolSpec
from orch.tools import BUILTIN_TOOLS, ToolContext, ToolRegistry
from orch.tools.builtin import calculator, current_time


class Point(msgspec.Struct):
    x: int
    y: int = 0


class Node(msgspec.Struct):
    value: int
    children: list[Node] = []


def search(query: str, limit: int = 10, tags: list[str] | None = None) -> list[str]:
    """Search the index.

    The second paragraph is not part of the description.
    """
    return [query] * limit


def pick(mode: Literal["fast", "slow"], note: Optional[str] = None, *, ctx: ToolContext) -> str:
    """Pick a mode
    spread over two lines."""
    return mode


def plot(points: list[Point], origin: Point = Point(0, 0)) -> int:
    return len(points)


def walk(tree: Node) -> int:
    return tree.value


def described(city: Annotated[str, msgspec.Meta(description="a city name")]) -> str:
    return city


@pytest.fixture
def registry() -> ToolRegistry:
    return ToolRegistry([search, pick])


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    return ToolContext(run_id="run-1", sandbox_dir=sandbox, state={"topic": "owls", "n": 3})


def test_schema_with_defaults_optional_and_lists(registry: ToolRegistry) -> None:
    assert registry.get("search").spec == ToolSpec(
        name="search",
        description="Search the index.",
        parameters={
            "type": "object",
            "properties": {
                "query": {"type": "string"},
                "limit": {"type": "integer", "default": 10},
                "tags": {
                    "anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}],
                    "default": None,
                },
            },
            "required": ["query"],
            "additionalProperties": False,
        },
    )


def test_schema_with_literal_leaves_out_the_context(registry: ToolRegistry) -> None:
    tool = registry.get("pick")
    assert tool.description == "Pick a mode spread over two lines."
    assert tool.context_param == "ctx"
    assert tool.parameters == {
        "type": "object",
        "properties": {
            "mode": {"enum": ["fast", "slow"]},
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
        },
        "required": ["mode"],
        "additionalProperties": False,
    }


def test_struct_parameters_are_inlined() -> None:
    point = {
        "title": "Point",
        "type": "object",
        "properties": {"x": {"type": "integer"}, "y": {"type": "integer", "default": 0}},
        "required": ["x"],
    }
    assert ToolRegistry([plot]).get("plot").parameters == {
        "type": "object",
        "properties": {"points": {"type": "array", "items": point}, "origin": point},
        "required": ["points"],
        "additionalProperties": False,
    }


def test_recursive_types_keep_their_definition() -> None:
    node = {
        "title": "Node",
        "type": "object",
        "properties": {
            "value": {"type": "integer"},
            "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}, "default": []},
        },
        "required": ["value"],
    }
    assert ToolRegistry([walk]).get("walk").parameters == {
        "type": "object",
        "properties": {"tree": node},
        "required": ["tree"],
        "additionalProperties": False,
        "$defs": {"Node": node},
    }


def test_annotated_meta_becomes_a_parameter_description() -> None:
    tool = ToolRegistry([described]).get("described")
    assert tool.parameters["properties"] == {"city": {"type": "string", "description": "a city name"}}
    assert tool.description == ""


def test_register_with_explicit_name_and_description() -> None:
    registry = ToolRegistry()
    tool = registry.register(search, name="lookup", description="Find things.")
    assert (tool.name, tool.description, "lookup" in registry, "search" in registry) == (
        "lookup",
        "Find things.",
        True,
        False,
    )
    with pytest.raises(ValueError, match="^tool 'lookup' is already registered$"):
        registry.register(search, name="lookup")


def test_unsupported_signatures_are_refused() -> None:
    def splat(*args: int) -> int:
        return 0

    with pytest.raises(TypeError, match=r"^tool 'splat': \*args and \*\*kwargs parameters are not supported$"):
        ToolRegistry([splat])


def test_unknown_tool_lists_the_registered_ones(registry: ToolRegistry) -> None:
    with pytest.raises(ToolError) as info:
        registry.get("serch")
    assert (str(info.value), info.value.tool, info.value.retryable) == (
        "unknown tool 'serch'; registered: pick, search",
        "serch",
        False,
    )


def test_specs_all_or_by_name(registry: ToolRegistry) -> None:
    assert [s.name for s in registry.specs()] == ["search", "pick"]
    assert [s.name for s in registry.specs("all")] == ["search", "pick"]
    assert [s.name for s in registry.specs(["pick", "search", "pick"])] == ["pick", "search"]
    with pytest.raises(ToolError, match="^unknown tool 'nope'"):
        registry.specs(["nope"])


def test_validate_args_converts_and_fills_defaults(registry: ToolRegistry) -> None:
    assert registry.validate_args("search", {"query": "owls", "limit": "3"}) == {
        "query": "owls",
        "limit": 3,
        "tags": None,
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"query": "owls", "limit": "many"}, "Expected `int`, got `str` - at `$.limit`"),
        ({"limit": 3}, "Object missing required field `query`"),
        ({"query": "owls", "tags": [1]}, "Expected `str`, got `int` - at `$.tags[0]`"),
        ({"query": "owls", "colour": "red"}, "Object contains unknown field `colour`"),
        (None, "Expected `object`, got `null`"),
    ],
)
def test_argument_errors_name_the_tool_and_the_path(registry: ToolRegistry, args: Any, message: str) -> None:
    with pytest.raises(ToolError) as info:
        registry.validate_args("search", args)
    assert (str(info.value), info.value.tool, info.value.retryable) == (
        f"invalid arguments for tool 'search': {message}",
        "search",
        True,
    )


async def test_sync_tool_runs_off_the_event_loop_thread(ctx: ToolContext) -> None:
    def whoami() -> int:
        """The thread the tool runs in."""
        return threading.get_ident()

    registry = ToolRegistry([whoami])
    assert await registry.call("whoami", {}, ctx) != threading.get_ident()


async def test_async_tool_runs_on_the_loop(ctx: ToolContext) -> None:
    async def echo(text: str, times: int = 2, *, context: ToolContext) -> dict[str, Any]:
        """Echo text."""
        await asyncio.sleep(0)
        return {"text": text * times, "run": context.run_id, "thread": threading.get_ident()}

    registry = ToolRegistry([echo])
    assert registry.get("echo").is_async
    assert await registry.call("echo", {"text": "ab"}, ctx) == {
        "text": "abab",
        "run": "run-1",
        "thread": threading.get_ident(),
    }


async def test_exceptions_inside_a_tool_become_tool_errors(ctx: ToolContext) -> None:
    def explode(reason: str) -> None:
        raise ValueError(reason)

    registry = ToolRegistry([explode])
    with pytest.raises(ToolError) as info:
        await registry.call("explode", {"reason": "bad input"}, ctx)
    assert (str(info.value), info.value.tool, info.value.retryable) == (
        "tool 'explode' raised ValueError: bad input",
        "explode",
        True,
    )
    assert isinstance(info.value.__cause__, ValueError)


async def test_positional_only_parameters(ctx: ToolContext) -> None:
    def scale(value: float, /, factor: float = 2.0) -> float:
        return value * factor

    assert await ToolRegistry([scale]).call("scale", {"value": 1.5}, ctx) == 3.0


def test_context_is_read_only(ctx: ToolContext) -> None:
    with pytest.raises(TypeError):
        ctx.state["topic"] = "bats"  # type: ignore[index]


def test_load_module_uses_tools_list_or_documented_functions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "listed_tools_mod.py").write_text(
        "def a(x: int) -> int:\n    return x\n\n"
        "def b(y: str) -> str:\n    '''B.'''\n    return y\n\n"
        "TOOLS = [a]\n"
    )
    (tmp_path / "plain_tools_mod.py").write_text(
        "from json import dumps\n\n"
        "def shout(text: str) -> str:\n    '''Upper-case a text.'''\n    return text.upper()\n\n"
        "def undocumented(text: str) -> str:\n    return text\n\n"
        "def _private(text: str) -> str:\n    '''Hidden.'''\n    return text\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("listed_tools_mod", "plain_tools_mod"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    registry = ToolRegistry()
    registry.load_module("listed_tools_mod")
    registry.load_module("plain_tools_mod")
    assert registry.names() == ["a", "shout"]
    assert registry.get("shout").description == "Upper-case a text."


def test_with_builtins_registers_every_builtin() -> None:
    assert ToolRegistry.with_builtins().names() == [fn.__name__ for fn in BUILTIN_TOOLS] == [
        "current_time",
        "calculator",
        "read_file",
        "write_file",
        "list_files",
        "read_state",
        "word_count",
    ]


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("-2 ** 2", -4),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("-7 % 3", 2),
        ("2 ** 10", 1024),
        ("2 ** -1", 0.5),
        ("1.5e3 - -1", 1501.0),
    ],
)
def test_calculator(expression: str, value: float) -> None:
    result = calculator(expression)
    assert (result, type(result)) == (value, type(value))


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os')", "not allowed in arithmetic: \"__import__('os')\""),
        ("abs(-1)", "not allowed in arithmetic: 'abs(-1)'"),
        ("x + 1", "not allowed in arithmetic: 'x'"),
        ("'a' * 3", "not allowed in arithmetic: \"'a'\""),
        ("True + 1", "not allowed in arithmetic: 'True'"),
        ("1j", "not allowed in arithmetic: '1j'"),
        ("1 << 2", "not allowed in arithmetic: '1 << 2'"),
        ("2 ** 100000", "exponent larger than 10000"),
        ("9 ** 9 ** 9", "exponent larger than 10000"),
        ("10 ** 9999", "result too large"),
        ("10.0 ** 400", "result too large"),
        ("(-8) ** 0.5", "result is not a real number"),
        ("1 +", "not an arithmetic expression: '1 +'"),
    ],
)
def test_calculator_refuses_anything_but_arithmetic(expression: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        calculator(expression)
    assert str(info.value) == message


def test_current_time() -> None:
    assert current_time("Asia/Tokyo").endswith("+09:00")
    with pytest.raises(ValueError, match="^unknown timezone 'Mars/Olympus'$"):
        current_time("Mars/Olympus")


async def test_sandbox_round_trip(ctx: ToolContext) -> None:
    registry = ToolRegistry.with_builtins()
    written = await registry.call("write_file", {"path": "notes/a.txt", "content": "héllo"}, ctx)
    await registry.call("write_file", {"path": "b.txt", "content": "two words"}, ctx)
    assert written == "wrote 6 bytes to notes/a.txt"
    assert await registry.call("read_file", {"path": "notes/a.txt"}, ctx) == "héllo"
    assert await registry.call("list_files", {}, ctx) == ["b.txt", "notes/a.txt"]
    assert await registry.call("word_count", {"text": "two words"}, ctx) == 2
    assert await registry.call("read_state", {"key": "topic"}, ctx) == "owls"


@pytest.mark.parametrize(
    ("tool", "path", "message"),
    [
        ("read_file", "../secret.txt", "path escapes the sandbox: ../secret.txt"),
        ("read_file", "notes/../../secret.txt", "path escapes the sandbox: notes/../../secret.txt"),
        ("write_file", "../evil.txt", "path escapes the sandbox: ../evil.txt"),
        ("read_file", "/etc/passwd", "absolute paths are not allowed: /etc/passwd"),
        ("read_file", "link/secret.txt", "path escapes the sandbox: link/secret.txt"),
        ("write_file", "link/new.txt", "path escapes the sandbox: link/new.txt"),
        ("read_file", "missing.txt", "no such file: missing.txt"),
    ],
)
async def test_sandbox_escapes_are_refused(ctx: ToolContext, tool: str, path: str, message: str) -> None:
    outside = ctx.sandbox_dir.parent
    (outside / "secret.txt").write_text("top secret")
    (ctx.sandbox_dir / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ToolError) as info:
        args = {"path": path, "content": "x"} if tool == "write_file" else {"path": path}
        await ToolRegistry.with_builtins().call(tool, args, ctx)
    assert str(info.value) == f"tool '{tool}' raised ValueError: {message}"
    assert not (outside / "evil.txt").exists() and not (outside / "new.txt").exists()


async def test_list_files_skips_links_out_of_the_sandbox(ctx: ToolContext) -> None:
    (ctx.sandbox_dir.parent / "secret.txt").write_text("top secret")
    (ctx.sandbox_dir / "inside.txt").write_text("ok")
    (ctx.sandbox_dir / "escape.txt").symlink_to(ctx.sandbox_dir.parent / "secret.txt")
    assert await ToolRegistry.with_builtins().call("list_files", {}, ctx) == ["inside.txt"]


async def test_file_size_cap(ctx: ToolContext) -> None:
    (ctx.sandbox_dir / "big.txt").write_bytes(b"x" * 1_000_001)
    registry = ToolRegistry.with_builtins()
    with pytest.raises(ToolError, match=r"^tool 'read_file' raised ValueError: big.txt is larger than 1000000 bytes$"):
        await registry.call("read_file", {"path": "big.txt"}, ctx)
    with pytest.raises(ToolError, match=r"raised ValueError: content is larger than 1000000 bytes$"):
        await registry.call("write_file", {"path": "c.txt", "content": "x" * 1_000_001}, ctx)


async def test_read_state_names_the_known_keys(ctx: ToolContext) -> None:
    with pytest.raises(ToolError) as info:
        await ToolRegistry.with_builtins().call("read_state", {"key": "topc"}, ctx)
    assert str(info.value) == "tool 'read_state' raised ValueError: no state key 'topc'; keys: n, topic"
