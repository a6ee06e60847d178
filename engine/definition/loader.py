"""From files on disk (or a posted body) to Orchestration and Agent specs.

Accepts YAML or JSON holding one orchestration, one agent, a Synapse export bundle
(`synapse_export: true`) or a plain bundle with `orchestrations` / `agents` lists. Problems are
collected, never raised one at a time: every step is decoded on its own so one bad step does not
hide the others, and each Problem names the file, the JSON path and what was expected.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, get_args

import msgspec
import yaml

from orch.errors import Problem
from orch.definition.spec import (
    AGENT_FIELDS, BUNDLE_FIELDS, ORCHESTRATION_FIELDS, STEP_CLASSES, STEP_FIELDS, STEP_TYPES,
    Agent, HumanField, HumanFieldType, MergeStrategy, OnError, Orchestration, Reducer, StateField,
    is_ignored_extra,
)

GRAPH_SUFFIXES = (".yaml", ".yml", ".json")
_SKIPPED_DIRS = frozenset({"node_modules", "site-packages", "__pycache__", "venv"})
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when PyYAML was built with it
ENUM_VALUES: dict[str, tuple[str, ...]] = {
    "merge_strategy": get_args(MergeStrategy), "reducer": get_args(Reducer), "on_error": get_args(OnError),
    "type": get_args(HumanFieldType),
}
_MSGSPEC_AT = re.compile(r"^(?P<msg>.*?)(?: - at `(?P<path>\$[^`]*)`)?$", re.S)
_HUMAN_FIELD_FIELDS = frozenset(HumanField.__struct_fields__)
_STATE_FIELD_FIELDS = frozenset(StateField.__struct_fields__)


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


@dataclass
class Catalog:
    """Everything loaded from a set of files; agents are visible to every orchestration."""

    orchestrations: dict[str, LoadedOrchestration] = field(default_factory=dict)
    agents: dict[str, LoadedAgent] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

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
            "not-a-definition", f"expected a mapping at the top level, got {_kind(doc)}", file=file, path="$",
        ))
        return
    if doc.get("synapse_export") or "orchestrations" in doc or ("agents" in doc and "steps" not in doc):
        _unknown(doc, BUNDLE_FIELDS, file, "$", catalog.problems, severity="warning")
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


def _add_agent(raw: Any, file: str, path: str, catalog: Catalog) -> None:
    if not isinstance(raw, dict):
        catalog.problems.append(Problem("invalid-field", f"expected an agent object, got {_kind(raw)}", file=file, path=path))
        return
    _unknown(raw, AGENT_FIELDS, file, path, catalog.problems, severity="warning")
    try:
        agent = msgspec.convert(_drop_nulls(raw, AGENT_FIELDS), Agent)
    except msgspec.ValidationError as exc:
        catalog.problems.append(_validation_problem(exc, file, path))
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
    orch, problems = decode_orchestration(raw, file, path)
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
            _unknown(raw_agents[i], AGENT_FIELDS, file, f"{path}.agents[{i}]", catalog.problems, severity="warning")
        _add_agent(msgspec.to_builtins(agent), file, f"{path}.agents[{i}]", catalog)
    # Runs pin the content hash, so an edited file is a new version even if its `version` label stayed.
    catalog.orchestrations[orch.id] = LoadedOrchestration(orch, file, definition_version(raw), carried)


def decode_orchestration(raw: Any, file: str, path: str = "$") -> tuple[Orchestration | None, list[Problem]]:
    """Decode one orchestration, reporting every bad field of every step at once."""
    problems: list[Problem] = []
    if not isinstance(raw, dict):
        return None, [Problem("invalid-field", f"expected an orchestration object, got {_kind(raw)}", file=file, path=path)]
    orch_id = raw.get("id") if isinstance(raw.get("id"), str) else None
    _unknown(raw, ORCHESTRATION_FIELDS, file, path, problems)
    raw_steps = raw.get("steps")
    if not isinstance(raw_steps, list):
        problems.append(Problem(
            "missing-field" if raw_steps is None else "invalid-field",
            "missing required field 'steps'" if raw_steps is None else f"expected a list of steps, got {_kind(raw_steps)}",
            file=file, path=f"{path}.steps", orchestration_id=orch_id,
        ))
        raw_steps = []
    steps = []
    for i, raw_step in enumerate(raw_steps):
        step = _decode_step(raw_step, file, f"{path}.steps[{i}]", problems, orch_id)
        if step is not None:
            steps.append(step)
    schema: dict[str, StateField] = {}
    raw_schema = raw.get("state_schema")
    if raw_schema is not None and not isinstance(raw_schema, dict):
        problems.append(Problem("invalid-field", f"expected an object of state keys, got {_kind(raw_schema)}",
                                file=file, path=f"{path}.state_schema", orchestration_id=orch_id))
    for key, sf in (raw_schema or {}).items() if isinstance(raw_schema, dict) else ():
        where = f"{path}.state_schema.{key}"
        if isinstance(sf, dict):
            _unknown(sf, _STATE_FIELD_FIELDS, file, where, problems, orch_id=orch_id)
            sf = {f: x for f, x in sf.items() if f in _STATE_FIELD_FIELDS and (x is not None or f == "default")}
        try:
            schema[str(key)] = msgspec.convert(sf, StateField)
        except msgspec.ValidationError as exc:
            problems.append(_validation_problem(exc, file, where, orchestration_id=orch_id))
    head = {k: v for k, v in _drop_nulls(raw, ORCHESTRATION_FIELDS).items()
            if k in ORCHESTRATION_FIELDS and k != "state_schema"}
    head["steps"] = []
    try:
        orch = msgspec.convert(head, Orchestration)
    except msgspec.ValidationError as exc:
        problems.append(_validation_problem(exc, file, path, orchestration_id=orch_id))
        return None, problems
    import msgspec.structs as structs  # local: only needed on success

    # Steps that failed to decode are left out; the compiler still checks the rest (and knows
    # not to report references to the missing ones), so one pass shows every problem.
    return structs.replace(orch, steps=steps, state_schema=schema), problems


def broken_steps(problems: Iterable[Problem]) -> frozenset[str]:
    """Ids of steps that failed to decode (and so are missing from the decoded orchestration)."""
    return frozenset(p.step_id for p in problems
                     if p.severity == "error" and p.step_id and p.code != "unknown-field" and ".steps[" in (p.path or ""))


def _decode_step(raw: Any, file: str, path: str, problems: list[Problem], orch_id: str | None) -> Any:
    if not isinstance(raw, dict):
        problems.append(Problem("invalid-field", f"expected a step object, got {_kind(raw)}", file=file, path=path, orchestration_id=orch_id))
        return None
    step_id = raw.get("id") if isinstance(raw.get("id"), str) else None
    stype = raw.get("type")
    if not isinstance(stype, str) or stype not in STEP_CLASSES:
        close = difflib.get_close_matches(str(stype), STEP_TYPES, n=1)
        problems.append(Problem(
            "unknown-step-type" if stype is not None else "missing-field",
            f"unknown step type {stype!r}" if isinstance(stype, str) else (
                "missing required field 'type'" if stype is None else f"expected a step type name, got {_kind(stype)}"),
            file=file, step_id=step_id, path=f"{path}.type" if stype is not None else path, orchestration_id=orch_id,
            hint=f"did you mean '{close[0]}'?" if close and stype is not None else "one of: " + ", ".join(STEP_TYPES),
        ))
        return None
    before = len(problems)
    _unknown(raw, STEP_FIELDS, file, path, problems, step_id=step_id, orch_id=orch_id)
    for j, hf in enumerate(raw.get("human_fields") or []) if isinstance(raw.get("human_fields"), list) else ():
        if isinstance(hf, dict):
            _unknown(hf, _HUMAN_FIELD_FIELDS, file, f"{path}.human_fields[{j}]", problems, step_id=step_id, orch_id=orch_id)
    cleaned = {k: v for k, v in _drop_nulls(raw, STEP_FIELDS).items() if k in STEP_FIELDS}
    if isinstance(cleaned.get("human_fields"), list):
        cleaned["human_fields"] = [
            {k: v for k, v in hf.items() if k in _HUMAN_FIELD_FIELDS and v is not None} if isinstance(hf, dict) else hf
            for hf in cleaned["human_fields"]
        ]
    try:
        step = msgspec.convert(cleaned, STEP_CLASSES[stype])
    except msgspec.ValidationError as exc:
        problems.append(_validation_problem(exc, file, path, step_id=step_id, orchestration_id=orch_id))
        return None
    # Unknown fields were dropped before decoding: keep the step so the compiler still checks it.
    return None if any(p.code != "unknown-field" for p in problems[before:]) else step


def _drop_nulls(raw: dict[str, Any], known: frozenset[str]) -> dict[str, Any]:
    """Synapse writes null for "not set"; treat it as the field's default."""
    return {k: v for k, v in raw.items() if v is not None}


