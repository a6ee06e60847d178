"""The value of a router's compiled expression over the run's state (if_else, switch)."""

from __future__ import annotations

from orch.errors import ExpressionError, StepFailed
from orch.steps.base import StepContext


def evaluate(ctx: StepContext) -> object:
    """The expression's value; a failure fails the step, naming the expression."""
    expr = ctx.step.expression
    assert expr is not None, "the compiler gives steps with an expression_field their expression"
    try:
        return expr.evaluate(ctx.state)
    except ExpressionError as exc:
        raise StepFailed(f"step {ctx.step.spec.id}: expression '{expr.source}' failed: {exc.message}",
                         step_id=ctx.step.spec.id) from None
