"""The console's two generated forms: a run's initial state (from `state_schema`) and a gate's
answer (from `human_fields`). Each turns a field description into what a template draws, and
the submitted text back into values, with one error per field."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import msgspec

from orch.definition.compiled import CompiledGraph

STATE_PREFIX = "state."
ANSWER_PREFIX = "answer."


@dataclass
class Input:
    """One form control: `control` is text, textarea, number, email, date, tel, select or yesno."""

    name: str  # the form field's name
    label: str
    control: str
    hint: str = ""
    options: list[str] = field(default_factory=list)
    required: bool = False
    value: str = ""
    error: str = ""
    step: str = "any"  # number inputs: "1" for whole numbers
    blank: str = "Choose…"  # the empty choice of a select
    prefix: str = "f-"  # keeps element ids apart when a page holds several forms

    @property
    def dom_id(self) -> str:
        return self.prefix + "".join(c if c.isalnum() or c in "-_" else "_" for c in self.name)


# -- initial state --------------------------------------------------------------------------

def state_inputs(graph: CompiledGraph, values: Mapping[str, str] | None = None,
                 errors: Mapping[str, str] | None = None) -> list[Input]:
    values, errors = values or {}, errors or {}
    out = []
    for key, spec in graph.orchestration.state_schema.items():
        kind = graph.schema.type_of(key)
        control, step = {"str": ("text", "any"), "int": ("number", "1"), "float": ("number", "any"),
                         "bool": ("select", "any")}.get(kind.kind, ("json", "any"))
        hints = [spec.description] if spec.description else []
        if spec.default is not msgspec.UNSET and spec.default is not None:
            hints.append("default: " + msgspec.json.encode(spec.default).decode())
        if control == "json":
            hints.append(f"JSON ({kind.text})")
        name = STATE_PREFIX + key
        out.append(Input(name=name, label=f"{key} ({kind.text})", control=control, hint="; ".join(hints),
                         value=values.get(name, ""), error=errors.get(key, ""), step=step,
                         options=["true", "false"] if kind.kind == "bool" else [], blank="(default)"))
    return out


def parse_state(graph: CompiledGraph, form: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The initial state typed in the form (blank fields keep their defaults), and an error
    per key whose text does not read as its type."""
    state: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for key in graph.orchestration.state_schema:
        text = form.get(STATE_PREFIX + key, "")
        if not text.strip():
            continue
        kind = graph.schema.type_of(key).kind
        try:
            state[key] = _read(kind, text)
        except ValueError as exc:
            errors[key] = str(exc)
    return state, errors


def _read(kind: str, text: str) -> Any:
    if kind == "str":
        return text
    if kind == "int":
        try:
            return int(text.strip())
        except ValueError:
            raise ValueError(f"'{text.strip()[:40]}' is not a whole number") from None
    if kind == "float":
        try:
            return float(text.strip())
        except ValueError:
            raise ValueError(f"'{text.strip()[:40]}' is not a number") from None
    if kind == "bool":
        return text == "true"
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise ValueError(f"is not JSON: {exc}") from None


# -- gate answers ---------------------------------------------------------------------------

_CONTROLS = {"text": "text", "textarea": "textarea", "number": "number", "email": "email", "date": "date",
             "phone": "tel", "select": "select", "boolean": "yesno"}


def _options(raw: Any) -> list[str]:
    if isinstance(raw, str):
        return [o.strip() for o in raw.split(",") if o.strip()]
    return [str(o) for o in raw or []]


ANSWER_TEXT = "answer"  # the one text box of a gate without fields


def gate_inputs(fields: list[dict[str, Any]], values: Mapping[str, str] | None = None,
                errors: Mapping[str, str] | None = None, prefix: str = "f-") -> list[Input]:
    values, errors = values or {}, errors or {}
    if not fields:
        return [Input(name=ANSWER_TEXT, label="Your answer", control="textarea", value=values.get(ANSWER_TEXT, ""),
                      error=errors.get("response", ""), prefix=prefix)]
    out = []
    for f in fields:
        name = str(f.get("name", ""))
        form_name = ANSWER_PREFIX + name
        out.append(Input(name=form_name, label=str(f.get("label") or name),
                         control=_CONTROLS.get(f.get("type", "text"), "text"),
                         options=_options(f.get("options")), required=bool(f.get("required")),
                         value=values.get(form_name, ""), error=errors.get(name, ""), prefix=prefix))
    return out


def gate_answer(fields: list[dict[str, Any]], form: Mapping[str, str]) -> dict[str, Any] | str:
    """The answer as the API takes it: field values as typed, blank ones left out (the gate's
    own check then names missing required fields); the text of a gate without fields."""
    if not fields:
        return form.get(ANSWER_TEXT, "")
    answer: dict[str, Any] = {}
    for f in fields:
        name = str(f.get("name", ""))
        text = form.get(ANSWER_PREFIX + name, "")
        if text.strip():
            answer[name] = text
    return answer
