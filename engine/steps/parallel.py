"""The parallel step: starts its `parallel_branches` concurrently; its `next_step_id` is the join,
which runs once every branch has arrived or ended (even if all ended early). Writes nothing."""

from __future__ import annotations

from typing import Container, Iterator

from orch.definition.spec import ParallelStep, StepBase
from orch.steps.base import FieldReport, Link, StepContext, StepKind, StepResult, no_writes


async def run_parallel(ctx: StepContext) -> StepResult:
    return StepResult()  # the scheduler starts the branches


def branches(spec: StepBase) -> tuple[tuple[str, ...], ...]:
    """Each branch as a list of step ids: one id, or several run one after the other."""
    return tuple((br,) if isinstance(br, str) else tuple(br) for br in spec.parallel_branches)


def links(spec: StepBase, known: Container[str]) -> Iterator[Link]:
    for i, branch in enumerate(branches(spec)):
        prev = spec.id
        for sid in branch:
            yield Link(prev, sid, "branch", f"parallel_branches[{i}]")
            prev = sid if sid in known else prev


def check_fields(spec: StepBase, report: FieldReport) -> None:
    report.need("parallel_branches", bool(spec.parallel_branches), "list the branches to run concurrently")


KIND = StepKind(
    name="parallel", spec=ParallelStep, executor=run_parallel, check_fields=check_fields, writes=no_writes,
    branches=branches, links=links, in_loop=False, shape="group",
)
