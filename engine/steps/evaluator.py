"""The evaluator step: one LLM call that picks a label of `route_map`; the step goes where the
label leads (null ends the branch).

An evaluator's answer is read leniently, because models decorate: the first line matches a label
when it equals one once quotes, markdown and punctuation are stripped (case-insensitive, `_`, `-`
and spaces interchangeable); else the first label named anywhere as a whole word, longer labels
winning at the same place; else the first label of `route_map`, with a reasoning that says so.
"""

from __future__ import annotations

import re
from typing import Container, Iterator, Mapping

from orch.definition.expressions import Expression
from orch.definition.spec import EvaluatorStep, StepBase
from orch.definition.state import STR
from orch.errors import StepFailed
from orch.events import RoutingDecision
from orch.providers.base import Message
from orch.steps.base import FieldReport, Link, StepContext, StepKind, StepResult, StepView, prompt_reads
from orch.steps.prompting import call_model, request_for, resolve_model, system_prompt, user_prompt

_DECORATION = " \t*_`\"'#>.,;:!?()[]{}-"
_LEAD_IN = re.compile(r"^(?:label|answer|decision|route|choice)\s*:\s*", re.I)
_REASON = re.compile(r"^\s*[*_]*reason(?:ing)?[*_]*\s*:\s*(.*)", re.I | re.S | re.M)


async def run_evaluator(ctx: StepContext) -> StepResult:
    spec = ctx.step.spec
    labels = list(spec.route_map)
    if not labels:
        raise StepFailed(f"step {spec.id}: evaluator has an empty route_map", step_id=spec.id)
    provider, model = resolve_model(ctx)
    messages = [
        Message("system", system_prompt(ctx, label_instructions(labels, spec.route_descriptions))),
        Message("user", user_prompt(ctx, spec.evaluator_prompt or spec.prompt_template, ask_json=False)),
    ]
    completion, cost = await call_model(ctx, provider, request_for(ctx, model, messages))
    label, reasoning = choose_label(completion.text, labels)
    ctx.emit(RoutingDecision(step_id=spec.id, decision=label, target_step_id=spec.route_map[label],
                             reasoning=reasoning))
    return StepResult(output=label, route=label, reasoning=reasoning, turns=1, cost_usd=cost)


def label_instructions(labels: list[str], descriptions: dict[str, str]) -> str:
    lines = ["Decide how the workflow continues by choosing exactly one of these labels:"]
    for label in labels:
        described = descriptions.get(label, "").strip()
        lines.append(f"- {label}: {described}" if described else f"- {label}")
    lines.append(f"Labels: {' | '.join(labels)}")
    lines.append("Answer with exactly one label on the first line, then a line `Reason: <why>`.")
    return "\n".join(lines)


def choose_label(answer: str, labels: list[str]) -> tuple[str, str]:
    """The label an evaluator's answer names and the reasoning it gave."""
    text = answer.strip()
    first, _, rest = text.partition("\n")
    wanted = _normalise(_LEAD_IN.sub("", first.strip(_DECORATION)))
    label = next((lb for lb in labels if _normalise(lb) == wanted), None)
    if label is not None:
        return label, _reason(rest) or _reason(text) or rest.strip()
    alternatives = "|".join(
        "[-_\\s]+".join(re.escape(part) for part in re.split(r"[-_\s]+", lb))
        for lb in sorted(labels, key=len, reverse=True)
    )
    match = re.search(rf"(?<![\w-])(?:{alternatives})(?![\w-])", text, re.I)
    if match is not None:
        named = _normalise(match.group(0))
        label = next(lb for lb in sorted(labels, key=len, reverse=True) if _normalise(lb) == named)
        return label, _reason(text) or text
    return labels[0], f'answer named no label ("{text[:80]}"); fell back to the first label \'{labels[0]}\''


def _normalise(text: str) -> str:
    return re.sub(r"[-_\s]+", " ", text.strip(_DECORATION)).lower()


def _reason(text: str) -> str:
    match = _REASON.search(text)
    return match.group(1).strip() if match else ""


def routes(spec: StepBase) -> Mapping[str, str | None]:
    return dict(spec.route_map)


def route(step: StepView, label: str | None) -> tuple[str, ...] | None:
    if label is None or label not in step.routes:
        return None
    target = step.routes[label]
    return (target,) if target else ()


def links(spec: StepBase, known: Container[str]) -> Iterator[Link]:
    for label, target in spec.route_map.items():
        yield Link(spec.id, target, f"route:{label}", f"route_map.{label}")


def reads(spec: StepBase, expression: Expression | None) -> set[str]:
    return prompt_reads(spec, spec.evaluator_prompt or spec.prompt_template)


def check_fields(spec: StepBase, report: FieldReport) -> None:
    report.need("route_map", bool(spec.route_map), "map each label the LLM may pick to a step id (or null to end)")


KIND = StepKind(
    name="evaluator", spec=EvaluatorStep, executor=run_evaluator, check_fields=check_fields, reads=reads,
    output_type=lambda spec: STR, routes=routes, route=route, links=links, uses_agent=True, shape="decision",
)