def _unknown(
    raw: dict[str, Any], known: frozenset[str], file: str, path: str, out: list[Problem], *,
    severity: str = "error", step_id: str | None = None, orch_id: str | None = None,
) -> None:
    for name in raw:
        if name in known or is_ignored_extra(str(name)):
            continue
        close = difflib.get_close_matches(str(name), sorted(known), n=1)
        out.append(Problem(
            "unknown-field", f"unknown field '{name}'", file=file, step_id=step_id,
            path=f"{path}.{name}" if path != "$" else f"$.{name}", orchestration_id=orch_id,
            hint=f"did you mean '{close[0]}'?" if close else None, severity=severity,  # type: ignore[arg-type]
        ))


def _list_of(doc: dict[str, Any], key: str, file: str, catalog: Catalog) -> list[Any]:
    value = doc.get(key) or []
    if not isinstance(value, list):
        catalog.problems.append(Problem("invalid-field", f"expected a list, got {_kind(value)}", file=file, path=f"$.{key}"))
        return []
    return value


def _validation_problem(exc: msgspec.ValidationError, file: str, base: str, **kw: Any) -> Problem:
    m = _MSGSPEC_AT.match(str(exc))
    assert m is not None
    msg, sub = m.group("msg").replace(" | null`", "`"), m.group("path") or "$"
    path = base + sub[1:]
    code = "invalid-field"
    missing = re.match(r"Object missing required field `(.+)`", msg)
    if missing:
        code, msg = "missing-field", f"missing required field '{missing.group(1)}'"
    else:
        msg = re.sub(r"`([^`]*)`", r"\1", msg)
        msg = msg[0].lower() + msg[1:] if msg else msg
        field_name = re.sub(r"\[\d+\]$", "", path.rsplit(".", 1)[-1])
        if msg.startswith("invalid enum value") and field_name in ENUM_VALUES:
            kw.setdefault("hint", "one of: " + ", ".join(ENUM_VALUES[field_name]))
        elif " - at key in " in str(exc) or "at key in" in msg:
            kw.setdefault("hint", "keys must be text; quote keys such as 1, 2.5 or yes in YAML")
        elif msg.startswith("expected str") and msg.endswith("got object"):
            kw.setdefault("hint", "YAML reads text that starts with { as a mapping; quote it: \"{state.key} ...\"")
        elif msg.startswith("expected str") and msg.endswith("got bool"):
            kw.setdefault("hint", "YAML reads unquoted yes/no/on/off/true/false as booleans; quote the value")
    return Problem(code, msg, file=file, path=path, **kw)


def _json_error(message: str, text: str) -> str:
    m = re.search(r"\(byte (\d+)\)", message)
    if m:
        pos = min(int(m.group(1)), len(text))
        line = text.count("\n", 0, pos) + 1
        col = pos - (text.rfind("\n", 0, pos) + 1) + 1
        return f"line {line}, column {col}: {message[:m.start()].rstrip()}"
    return message


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", type(None): "null"}.get(type(value), type(value).__name__)
