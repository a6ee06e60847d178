"""From files on disk (or a posted body) to Orchestration and Agent specs.

Accepts YAML or JSON holding one orchestration, one agent, a Synapse export bundle
(`synapse_export: true`) or a plain bundle with `orchestrations` / `agents` lists. Problems are
collected, never raised one at a time (decode.py decodes each orchestration and step).
"""

from __future__ import annotations

import difflib
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import msgspec
import yaml

from orch.definition.decode import broken_steps as broken_steps  # importable from here too
from orch.definition.decode import decode_orchestration as decode_orchestration  # importable from here too
from orch.definition.decode import describe, drop_nulls, unknown_fields, validation_problem
from orch.definition.mcp_servers import McpServer, decode_servers
from orch.definition.spec import AGENT_FIELDS, BUNDLE_FIELDS, STEP_CLASSES, Agent, Orchestration, StepBase
from orch.errors import Problem

GRAPH_SUFFIXES = (".yaml", ".yml", ".json")
_SKIPPED_DIRS = frozenset({"node_modules", "site-packages", "__pycache__", "venv"})
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when PyYAML was built with it


@dataclass(frozen=True)
class LoadedOrchestration:
    spec: Orchestration
    file: str
    version: str  # content hash of the definition as written
    # Loader errors that did not stop decoding; compilation reports them too, so one pass shows
    # every problem, and the orchestration is still rejected.
    problems: tuple[Problem, ...] = ()


@dataclass(frozen=True)
class LoadedAgent:
    spec: Agent
    file: str


@dataclass(frozen=True)
class LoadedMcpServer:
    spec: McpServer
    file: str


@dataclass
class Catalog:
    """Everything loaded from a set of files; agents are visible to every orchestration.

    `step_types` are the step types files may use, each with the Struct its steps decode to
    (orch.steps.spec_types(kinds) gives those of a table of step kinds)."""

    orchestrations: dict[str, LoadedOrchestration] = field(default_factory=dict)
    agents: dict[str, LoadedAgent] = field(default_factory=dict)
    mcp_servers: dict[str, LoadedMcpServer] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    step_types: Mapping[str, type[StepBase]] = field(default_factory=lambda: STEP_CLASSES)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]


def definition_version(raw: dict[str, Any]) -> str:
    body = {k: v for k, v in raw.items() if k not in ("created_at", "updated_at")}
    return hashlib.sha256(msgspec.json.encode(body, order="sorted")).hexdigest()[:16]


def graph_files(paths: Iterable[str | Path]) -> list[Path]:
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(sorted(
                f for f in p.rglob("*")
                if f.suffix in GRAPH_SUFFIXES and f.is_file()
                # hidden folders (.venv, .git) and installed packages never hold graphs
                and not any(part.startswith(".") or part in _SKIPPED_DIRS for part in f.relative_to(p).parts[:-1])
            ))
        else:
            found.append(p)
    return found


def load_paths(paths: Iterable[str | Path], catalog: Catalog | None = None) -> Catalog:
    catalog = catalog or Catalog()
    for path in graph_files(paths):
        file = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            catalog.problems.append(Problem("unreadable-file", f"cannot read: {exc.strerror}", file=file))
            continue
        load_text(text, file, catalog)
    return catalog


def parse_text(text: str, file: str) -> tuple[Any, Problem | None]:
    """Parse YAML or JSON text (JSON is YAML, but msgspec's errors are better for .json)."""
    if file.endswith(".json"):
        try:
            return msgspec.json.decode(text), None
        except msgspec.DecodeError as exc:
            return None, Problem("json-syntax", _json_error(str(exc), text), file=file,
                                 hint="fix the JSON at that position")
    try:
        return yaml.load(text, Loader=_YAML_LOADER), None  # noqa: S506 - a safe loader
    except yaml.YAMLError:
        pass
    try:  # parse again with the pure-Python loader: its messages say more about what was expected
        return yaml.load(text, Loader=yaml.SafeLoader), None  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = getattr(exc, "problem", None) or str(exc)
        return None, Problem("yaml-syntax", f"{where}{what}", file=file, hint="fix the YAML at that position")


def load_text(text: str, file: str, catalog: Catalog | None = None) -> Catalog:
    catalog = catalog or Catalog()
    catalog.files.append(file)
    doc, problem = parse_text(text, file)
    if problem:
        catalog.problems.append(problem)
        return catalog
    load_document(doc, file, catalog)
    return catalog


