"""Parsed documents to Structs: one orchestration or agent at a time, every problem at once.

Each step is decoded on its own, so one bad step does not hide the others, and each Problem
names the file, the JSON path and what was expected. Unknown fields are reported here (all of
them, with suggestions) rather than by msgspec, because Synapse also emits open-ended UI
settings such as `cache_*`.
"""

from __future__ import annotations

import difflib
import functools
import re
from typing import Any, Iterable, Mapping, get_args

import msgspec
import msgspec.structs

from orch.definition.spec import (
    ORCHESTRATION_FIELDS, STEP_CLASSES, HumanField, HumanFieldType, MergeStrategy, OnError, Orchestration, Reducer,
    StateField, StepBase, is_ignored_extra, known_fields,
)
from orch.errors import Problem, Severity

ENUM_VALUES: dict[str, tuple[str, ...]] = {
    "merge_strategy": get_args(MergeStrategy), "reducer": get_args(Reducer), "on_error": get_args(OnError),
    "type": get_args(HumanFieldType),
}
_MSGSPEC_AT = re.compile(r"^(?P<msg>.*?)(?: - at `(?P<path>\$[^`]*)`)?$", re.S)
_HUMAN_FIELD_FIELDS = frozenset(HumanField.__struct_fields__)
_STATE_FIELD_FIELDS = frozenset(StateField.__struct_fields__)


def decode_orchestration(raw: Any, file: str, path: str = "$", *,
                         step_types: Mapping[str, type[StepBase]] = STEP_CLASSES) -> tuple[Orchestration | None, list[Problem]]:
    """Decode one orchestration, reporting every bad field of every step at once."""
    problems: list[Problem] = []
    if not isinstance(raw, dict):
        return None, [Problem("invalid-field", f"expected an orchestration object, got {describe(raw)}", file=file, path=path)]
    orch_id = raw.get("id") if isinstance(raw.get("id"), str) else None
    unknown_fields(raw, ORCHESTRATION_FIELDS, file, path, problems)
    raw_steps = raw.get("steps")
    if not isinstance(raw_steps, list):
        problems.append(Problem(
            "missing-field" if raw_steps is None else "invalid-field",
            "missing required field 'steps'" if raw_steps is None else f"expected a list of steps, got {describe(raw_steps)}",
            file=file, path=f"{path}.steps", orchestration_id=orch_id,
        ))
        raw_steps = []
    steps = []
    for i, raw_step in enumerate(raw_steps):
        step = _decode_step(raw_step, file, f"{path}.steps[{i}]", problems, orch_id, step_types)
        if step is not None:
            steps.append(step)
    schema: dict[str, StateField] = {}
    raw_schema = raw.get("state_schema")
    if raw_schema is not None and not isinstance(raw_schema, dict):
        problems.append(Problem("invalid-field", f"expected an object of state keys, got {describe(raw_schema)}",
                                file=file, path=f"{path}.state_schema", orchestration_id=orch_id))
    for key, sf in (raw_schema or {}).items() if isinstance(raw_schema, dict) else ():
        where = f"{path}.state_schema.{key}"
        if isinstance(sf, dict):
            unknown_fields(sf, _STATE_FIELD_FIELDS, file, where, problems, orch_id=orch_id)
            sf = {f: x for f, x in sf.items() if f in _STATE_FIELD_FIELDS and (x is not None or f == "default")}
        try:
            schema[str(key)] = msgspec.convert(sf, StateField)
        except msgspec.ValidationError as exc:
            problems.append(validation_problem(exc, file, where, orchestration_id=orch_id))
    head = {k: v for k, v in drop_nulls(raw, ORCHESTRATION_FIELDS).items()
            if k in ORCHESTRATION_FIELDS and k != "state_schema"}
    head["steps"] = []
    try:
        orch = msgspec.convert(head, Orchestration)
    except msgspec.ValidationError as exc:
        problems.append(validation_problem(exc, file, path, orchestration_id=orch_id))
        return None, problems
    # Steps that failed to decode are left out; the compiler still checks the rest (and knows
    # not to report references to the missing ones), so one pass shows every problem.
    return msgspec.structs.replace(orch, steps=steps, state_schema=schema), problems


