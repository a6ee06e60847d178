"""What a run becomes when something happens to it: a step starts or finishes, a gate is asked
or answered, the run completes, fails or is cancelled.

Each function takes the run's value (`RunValue`) and what happened, with the time as an
argument, and returns the effects: the events to emit, the step records to store, the tokens
that are now ready. No I/O, no clock, no awaits: the driver (engine.run.driver) executes steps,
emits the events and commits the records through the store; everything it decides is here, and
tests/engine/test_transition.py drives it without a loop or a database. The value is updated in
place (its state, frontier and counters): copying a long run's state for every step would cost
more than the step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from orch.cost import format_cost_limit_message
from orch.definition.compiled import CompiledGraph, CompiledStep
from orch.errors import CostLimitExceeded, EngineError, RunError, StepFailed, TurnLimitExceeded
from orch.events import (
    Done, Event, HumanInputRequired, LoopLimitReached, OrchestrationComplete, OrchestrationError, RoutingDecision,
    StepComplete, StepError, StepStart, preview,
)
from orch.run import scheduler
from orch.run.model import Gate, StepRecord
from orch.run.scheduler import Frontier, Token
from orch.steps.base import NO_OUTPUT, StepResult

_json = msgspec.json.Encoder()


@dataclass(slots=True)
class RunValue:
    """A run as its driver holds it between checkpoints."""

    run_id: str
    graph: CompiledGraph
    state: dict[str, Any]
    frontier: Frontier
    gates: dict[str, Gate] = field(default_factory=dict)
    cost: float = 0.0
    turns: int = 0  # step executions so far (the max_total_turns budget)
    executed: int = 0  # step records that are not skips: "N steps executed"
    last_output: Any = None
    response: Any = NO_OUTPUT  # the last output written to an output_key
    failure: RunError | None = None  # set once the run must fail; in-flight steps then stop

    def response_text(self) -> str:
        if self.response is NO_OUTPUT or self.response is None:
            return f"Orchestration completed. {self.executed} steps executed."
        return self.response if isinstance(self.response, str) else _json.encode(self.response).decode()


@dataclass(slots=True)
class StepOutcome:
    """One step execution as it ended."""

    token: Token
    step: CompiledStep
    iteration: int
    started: float
    ended: float
    result: StepResult | None
    error: EngineError | None
    turns: int = 0
    cost: float = 0.0
    body: list[StepRecord] = field(default_factory=list)  # records of loop body executions


@dataclass(slots=True)
class Effects:
    events: list[Event] = field(default_factory=list)
    records: list[StepRecord] = field(default_factory=list)
    ready: list[Token] = field(default_factory=list)  # tokens to start now
    fails_run: bool = False  # the failure is stored with these records
    completes_run: bool = False  # nothing is left to run: the run completes with these records
    gate_changed: bool = False  # the run's open gates changed
    cancel_child: str | None = None  # a sub-orchestration run started in vain, to stop


def record(run_id: str, step: CompiledStep, status: str, iteration: int, turns: int, cost: float, started: float,
           ended: float, writes: dict[str, Any] | bytes, error: EngineError | None) -> StepRecord:
    return StepRecord(
        run_id=run_id, idx=0, step_id=step.spec.id, step_name=step.spec.label, type=step.type, status=status,
        iteration=iteration, turns=turns, cost_usd=cost, started_at=started, ended_at=ended,
        output_key=step.spec.output_key, error=error.message if error is not None else None,
        writes=writes if isinstance(writes, bytes) else _json.encode(writes),
    )


def _complete_event(step: CompiledStep, status: str, output: Any, turns: int, cost: float, started: float,
                    ended: float) -> StepComplete:
    spec = step.spec
    return StepComplete(step_id=spec.id, step_name=spec.label, step_type=step.type, status=status,
                        output_key=spec.output_key, output=preview(None if output is NO_OUTPUT else output),
                        turns=turns, cost_usd=cost, duration_seconds=round(ended - started, 6))


# -- starting a step ---------------------------------------------------------------------------


@dataclass(slots=True)
class Start:
    """How a ready token goes on: `run` its step (at `iteration`), or not (`effects` say what
    happened instead: a skip by the loop guard, a wait at an open gate, the turn limit)."""

    run: bool
    iteration: int = 0
    effects: Effects = field(default_factory=Effects)


def start_step(v: RunValue, token: Token, now: float) -> Start:
    graph, step = v.graph, v.graph.steps[token.step_id]
    if token.step_id in v.gates:  # its question is open: the branch waits for the same answer
        return Start(False, effects=Effects(ready=scheduler.park(graph, v.frontier, token)))
    if scheduler.loop_guard(graph, v.frontier, token.step_id):
        nxt = step.next[0] if step.next else None
        skipped = record(v.run_id, step, "skipped", v.frontier.iterations.get(step.spec.id, 0), 0, 0.0, now, now,
                         {}, None)
        effects = Effects(events=[LoopLimitReached(step_id=step.spec.id, max_iterations=step.spec.max_iterations,
                                                   next_step_id=nxt)], records=[skipped])
        effects.ready = scheduler.advance(graph, v.frontier, token, None, skipped=True)
        effects.completes_run = _nothing_left(v, effects.ready)
        return Start(False, effects=effects)
    if v.turns >= graph.orchestration.max_total_turns:
        v.failure = TurnLimitExceeded(f"Global turn limit ({graph.orchestration.max_total_turns}) exceeded")
        return Start(False)
    v.turns += 1
    iteration = scheduler.count_iteration(v.frontier, step.spec.id)
    return Start(True, iteration, Effects(events=[StepStart(step_id=step.spec.id, step_name=step.spec.label,
                                                            step_type=step.type, iteration=iteration)]))


def start_substep(v: RunValue, step: CompiledStep, iteration: int) -> StepStart:
    """A loop body step starts inside its loop step (it counts as a turn too)."""
    if v.turns >= v.graph.orchestration.max_total_turns:
        raise TurnLimitExceeded(f"Global turn limit ({v.graph.orchestration.max_total_turns}) exceeded",
                                step_id=step.spec.id)
    v.turns += 1
    return StepStart(step_id=step.spec.id, step_name=step.spec.label, step_type=step.type, iteration=iteration)


def substep_finished(v: RunValue, parent_body: list[StepRecord], out: StepOutcome) -> StepComplete:
    """A loop body step ended: its record joins the loop step's; the loop decides what its
    error means."""
    status = "completed" if out.error is None else "failed"
    output = None if out.result is None or out.result.output is NO_OUTPUT else out.result.output
    parent_body.extend(out.body)
    parent_body.append(record(v.run_id, out.step, status, out.iteration, out.turns, out.cost, out.started,
                              out.ended, {}, out.error))
    return _complete_event(out.step, status, output, out.turns, out.cost, out.started, out.ended)


# -- cost --------------------------------------------------------------------------------------


def add_cost(v: RunValue, amount: float, step_id: str) -> None:
    """Spend of one LLM call; raises CostLimitExceeded once the run is over its limit."""
    v.cost += amount
    limit = v.graph.orchestration.max_total_cost_usd
    if limit is not None and v.cost > limit and v.failure is None:
        v.failure = CostLimitExceeded(format_cost_limit_message(v.cost, limit), step_id=step_id)
    if v.failure is not None and isinstance(v.failure, CostLimitExceeded):
        raise v.failure


# -- a step finished ---------------------------------------------------------------------------


def step_finished(v: RunValue, out: StepOutcome, now: float) -> Effects:
    """The step's writes, record and events; where the run goes next."""
    step, spec = out.step, out.step.spec
    error = out.error
    if error is None and v.failure is not None and isinstance(v.failure, CostLimitExceeded):
        error = v.failure
    if error is None and out.result is not None and out.result.gate is not None:
        return _park(v, out, now)
    writes: dict[str, Any] | bytes = {}
    if error is None and out.result is not None:
        try:
            writes = _apply_writes(v, step, out.result)
        except RunError as exc:
            error = exc
    if error is not None:
        events: list[Event] = [StepError(step_id=spec.id, error=error.message)]
        if spec.on_error != "continue" or isinstance(error, CostLimitExceeded):
            # Set before the commit: steps finishing alongside must not complete the run.
            v.failure = v.failure or (error if isinstance(error, RunError) else RunError(error.message))
            effects = _commit(v, out, "failed", {}, error, route=None, retire=False, events=events)
            effects.fails_run = True
            return effects
        return _commit(v, out, "failed", {}, error, route=None, events=events)
    assert out.result is not None
    events = []
    if step.kind.announces_route:  # other routers report their own decision, with reasoning
        target = scheduler.targets(step, out.result.route)
        events.append(RoutingDecision(step_id=spec.id, decision=str(out.result.route),
                                      target_step_id=target[0] if target else None, reasoning=out.result.reasoning))
    return _commit(v, out, "completed", writes, None, route=out.result.route, output=out.result.output, events=events)


