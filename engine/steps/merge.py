"""The merge step: the values of its `input_keys` combined into one (a list, text or a dict),
each labelled with the step that wrote it."""

from __future__ import annotations

from typing import Any

import msgspec

from orch.definition.spec import MergeStep, StepBase
from orch.definition.state import ANY, STR, TypeSpec
from orch.steps.base import FieldReport, StepContext, StepKind, StepResult

_OUTPUT_TYPES = {"list": TypeSpec("list", ANY), "concat": STR, "dict": TypeSpec("dict", ANY)}


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


def check_fields(spec: StepBase, report: FieldReport) -> None:
    report.need("input_keys", bool(spec.input_keys), "list the state keys whose values are merged")


KIND = StepKind(
    name="merge", spec=MergeStep, executor=run_merge, check_fields=check_fields,
    output_type=lambda spec: _OUTPUT_TYPES[spec.merge_strategy], shape="group",
)
