"""The if_else step: `if_condition` evaluated over the state routes to `if_true_step_id` or
`if_false_step_id`; a side with no target goes to `next_step_id` (or ends the branch if there is
none). Writes the boolean to `output_key`."""

from __future__ import annotations

from typing import Container, Iterator, Mapping

from orch.definition.expressions import Expression
from orch.definition.spec import IfElseStep, StepBase
from orch.definition.state import TypeSpec
from orch.steps.base import FieldReport, Link, StepContext, StepKind, StepResult, StepView
from orch.steps.condition import evaluate


async def run_if_else(ctx: StepContext) -> StepResult:
    value = bool(evaluate(ctx))
    return StepResult(output=value, route="true" if value else "false")


def routes(spec: StepBase) -> Mapping[str, str | None]:
    return {"true": spec.if_true_step_id, "false": spec.if_false_step_id}


def route(step: StepView, label: str | None) -> tuple[str, ...] | None:
    target = step.routes.get(label) if label is not None else None
    return (target,) if target else None


def links(spec: StepBase, known: Container[str]) -> Iterator[Link]:
    yield Link(spec.id, spec.if_true_step_id, "true", "if_true_step_id")
    yield Link(spec.id, spec.if_false_step_id, "false", "if_false_step_id")


def reads(spec: StepBase, expression: Expression | None) -> set[str]:
    return set(spec.input_keys) | (expression.state_keys if expression is not None else set())


def check_fields(spec: StepBase, report: FieldReport) -> None:
    report.need("if_condition", bool(spec.if_condition), "e.g. state.score > 0.5")
    report.need("if_true_step_id", bool(spec.if_true_step_id or spec.if_false_step_id or spec.next_ids),
                "set if_true_step_id and/or if_false_step_id")


KIND = StepKind(
    name="if_else", spec=IfElseStep, executor=run_if_else, check_fields=check_fields, reads=reads,
    output_type=lambda spec: TypeSpec("bool"), expression_field="if_condition", routes=routes, route=route,
    links=links, announces_route=True, shape="decision",
)