def _apply_writes(v: RunValue, step: CompiledStep, result: StepResult) -> bytes:
    """Write the step's outputs to the state; returns them encoded, as its record stores them.
    A value a key cannot hold changes nothing and fails the step."""
    writes: dict[str, Any] = {}
    if step.spec.output_key and result.output is not NO_OUTPUT:
        writes[step.spec.output_key] = result.output
    writes.update(result.extra_writes)
    try:
        encoded = _json.encode(writes)
    except (TypeError, ValueError) as exc:
        raise StepFailed(f"step {step.spec.id}: its output cannot be stored as JSON ({exc})",
                         step_id=step.spec.id) from None
    trial = {k: v.state.get(k) for k in writes}
    for key, value in writes.items():
        v.graph.schema.apply(trial, key, value, step_id=step.spec.id)
    v.state.update(trial)
    if step.spec.output_key and result.output is not NO_OUTPUT:
        v.last_output = v.response = trial[step.spec.output_key]
    return encoded


def _commit(v: RunValue, out: StepOutcome, status: str, writes: dict[str, Any] | bytes, error: EngineError | None,
            *, route: str | None, events: list[Event], output: Any = NO_OUTPUT, retire: bool = True) -> Effects:
    events.append(_complete_event(out.step, status, output, out.turns, out.cost, out.started, out.ended))
    records = [*out.body, record(v.run_id, out.step, status, out.iteration, out.turns, out.cost, out.started,
                                 out.ended, writes, error)]
    effects = Effects(events=events, records=records)
    if retire:
        effects.ready = scheduler.advance(v.graph, v.frontier, out.token, route)
        effects.completes_run = _nothing_left(v, effects.ready)
    else:
        v.frontier.tokens.pop(out.token.id, None)
    return effects