def load_document(doc: Any, file: str, catalog: Catalog) -> None:
    """Register whatever `doc` holds: a bundle, an orchestration or an agent."""
    if not isinstance(doc, dict):
        catalog.problems.append(Problem(
            "not-a-definition", f"expected a mapping at the top level, got {describe(doc)}", file=file, path="$",
        ))
        return
    if "mcp_servers" in doc:  # in a bundle, beside one orchestration, or a file of servers alone
        _add_mcp_servers(doc["mcp_servers"], file, catalog)
        if "steps" in doc:
            doc = {k: v for k, v in doc.items() if k != "mcp_servers"}
        elif not ({"orchestrations", "agents"} & set(doc) or doc.get("synapse_export")):
            unknown_fields(doc, frozenset({"mcp_servers"}), file, "$", catalog.problems, severity="warning")
            return
    if doc.get("synapse_export") or "orchestrations" in doc or ("agents" in doc and "steps" not in doc):
        unknown_fields(doc, BUNDLE_FIELDS, file, "$", catalog.problems, severity="warning")
        for i, raw in enumerate(_list_of(doc, "agents", file, catalog)):
            _add_agent(raw, file, f"$.agents[{i}]", catalog)
        for i, raw in enumerate(_list_of(doc, "orchestrations", file, catalog)):
            _add_orchestration(raw, file, f"$.orchestrations[{i}]", catalog)
    elif "steps" in doc:
        _add_orchestration(doc, file, "$", catalog)
    elif "system_prompt" in doc or "tools" in doc or "orchestration_id" in doc:
        _add_agent(doc, file, "$", catalog)
    else:
        close = [c for k in doc for c in difflib.get_close_matches(str(k), ["steps", "orchestrations", "agents"], n=1)]
        catalog.problems.append(Problem(
            "not-a-definition", "neither an orchestration (no 'steps'), an agent nor a bundle",
            file=file, path="$",
            hint=f"did you mean '{close[0]}'?" if close else "an orchestration needs id, name and steps",
        ))


def _add_mcp_servers(raw: Any, file: str, catalog: Catalog) -> None:
    servers, problems = decode_servers(raw, file, "$.mcp_servers")
    catalog.problems.extend(problems)
    for i, server in enumerate(servers):
        known = catalog.mcp_servers.get(server.name)
        if known is not None and known.spec != server:
            catalog.problems.append(Problem(
                "duplicate-mcp-server", f"MCP server '{server.name}' is also declared, differently, in {known.file}",
                file=file, path=f"$.mcp_servers[{i}]",
                hint="declare each server once, or the same way everywhere (the operator's servers file wins)",
            ))
        elif known is None:
            catalog.mcp_servers[server.name] = LoadedMcpServer(server, file)


def _add_agent(raw: Any, file: str, path: str, catalog: Catalog) -> None:
    if not isinstance(raw, dict):
        catalog.problems.append(Problem("invalid-field", f"expected an agent object, got {describe(raw)}", file=file, path=path))
        return
    unknown_fields(raw, AGENT_FIELDS, file, path, catalog.problems, severity="warning")
    try:
        agent = msgspec.convert(drop_nulls(raw, AGENT_FIELDS), Agent)
    except msgspec.ValidationError as exc:
        catalog.problems.append(validation_problem(exc, file, path))
        return
    if agent.id in catalog.agents:
        other = catalog.agents[agent.id].file
        catalog.problems.append(Problem(
            "duplicate-agent", f"agent '{agent.id}' is also defined in {other}", file=file, path=path,
            hint="agent ids must be unique across all loaded files",
        ))
        return
    catalog.agents[agent.id] = LoadedAgent(agent, file)


def _add_orchestration(raw: Any, file: str, path: str, catalog: Catalog) -> None:
    orch, problems = decode_orchestration(raw, file, path, step_types=catalog.step_types)
    if orch is None:
        catalog.problems.extend(problems)
        return
    catalog.problems.extend(p for p in problems if p.severity != "error")
    carried = tuple(p for p in problems if p.severity == "error")
    if orch.id in catalog.orchestrations:
        other = catalog.orchestrations[orch.id].file
        catalog.problems.append(Problem(
            "duplicate-orchestration", f"orchestration '{orch.id}' is also defined in {other}",
            file=file, path=path, orchestration_id=orch.id,
            hint="orchestration ids must be unique across all loaded files",
        ))
        return
    raw_agents = raw.get("agents") if isinstance(raw.get("agents"), list) else []
    for i, agent in enumerate(orch.agents):
        if i < len(raw_agents) and isinstance(raw_agents[i], dict):
            unknown_fields(raw_agents[i], AGENT_FIELDS, file, f"{path}.agents[{i}]", catalog.problems, severity="warning")
        _add_agent(msgspec.to_builtins(agent), file, f"{path}.agents[{i}]", catalog)
    # Runs pin the content hash, so an edited file is a new version even if its `version` label stayed.
    catalog.orchestrations[orch.id] = LoadedOrchestration(orch, file, definition_version(raw), carried)


def _list_of(doc: dict[str, Any], key: str, file: str, catalog: Catalog) -> list[Any]:
    value = doc.get(key) or []
    if not isinstance(value, list):
        catalog.problems.append(Problem("invalid-field", f"expected a list, got {describe(value)}", file=file, path=f"$.{key}"))
        return []
    return value


def _json_error(message: str, text: str) -> str:
    m = re.search(r"\(byte (\d+)\)", message)
    if m:
        pos = min(int(m.group(1)), len(text))
        line = text.count("\n", 0, pos) + 1
        col = pos - (text.rfind("\n", 0, pos) + 1) + 1
        return f"line {line}, column {col}: {message[:m.start()].rstrip()}"
    return message
