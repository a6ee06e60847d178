"""The switch step: `switch_expression` evaluated over the state picks the `switch_cases` entry
named by its value as text (a null target ends the branch). No match goes to
`switch_default_step_id`, else to `next_step_id`, else the branch ends."""

from __future__ import annotations

from typing import Container, Iterator, Mapping

from orch.definition.expressions import Expression
from orch.definition.spec import StepBase, SwitchStep
from orch.steps.base import FieldReport, Link, StepContext, StepKind, StepResult, StepView
from orch.steps.condition import evaluate


async def run_switch(ctx: StepContext) -> StepResult:
    value = evaluate(ctx)
    return StepResult(output=value, route=str(value))


def routes(spec: StepBase) -> Mapping[str, str | None]:
    return dict(spec.switch_cases)


def route(step: StepView, label: str | None) -> tuple[str, ...] | None:
    if label is not None and label in step.routes:
        target = step.routes[label]
        return (target,) if target else ()
    default = step.spec.switch_default_step_id
    return (default,) if default else None


def links(spec: StepBase, known: Container[str]) -> Iterator[Link]:
    for value, target in spec.switch_cases.items():
        yield Link(spec.id, target, f"case:{value}", f"switch_cases.{value}")
    yield Link(spec.id, spec.switch_default_step_id, "default", "switch_default_step_id")


def reads(spec: StepBase, expression: Expression | None) -> set[str]:
    return set(spec.input_keys) | (expression.state_keys if expression is not None else set())


def check_fields(spec: StepBase, report: FieldReport) -> None:
    report.need("switch_expression", bool(spec.switch_expression), "e.g. state.category")
    report.need("switch_cases", bool(spec.switch_cases or spec.switch_default_step_id),
                "map values to step ids, or set switch_default_step_id")


KIND = StepKind(
    name="switch", spec=SwitchStep, executor=run_switch, check_fields=check_fields, reads=reads,
    expression_field="switch_expression", routes=routes, route=route, links=links, announces_route=True,
    shape="decision",
)
