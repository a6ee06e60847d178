"""The loop step: its body steps in order, `loop_count` times or once per item of `loop_over`.

Body steps see the state as it was when the loop started, plus what earlier body steps of the
same iteration wrote (and, for a sequential loop, what earlier iterations wrote), plus the
current item under `item_key`. Their writes stay inside the loop; the loop's own output is
`{body step name: [output per iteration]}`.
"""

from __future__ import annotations

import asyncio
from typing import Any, Container, Iterator

from orch.definition.expressions import Expression
from orch.definition.spec import LoopStep, StepBase
from orch.definition.state import ANY, TypeSpec, type_name
from orch.errors import StepFailed
from orch.steps.base import NO_OUTPUT, Body, FieldReport, Link, StepContext, StepKind, StepResult


async def run_loop(ctx: StepContext) -> StepResult:
    s = ctx.step.spec
    if s.loop_over:
        items = ctx.state.get(s.loop_over)
        if items is None:
            items = []
        if not isinstance(items, list):
            raise StepFailed(f"step {s.id}: loop_over '{s.loop_over}' must be a list, got {type_name(items)}", step_id=s.id)
    else:
        items = list(range(s.loop_count))
    names = {sid: (ctx.graph.steps[sid].spec.name or sid) for sid in s.loop_step_ids}
    outputs: dict[str, list[Any]] = {names[sid]: [None] * len(items) for sid in s.loop_step_ids}
    total = StepResult()

    async def iteration(i: int, item: Any, scope: dict[str, Any]) -> None:
        if s.loop_over:
            scope[s.item_key] = item
        for sid in s.loop_step_ids:
            result = await ctx.run_substep(sid, scope, i + 1)  # recorded with its own turns and cost
            value = None if result.output is NO_OUTPUT else result.output
            outputs[names[sid]][i] = value
            key = ctx.graph.steps[sid].spec.output_key
            if key and result.output is not NO_OUTPUT:
                ctx.graph.schema.apply(scope, key, value, step_id=sid)
            for extra_key, extra in result.extra_writes.items():
                ctx.graph.schema.apply(scope, extra_key, extra, step_id=sid)

    if s.loop_over and s.max_concurrency > 1:
        limit = asyncio.Semaphore(s.max_concurrency)

        async def bounded(i: int, item: Any) -> None:
            async with limit:
                await iteration(i, item, dict(ctx.state))

        try:
            async with asyncio.TaskGroup() as tg:
                for i, item in enumerate(items):
                    tg.create_task(bounded(i, item))
        except BaseExceptionGroup as group:  # report the first real error, not the group
            first = _first_error(group)
            if first is None:
                raise
            raise first from None
    else:
        scope = dict(ctx.state)
        for i, item in enumerate(items):
            await iteration(i, item, scope)
    total.output = outputs
    return total


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            inner = _first_error(exc)
            if inner is not None:
                return inner
        elif not isinstance(exc, asyncio.CancelledError):
            return exc
    return None


def body(spec: StepBase) -> Body:
    return Body(tuple(spec.loop_step_ids), frozenset({spec.item_key}))


def links(spec: StepBase, known: Container[str]) -> Iterator[Link]:
    for sid in spec.loop_step_ids:
        yield Link(spec.id, sid, "body", "loop_step_ids")


def reads(spec: StepBase, expression: Expression | None) -> set[str]:
    return set(spec.input_keys) | ({spec.loop_over} if spec.loop_over else set())


def check_fields(spec: StepBase, report: FieldReport) -> None:
    report.need("loop_step_ids", bool(spec.loop_step_ids), "list the steps the loop runs")
    if spec.loop_over is None and spec.loop_count < 1:
        report.add("invalid-value", f"loop_count must be at least 1, got {spec.loop_count}", "set it to 1 or more")
    if spec.max_concurrency < 1:
        report.add("invalid-value", f"max_concurrency must be at least 1, got {spec.max_concurrency}",
                   "set it to 1 or more")
    for b in spec.loop_step_ids:
        found = report.step(b)
        if found is not None and not found[1].in_loop:
            report.add("unsupported-in-loop", f"a {found[0].type} step ('{b}') cannot be part of a loop body",
                       "move it before or after the loop")
        if b == spec.id:
            report.add("unsupported-in-loop", "a loop cannot contain itself")


KIND = StepKind(
    name="loop", spec=LoopStep, executor=run_loop, check_fields=check_fields, reads=reads,
    output_type=lambda spec: TypeSpec("dict", ANY), links=links, body=body,
    list_input=lambda spec: spec.loop_over, in_loop=False, shape="group",
)
