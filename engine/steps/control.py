"""Steps that only steer the run: parallel, end, if_else, switch."""

from __future__ import annotations

from orch.errors import StepFailed
from orch.definition.expressions import ExpressionError
from orch.steps.base import StepContext, StepResult


async def run_parallel(ctx: StepContext) -> StepResult:
    return StepResult()  # the scheduler starts the branches


async def run_end(ctx: StepContext) -> StepResult:
    return StepResult()


async def run_if_else(ctx: StepContext) -> StepResult:
    value = bool(_evaluate(ctx))
    return StepResult(output=value, route="true" if value else "false")


async def run_switch(ctx: StepContext) -> StepResult:
    value = _evaluate(ctx)
    return StepResult(output=value, route=str(value))


def _evaluate(ctx: StepContext) -> object:
    expr = ctx.step.expression
    assert expr is not None, "compiled if_else/switch steps always carry an expression"
    try:
        return expr.evaluate(ctx.state)
    except ExpressionError as exc:
        raise StepFailed(f"step {ctx.step.spec.id}: expression '{expr.source}' failed: {exc.message}",
                         step_id=ctx.step.spec.id) from None
