"""Leaving out, at load time, the orchestrations whose transform steps this server refuses to run.

An orchestration is left out when it has a transform step, or when one of its steps runs (as a
sub-orchestration) an orchestration that is left out: otherwise it would load and fail later.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

from orch.errors import Problem
from orch.sandbox.isolation import INSTALL_HINT, TransformPolicy

if TYPE_CHECKING:
    from orch.definition.compile import CompiledGraph

REFUSAL_CODE = "transform-not-isolated"


def left_out_because(problems: list[Problem]) -> str:
    """How the banner and the log say why an orchestration was left out."""
    if problems and all(p.code == REFUSAL_CODE for p in problems):
        return "its transforms cannot run on this server"
    return "it does not validate"


def refused_graphs(graphs: Mapping[str, "CompiledGraph"], policy: TransformPolicy) -> dict[str, list[Problem]]:
    """The orchestrations of `graphs` to leave out under `policy`, each with its problems."""
    if policy.mode != "refused":
        return {}
    refused: dict[str, list[Problem]] = {}
    for oid, graph in graphs.items():
        found = [_problem(graph, sid, policy.refusal()) for sid, cs in graph.steps.items() if cs.type == "transform"]
        if found:
            refused[oid] = found
    changed = True
    while changed:
        changed = False
        for oid, graph in graphs.items():
            if oid in refused:
                continue
            for cs in graph.steps.values():
                step = cs.spec
                agent = graph.agents.get(step.agent_id or "") if cs.type == "agent" else None
                child = agent.orchestration_id if agent is not None and agent.type == "orchestrator" else None
                if child in refused:
                    message = f"step {step.id} runs orchestration '{child}', which has transform steps; {policy.refusal()}"
                    refused[oid] = [_problem(graph, step.id, message)]
                    changed = True
                    break
    return refused


def _problem(graph: "CompiledGraph", step_id: str, message: str) -> Problem:
    return Problem(REFUSAL_CODE, message, file=graph.file, step_id=step_id, hint=INSTALL_HINT, orchestration_id=graph.id)