def broken_steps(problems: Iterable[Problem]) -> frozenset[str]:
    """Ids of steps that failed to decode (and so are missing from the decoded orchestration)."""
    return frozenset(p.step_id for p in problems
                     if p.severity == "error" and p.step_id and p.code != "unknown-field" and ".steps[" in (p.path or ""))


def _decode_step(raw: Any, file: str, path: str, problems: list[Problem], orch_id: str | None,
                 step_types: Mapping[str, type[StepBase]]) -> Any:
    if not isinstance(raw, dict):
        problems.append(Problem("invalid-field", f"expected a step object, got {describe(raw)}", file=file, path=path, orchestration_id=orch_id))
        return None
    step_id = raw.get("id") if isinstance(raw.get("id"), str) else None
    stype = raw.get("type")
    if not isinstance(stype, str) or stype not in step_types:
        close = difflib.get_close_matches(str(stype), list(step_types), n=1)
        problems.append(Problem(
            "unknown-step-type" if stype is not None else "missing-field",
            f"unknown step type {stype!r}" if isinstance(stype, str) else (
                "missing required field 'type'" if stype is None else f"expected a step type name, got {describe(stype)}"),
            file=file, step_id=step_id, path=f"{path}.type" if stype is not None else path, orchestration_id=orch_id,
            hint=f"did you mean '{close[0]}'?" if close and stype is not None else "one of: " + ", ".join(step_types),
        ))
        return None
    before = len(problems)
    cls = step_types[stype]
    known = _step_fields(cls)
    unknown_fields(raw, known, file, path, problems, step_id=step_id, orch_id=orch_id)
    for j, hf in enumerate(raw.get("human_fields") or []) if isinstance(raw.get("human_fields"), list) else ():
        if isinstance(hf, dict):
            unknown_fields(hf, _HUMAN_FIELD_FIELDS, file, f"{path}.human_fields[{j}]", problems, step_id=step_id, orch_id=orch_id)
    cleaned = {k: v for k, v in drop_nulls(raw, known).items() if k in known}
    if isinstance(cleaned.get("human_fields"), list):
        cleaned["human_fields"] = [
            {k: v for k, v in hf.items() if k in _HUMAN_FIELD_FIELDS and v is not None} if isinstance(hf, dict) else hf
            for hf in cleaned["human_fields"]
        ]
    try:
        step = msgspec.convert(cleaned, cls)
    except msgspec.ValidationError as exc:
        problems.append(validation_problem(exc, file, path, step_id=step_id, orchestration_id=orch_id))
        return None
    # Unknown fields were dropped before decoding: keep the step so the compiler still checks it.
    return None if any(p.code != "unknown-field" for p in problems[before:]) else step


@functools.cache
def _step_fields(cls: type[StepBase]) -> frozenset[str]:
    return known_fields(cls) | {"type"}


def drop_nulls(raw: dict[str, Any], known: frozenset[str]) -> dict[str, Any]:
    """Synapse writes null for "not set"; treat it as the field's default."""
    return {k: v for k, v in raw.items() if v is not None}


def unknown_fields(
    raw: dict[str, Any], known: frozenset[str], file: str, path: str, out: list[Problem], *,
    severity: Severity = "error", step_id: str | None = None, orch_id: str | None = None,
) -> None:
    for name in raw:
        if name in known or is_ignored_extra(str(name)):
            continue
        close = difflib.get_close_matches(str(name), sorted(known), n=1)
        out.append(Problem(
            "unknown-field", f"unknown field '{name}'", file=file, step_id=step_id,
            path=f"{path}.{name}" if path != "$" else f"$.{name}", orchestration_id=orch_id,
            hint=f"did you mean '{close[0]}'?" if close else None, severity=severity,
        ))


def validation_problem(exc: msgspec.ValidationError, file: str, base: str, **kw: Any) -> Problem:
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


def describe(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", type(None): "null"}.get(type(value), type(value).__name__)
