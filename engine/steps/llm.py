"""The llm step: one completion, no tools; its answer (parsed as JSON for dict and list output
keys) is the step's value."""

from __future__ import annotations

from orch.definition.spec import LlmStep
from orch.steps.base import StepContext, StepKind, StepResult, prompt_reads
from orch.steps.prompting import build_messages, call_model, parse_output, request_for, resolve_model


async def run_llm(ctx: StepContext) -> StepResult:
    provider, model = resolve_model(ctx)
    completion, cost = await call_model(ctx, provider, request_for(ctx, model, build_messages(ctx)))
    return StepResult(output=parse_output(ctx, completion.text), turns=1, cost_usd=cost)


KIND = StepKind(
    name="llm", spec=LlmStep, executor=run_llm, reads=lambda spec, expression: prompt_reads(spec, spec.prompt_template),
    uses_agent=True,
)
