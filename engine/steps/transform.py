"""The transform step: author Python run in a child process over a copy of the state, isolated
where the machine allows (orch.sandbox); what it assigns to `result` is the step's value."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

from orch.definition.spec import StepBase, TransformStep
from orch.errors import StepTimeout
from orch.sandbox import TransformError, check_transform_syntax, run_transform
from orch.steps.base import FieldReport, StepContext, StepKind, StepResult
from orch.steps.subflow import KIND as SUBFLOW

if TYPE_CHECKING:
    from orch.definition.compiled import CompiledGraph


async def run_transform_step(ctx: StepContext) -> StepResult:
    s = ctx.step.spec
    policy = ctx.services.transforms
    try:
        if policy.sandbox is None:  # refused graphs are left out at load time; this is the backstop
            raise TransformError(policy.refusal())
        result = await run_transform(s.transform_code or "", dict(ctx.state), sandbox=policy.sandbox,
                                     limits=ctx.services.transform_limits)
    except (TransformError, StepTimeout) as exc:
        exc.step_id = s.id
        exc.message = f"step {s.id}: {exc.message}"
        exc.args = (exc.message,)
        raise
    return StepResult(output=result)


def check_fields(spec: StepBase, report: FieldReport) -> None:
    report.need("transform_code", bool(spec.transform_code), "assign the step's value to `result`")
    if spec.transform_code:
        err = check_transform_syntax(spec.transform_code)
        if err:
            report.add("bad-transform", f"transform_code: {err}",
                       "fix the Python syntax; the code assigns the step's value to `result`")


KIND = StepKind(name="transform", spec=TransformStep, executor=run_transform_step, check_fields=check_fields)


def transform_users(graphs: Mapping[str, "CompiledGraph"]) -> dict[str, list[tuple[str, str | None]]]:
    """The orchestrations of `graphs` that run transform code, each with the steps that do:
    (step id, None) for a transform step, (step id, orchestration id) for a step that runs, as
    a sub-orchestration, an orchestration that does."""
    found: dict[str, list[tuple[str, str | None]]] = {}
    for oid, graph in graphs.items():
        steps: list[tuple[str, str | None]] = [(sid, None) for sid, cs in graph.steps.items() if cs.kind.name == KIND.name]
        if steps:
            found[oid] = steps
    changed = True
    while changed:
        changed = False
        for oid, graph in graphs.items():
            for sid, cs in graph.steps.items():
                if oid in found or cs.kind.name != SUBFLOW.name:
                    continue
                child = graph.agents[cs.spec.agent_id or ""].orchestration_id
                if child in found:
                    found[oid], changed = [(sid, child)], True
    return found
