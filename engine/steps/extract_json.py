"""The extract_json step: the JSON found in the text of its `input_keys` (one value, a list of
them, or None when there is none)."""

from __future__ import annotations

from typing import Any

from orch.definition.spec import ExtractJsonStep, StepBase
from orch.steps.base import FieldReport, StepContext, StepKind, StepResult
from orch.steps.json_text import find_json


async def run_extract_json(ctx: StepContext) -> StepResult:
    hits: list[Any] = []
    for key in ctx.step.spec.input_keys:
        value = ctx.state.get(key)
        if isinstance(value, (dict, list)):
            hits.append(value)
        elif isinstance(value, str):
            hits.extend(find_json(value))
    return StepResult(output=None if not hits else hits[0] if len(hits) == 1 else hits)


def check_fields(spec: StepBase, report: FieldReport) -> None:
    report.need("input_keys", bool(spec.input_keys), "list the state keys that hold the text to search")


KIND = StepKind(name="extract_json", spec=ExtractJsonStep, executor=run_extract_json, check_fields=check_fields)