def _nothing_left(v: RunValue, ready: list[Token]) -> bool:
    f = v.frontier
    return not ready and not f.tokens and not f.gates and v.failure is None


# -- gates -------------------------------------------------------------------------------------


def _park(v: RunValue, out: StepOutcome, now: float) -> Effects:
    gate = out.result.gate  # type: ignore[union-attr]
    assert gate is not None
    spec = out.step.spec
    if spec.id in v.gates:  # it ran alongside the arrival that asked first
        v.frontier.iterations[spec.id] -= 1
        v.turns -= 1
        effects = Effects(ready=scheduler.park(v.graph, v.frontier, out.token))
        if gate.child_run_id and gate.child_run_id != v.gates[spec.id].child_run_id:
            effects.cancel_child = gate.child_run_id  # it started a child of its own: only the first asks
        return effects
    ready = scheduler.park(v.graph, v.frontier, out.token)
    v.gates[spec.id] = Gate(step_id=spec.id, prompt=gate.prompt, fields=gate.fields, agent_context=gate.agent_context,
                            deadline=now + gate.timeout_seconds, started_at=out.started, iteration=out.iteration,
                            child_run_id=gate.child_run_id)
    event = HumanInputRequired(step_id=spec.id, prompt=gate.prompt, fields=gate.fields,
                               agent_context=gate.agent_context)
    return Effects(events=[event], ready=ready, gate_changed=True)


def answer_gate(v: RunValue, step_id: str, answer: Any, now: float) -> Effects:
    """A gate's answer completes its human step: the answer goes to the step's output_key (or
    human_response) and to human_response, and the branch goes on."""
    gate = v.gates.pop(step_id)
    token = scheduler.unpark(v.frontier, step_id)
    assert token is not None, f"no token parked at {step_id}"
    step = v.graph.steps[step_id]
    writes = {step.spec.output_key or "human_response": answer, "human_response": answer}
    trial = {k: v.state.get(k) for k in writes}
    for key, value in writes.items():
        v.graph.schema.apply(trial, key, value, step_id=step_id)
    v.state.update(trial)
    v.last_output = v.response = answer
    event = _complete_event(step, "completed", answer, 0, 0.0, gate.started_at, now)
    done = record(v.run_id, step, "completed", gate.iteration, 0, 0.0, gate.started_at, now, writes, None)
    scheduler.advance(v.graph, v.frontier, token, None)
    return Effects(events=[event], records=[done], gate_changed=True)


def rerun_gate(v: RunValue, step_id: str) -> Effects:
    """A gate inside a sub-orchestration was answered: the parent's step runs again (at the
    same iteration, so it finds the same child run)."""
    v.gates.pop(step_id)
    token = scheduler.unpark(v.frontier, step_id)
    assert token is not None
    v.frontier.iterations[step_id] -= 1
    v.turns -= 1
    return Effects(gate_changed=True)


# -- endings -----------------------------------------------------------------------------------


def paused(v: RunValue) -> tuple[list[Event], float]:
    """Nothing runs and a gate waits: the run pauses until the first deadline."""
    return [Done(status="paused")], min(g.deadline for g in v.gates.values())


def completed(v: RunValue) -> tuple[list[Event], str]:
    response = v.response_text()
    return [OrchestrationComplete(status="completed", final_state=v.state, response=response, total_cost_usd=v.cost),
            Done(status="completed")], response


def failed(error: RunError) -> list[Event]:
    return [OrchestrationError(error=error.message), Done(status="failed")]


def cancelled() -> list[Event]:
    return [OrchestrationError(error="Run cancelled"), Done(status="cancelled")]


def stopped_records(v: RunValue, stopped: list[tuple[CompiledStep, int, int, float, float, list[StepRecord]]],
                    reason: str, now: float) -> list[StepRecord]:
    """In-flight steps stopped by a failure or a cancel: each is recorded as failed with what
    it spent (step, iteration, turns, cost, started, loop body records)."""
    records: list[StepRecord] = []
    for step, iteration, turns, cost, started, body in stopped:
        records.extend(body)
        records.append(record(v.run_id, step, "failed", iteration, turns, cost, started, now, {}, RunError(reason)))
    return records
