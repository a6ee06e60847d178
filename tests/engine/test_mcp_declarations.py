"""Where MCP servers are declared (bundles, graph files, the operator's file), what is wrong with
a declaration, and what `orch validate` says about the tools it cannot check."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

import orch
from orch.definition.loader import load_text
from orch.server.cli import main
from tests.engine.test_mcp_tools import BUNDLE, FORECAST, bundle, settings, stdio_server


def problems(text: str, file: str = "servers.yaml") -> list[str]:
    return [str(p) for p in load_text(text, file).problems]


def test_declaration_problems_are_reported_together() -> None:
    assert problems("""
mcp_servers:
  - {name: files, server_type: stdio}
  - {name: a__b, server_type: remote, url: ftp://x}
  - {name: ok, server_type: remote, url: https://example.com/mcp, colour: blue}
  - {name: bad, server_type: local}
""") == [
        "servers.yaml: $.mcp_servers[0].command: MCP server 'files': a stdio server needs 'command' "
        "[invalid-mcp-server]; the program to start, e.g. npx or python3",
        "servers.yaml: $.mcp_servers[1].name: MCP server 'a__b': the name must be letters, digits, '-' and '_' "
        "without '__' [invalid-mcp-server]; its tools are named <server>__<tool>",
        "servers.yaml: $.mcp_servers[1].url: MCP server 'a__b': a remote server needs an http(s) 'url', got "
        "'ftp://x' [invalid-mcp-server]; e.g. https://example.com/mcp",
        "servers.yaml: $.mcp_servers[2].colour: unknown field 'colour' [unknown-field]",
        "servers.yaml: $.mcp_servers[3].server_type: invalid enum value 'local' [invalid-field]",
    ]


def test_servers_beside_one_orchestration_and_in_a_file_of_their_own() -> None:
    catalog = load_text("""
id: orch-one
name: One
mcp_servers:
  - {name: weather, server_type: remote, url: "http://127.0.0.1:1/mcp"}
steps:
  - {id: a, type: tool, forced_tool: weather__forecast, tool_args: {city: Oslo}, output_key: f}
""", "one.yaml")
    assert catalog.problems == [] and list(catalog.mcp_servers) == ["weather"]
    assert "mcp_servers" not in orch.compile(catalog)["orch-one"].graph.orchestration.__struct_fields__  # type: ignore[union-attr]
    alone = load_text("mcp_servers: [{name: notes, server_type: remote, url: https://n.example/mcp}]", "s.yaml")
    assert alone.problems == [] and list(alone.mcp_servers) == ["notes"]


def test_a_server_declared_twice_differently_is_an_error() -> None:
    catalog = load_text("mcp_servers: [{name: w, server_type: remote, url: 'https://a.example/mcp'}]", "a.yaml")
    load_text("mcp_servers: [{name: w, server_type: remote, url: 'https://a.example/mcp'}]", "b.yaml", catalog)
    load_text("mcp_servers: [{name: w, server_type: remote, url: 'https://b.example/mcp'}]", "c.yaml", catalog)
    assert [str(p) for p in catalog.problems] == [
        "c.yaml: $.mcp_servers[0]: MCP server 'w' is also declared, differently, in a.yaml [duplicate-mcp-server]; "
        "declare each server once, or the same way everywhere (the operator's servers file wins)"]


def test_validate_lists_the_tools_it_did_not_verify(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(BUNDLE)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        f"warning: {BUNDLE}: orch-weather-brief: tools of MCP servers, not verified: weather__forecast, weather__add "
        "[unverified-tool]; each is checked when a run first uses its server; `orch validate --mcp` asks the "
        "servers now")


def test_validate_mcp_asks_the_servers(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = bundle(tmp_path, stdio_server(), **{"step-fetch": {"forced_tool": "weather__forcast"}})
    assert main(["validate", "--mcp", str(path)]) == 0  # a server this host will not start: unverified
    assert capsys.readouterr().out.splitlines()[0] == (
        f"warning: {path}: step step-fetch: tool 'weather__forcast' not verified: MCP server 'weather' starts the "
        f"local command '{sys.executable}', and this server does not start MCP commands; the operator allows them "
        "with ORCH_MCP_ALLOW_STDIO=true and lists them in ORCH_MCP_STDIO_COMMANDS [unverified-tool]")
    monkeypatch.setenv("ORCH_MCP_ALLOW_STDIO", "true")
    monkeypatch.setenv("ORCH_MCP_STDIO_COMMANDS", sys.executable)
    assert main(["validate", "--mcp", str(path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (f"error: {path}: step step-fetch: MCP server 'weather' has no tool 'forcast'; it has: "
                      "weather__add, weather__attempt, weather__environment, weather__fail, weather__forecast, "
                      "weather__pid, weather__wait [unknown-mcp-tool]; fix the tool name, or the server the name "
                      "points at")


async def test_the_operators_servers_file_wins_over_the_bundle(tmp_path: Path) -> None:
    path = bundle(tmp_path, {"server_type": "remote", "url": "https://weather.example/mcp", "token": ""})
    operator = tmp_path / "mcp.json"
    operator.write_text(json.dumps({"mcp_servers": [{"name": "weather", **stdio_server()}]}))
    eng, report = await orch.open_engine(settings(tmp_path, mcp_servers_file=str(operator)), graphs=[path])
    try:
        assert report.catalog is not None and report.catalog.mcp_servers["weather"].file == str(operator)
        result = await eng.run("orch-weather-brief", "Oslo")
        assert result.status == "completed", result.response
        assert result.shared_state["forecast"] == FORECAST
    finally:
        await eng.close()


async def test_an_agent_with_all_tools_gets_the_servers_tools_too(tmp_path: Path) -> None:
    doc: dict[str, Any] = json.loads(bundle(tmp_path, stdio_server()).read_text())
    doc["agents"][0]["tools"] = ["all"]
    path = tmp_path / "graphs" / "weather.bundle.json"
    path.write_text(json.dumps(doc))
    eng, _ = await orch.open_engine(settings(tmp_path), graphs=[path])
    try:
        result = await eng.run("orch-weather-brief", "Oslo")
        assert result.status == "completed", result.response
        assert result.shared_state["report"].endswith("- weather__add: 5")
    finally:
        await eng.close()
