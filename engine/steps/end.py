"""The end step: its branch ends here; when nothing else runs, the run completes."""

from __future__ import annotations

from orch.definition.spec import EndStep
from orch.steps.base import StepContext, StepKind, StepResult, ends_branch, no_writes


async def run_end(ctx: StepContext) -> StepResult:
    return StepResult()


KIND = StepKind(
    name="end", spec=EndStep, executor=run_end, writes=no_writes, route=ends_branch, terminal=True,
    limited=False, in_loop=False, shape="stop",
)
