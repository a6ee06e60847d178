"""Steps that reshape state: merge, extract_json, print, transform."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from orch.sandbox import TransformError, run_transform
from orch.steps.base import StepContext, StepResult
from orch.definition.templates import render

_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n(.*?)```", re.S)


async def run_merge(ctx: StepContext) -> StepResult:
    s = ctx.step.spec
    parts = [(_producer_label(ctx, key), ctx.state[key]) for key in s.input_keys if ctx.state.get(key) is not None]
    if s.merge_strategy == "concat":
        out: Any = "\n\n".join(f"[{label}]:\n{_text(value)}" for label, value in parts)
    elif s.merge_strategy == "dict":
        out = {label: value for label, value in parts}
    else:
        out = [{"source": label, "data": value} for label, value in parts]
    return StepResult(output=out)


def _producer_label(ctx: StepContext, key: str) -> str:
    for cs in ctx.graph.steps.values():
        if key in cs.writes:
            return f"{cs.spec.name} ({cs.spec.id})" if cs.spec.name else cs.spec.id
    return key


def _text(value: Any) -> str:
    return value if isinstance(value, str) else msgspec.json.encode(value).decode()


async def run_extract_json(ctx: StepContext) -> StepResult:
    hits: list[Any] = []
    for key in ctx.step.spec.input_keys:
        value = ctx.state.get(key)
        if isinstance(value, (dict, list)):
            hits.append(value)
        elif isinstance(value, str):
            hits.extend(find_json(value))
    return StepResult(output=None if not hits else hits[0] if len(hits) == 1 else hits)


def find_json(text: str) -> list[Any]:
    """JSON values in text: the whole text, else fenced blocks, else balanced {...}/[...] spans."""
    whole = _parse(text.strip())
    if whole is not _MISSING and isinstance(whole, (dict, list)):
        return [whole]
    fenced = [v for block in _FENCE.findall(text) if (v := _parse(block.strip())) is not _MISSING]
    if fenced:
        return fenced
    found: list[Any] = []
    i = 0
    while i < len(text):
        if text[i] in "{[":
            end = _balanced_end(text, i)
            if end is not None:
                value = _parse(text[i:end])
                if value is not _MISSING:
                    found.append(value)
                    i = end
                    continue
        i += 1
    return found


_MISSING = object()


def _parse(text: str) -> Any:
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        return _MISSING


def _balanced_end(text: str, start: int) -> int | None:
    depth, in_str, escape = 0, False, False
    for j in range(start, len(text)):
        c = text[j]
        if in_str:
            if escape:
                escape = False
            elif c == "\\":
                escape = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
            if depth == 0:
                return j + 1
    return None


async def run_print(ctx: StepContext) -> StepResult:
    return StepResult(output=render(ctx.step.spec.print_content or "", ctx.state))


async def run_transform_step(ctx: StepContext) -> StepResult:
    s = ctx.step.spec
    try:
        result = await run_transform(s.transform_code or "", dict(ctx.state), limits=ctx.services.transform_limits)
    except TransformError as exc:
        exc.step_id = s.id
        exc.message = f"step {s.id}: {exc.message}"
        exc.args = (exc.message,)
        raise
    return StepResult(output=result)
