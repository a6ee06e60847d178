"""Human gates: what the run shows when it pauses, and checking the answer that resumes it."""

from __future__ import annotations

import datetime as dt
import difflib
import math
import re
from typing import Any

import msgspec

from orch.definition.spec import HumanField, HumanStep, StepBase
from orch.definition.templates import render
from orch.errors import InvalidAnswer
from orch.steps.base import FieldReport, GateRequest, StepContext, StepKind, StepResult, prompt_reads

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+?[0-9 ()./-]{5,20}$")
_TRUE = {"true", "yes", "y", "1", "on"}
_FALSE = {"false", "no", "n", "0", "off"}
ANSWER_KEY = "human_response"  # every gate's answer is also written here


async def run_human(ctx: StepContext) -> StepResult:
    s = ctx.step.spec
    context = next((ctx.state[k] for k in s.input_keys if ctx.state.get(k) not in (None, "", [], {})), None)
    if context is None:
        context = ctx.last_output
    gate = GateRequest(
        prompt=render(s.human_prompt or "Please provide input to continue.", ctx.state),
        fields=[field_payload(f) for f in s.human_fields],
        agent_context="" if context is None else context if isinstance(context, str) else msgspec.json.encode(context).decode(),
        timeout_seconds=s.human_timeout_seconds,
    )
    return StepResult(gate=gate)


def field_payload(f: HumanField) -> dict[str, Any]:
    out: dict[str, Any] = {"name": f.field_name, "type": f.type, "label": f.label or f.field_name.replace("_", " ").capitalize()}
    if f.options is not None:
        out["options"] = f.options
    if f.required:
        out["required"] = True
    return out


def check_answer(step: StepBase, response: Any) -> Any:
    """The answer converted per field; raises InvalidAnswer naming every bad field."""
    fields = step.human_fields
    if isinstance(response, str):
        if len(fields) > 1 and any(f.required for f in fields[1:]):
            raise InvalidAnswer({"response": "this gate has several fields; send an object with "
                                 + ", ".join(f.field_name for f in fields)})
        if not fields:
            return response
        response = {fields[0].field_name: response}
    if not isinstance(response, dict):
        raise InvalidAnswer({"response": "expected an object of field values or a string"})
    if not fields:
        return response
    errors: dict[str, str] = {}
    names = [f.field_name for f in fields]
    for key in response:
        if key not in names:  # most likely a typo: a silently dropped decision is worse than a 422
            close = difflib.get_close_matches(str(key), names, n=1)
            errors[str(key)] = "is not a field of this gate" + (f"; did you mean '{close[0]}'?" if close else
                                                                 f" (fields: {', '.join(names)})")
    out = dict(response)
    for f in fields:
        name = f.field_name
        value = response.get(name)
        if value is None or value == "":
            if f.required:
                errors[name] = "is required"
            continue
        try:
            out[name] = _convert(f, value)
        except ValueError as exc:
            errors[name] = str(exc)
    if errors:
        raise InvalidAnswer(errors)
    return out


def _convert(f: HumanField, value: Any) -> Any:
    if f.type == "select":
        options = f.option_list
        text = str(value).strip()
        if text in options:
            return text
        folded = {o.lower(): o for o in options} | {a.lower(): o for a, o in f.aliases.items()}
        if text.lower() in folded:
            return folded[text.lower()]
        raise ValueError(f"'{value}' is not one of: {', '.join(options)}")
    if f.type == "number":
        if isinstance(value, bool):
            raise ValueError("expected a number")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"'{str(value)[:40]}' is not a number") from None
        except OverflowError:
            raise ValueError(f"'{str(value)[:40]}…' is too large a number") from None
        if not math.isfinite(number):
            raise ValueError(f"'{str(value)[:40]}' is not a finite number")
        if isinstance(value, int) or (isinstance(value, str) and number.is_integer() and "." not in value
                                      and "e" not in value.lower()):
            return int(value) if isinstance(value, int) else int(number)
        return number
    if f.type == "boolean":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise ValueError(f"'{value}' is not a yes/no value")
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {type(value).__name__}")
    if f.type == "email" and not _EMAIL.match(value):
        raise ValueError(f"'{value}' is not an email address")
    if f.type == "date":
        try:
            dt.date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"'{value}' is not a date (YYYY-MM-DD)") from None
    if f.type == "phone" and not _PHONE.match(value):
        raise ValueError(f"'{value}' is not a phone number")
    return value


def writes(spec: StepBase) -> tuple[str, ...]:
    if not spec.output_key or spec.output_key == ANSWER_KEY:
        return (ANSWER_KEY,)
    return (spec.output_key, ANSWER_KEY)


def check_fields(spec: StepBase, report: FieldReport) -> None:
    names: set[str] = set()
    for i, f in enumerate(spec.human_fields):
        if not f.field_name:
            report.add("missing-field", f"human_fields[{i}] needs 'name' or 'key'")
        elif f.field_name in names:
            report.add("duplicate-field", f"human field '{f.field_name}' is defined twice",
                       "each field of a gate needs its own name")
        names.add(f.field_name)
        if f.type == "select" and not f.option_list:
            report.add("missing-field", f"select field '{f.field_name}' needs 'options'",
                       "a list, or a comma-separated string such as approve,reject")
        for alias, target in f.aliases.items():
            if target not in f.option_list:
                report.add("invalid-value", f"alias '{alias}' of field '{f.field_name}' maps to '{target}', "
                           "which is not an option", "map each alias to one of the options")
    if spec.human_timeout_seconds <= 0:
        report.add("invalid-value", f"human_timeout_seconds must be positive, got {spec.human_timeout_seconds}",
                   "set a number above 0")


KIND = StepKind(
    name="human", spec=HumanStep, executor=run_human, check_fields=check_fields,
    reads=lambda spec, expression: prompt_reads(spec, spec.human_prompt), writes=writes, pauses=True,
    in_loop=False, shape="gate",
)
