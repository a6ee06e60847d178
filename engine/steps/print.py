"""The print step: `print_content` rendered with the state; ending on one makes its text the
run's response."""

from __future__ import annotations

from orch.definition.spec import PrintStep, StepBase
from orch.definition.state import STR
from orch.definition.templates import render
from orch.steps.base import FieldReport, StepContext, StepKind, StepResult, prompt_reads


async def run_print(ctx: StepContext) -> StepResult:
    return StepResult(output=render(ctx.step.spec.print_content or "", ctx.state))


def check_fields(spec: StepBase, report: FieldReport) -> None:
    report.need("print_content", bool(spec.print_content), "text with {state.key} placeholders")


KIND = StepKind(
    name="print", spec=PrintStep, executor=run_print, check_fields=check_fields,
    reads=lambda spec, expression: prompt_reads(spec, spec.print_content), output_type=lambda spec: STR,
)
