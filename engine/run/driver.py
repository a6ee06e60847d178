"""The async loop of one run: start ready steps as tasks, checkpoint each finished step in one
transaction before anything after it starts, pause at gates, stop on limits and failures."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Coroutine, Mapping

import msgspec

from orch.cost import format_cost_limit_message
from orch.definition.compiled import CompiledGraph, CompiledStep
from orch.errors import CostLimitExceeded, EngineError, RunError, RunFenced, RunTimeout, StepFailed, TurnLimitExceeded
from orch.events import (
    Done, Event, HumanInputRequired, LoopLimitReached, OrchestrationComplete, OrchestrationError, RunEvents,
    StepComplete, StepError, StepStart, preview,
)
from orch.run import scheduler
from orch.run.host import RunHost
from orch.run.model import Checkpoint, Gate, Run, RunStatus, StepRecord
from orch.run.results import HistoryRow, RunResult, build_result, history_rows
from orch.run.scheduler import Frontier, Token
from orch.run.stepctx import StepCtx, _Finished, execute_step
from orch.steps.base import NO_OUTPUT, Executor, StepResult

# Events reach live subscribers before they are committed (with the step that emitted them),
# at most this many ahead of the stored ones (orch.events.RunEvents); a full backlog is
# committed on its own. A run recovered after a crash, or ended from another process, numbers
# its events from the last stored one plus this, so no number seen live is reused.
LIVE_EVENTS = 1000


_json = msgspec.json.Encoder()


class RunDriver:
    def __init__(self, host: RunHost, graph: CompiledGraph, run: Run, *, state: dict[str, Any],
                 frontier: Frontier, step_count: int, epoch: int, executed: int = 0) -> None:
        self.host = host
        self.store = host.store
        self.services = host.services
        self.children = host.children
        self.graph = graph
        self.run_id: str = run.id
        self.state = state
        self.frontier = frontier
        self.step_count = step_count  # step records written so far (their idx)
        self.epoch = epoch
        self.events = RunEvents(host.hub, self.run_id, run.last_seq, LIVE_EVENTS)
        self.cost: float = run.cost_usd
        self.turns: int = run.turns
        self.active_seconds: float = run.active_seconds
        self.last_output: Any = None
        self.response: Any = NO_OUTPUT
        self.failure: RunError | None = None
        self.gates: dict[str, Gate] = dict(run.gates)
        self.status = "running"
        self.cancel_requested = False
        self._began: float | None = None
        self.history: list[HistoryRow] = []  # what step_history shows of this run's step records
        self.failure_text: str | None = None
        self.depth: int = run.depth
        self.executed = executed
        self._tasks: dict[asyncio.Task[_Finished], Token] = {}
        self._ready: list[tuple[Token, CompiledStep, StepCtx]] = []  # started, not yet running
        self._contexts: dict[int, StepCtx] = {}
        self._event_flush: asyncio.Task[None] | None = None

    # -- events and cost ---------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        self.events.emit(event)
        if self.events.backlog_full and self._event_flush is None:
            self._event_flush = asyncio.get_running_loop().create_task(self._flush_events())

    async def skip_unstored_numbers(self) -> None:
        """After a crash: number events on past any the dead owner may have streamed, and
        store that before streaming anything."""
        self.events.skip()
        await self._checkpoint([])
        self.events.stored(self.events.seq)

    async def _flush_events(self) -> None:
        try:
            while self.events.backlog_full:
                await self._checkpoint([])
        except RunFenced:
            pass  # the run is someone else's now; the next checkpoint of this driver says so
        finally:
            self._event_flush = None

    def add_cost(self, amount: float, step_id: str) -> None:
        self.cost += amount
        limit = self.graph.orchestration.max_total_cost_usd
        if limit is not None and self.cost > limit and self.failure is None:
            self.failure = CostLimitExceeded(format_cost_limit_message(self.cost, limit), step_id=step_id)
        if self.failure is not None and isinstance(self.failure, CostLimitExceeded):
            raise self.failure

    # -- the loop ----------------------------------------------------------------------------

    async def drive(self) -> str:
        """Run until the run completes, pauses, fails or is cancelled; returns the status."""
        budget = self.graph.orchestration.timeout_minutes * 60 - self.active_seconds
        began = self._began = time.monotonic()
        try:
            for tok in list(self.frontier.tokens.values()):
                await self._start(tok)
            while (self._ready or self._tasks) and self.failure is None:
                remaining = budget - (time.monotonic() - began)
                if remaining <= 0:
                    self.failure = RunTimeout(
                        f"Run exceeded its time limit of {self.graph.orchestration.timeout_minutes:g} minutes")
                    break
                if len(self._ready) == 1 and not self._tasks:
                    # One step and nothing else in flight: run it here, without a task.
                    token, step, ctx = self._ready.pop()
                    try:
                        if remaining < step.spec.timeout_seconds:
                            async with asyncio.timeout(remaining):
                                fin = await self._execute(token, step, ctx, ctx.iteration)
                        else:
                            fin = await self._execute(token, step, ctx, ctx.iteration)
                    except TimeoutError:  # the run's own deadline; the step is recorded as failed
                        self.failure = RunTimeout(
                            f"Run exceeded its time limit of {self.graph.orchestration.timeout_minutes:g} minutes")
                        break
                    await self._finished(fin)
                    continue
                for token, step, ctx in self._ready:
                    task = asyncio.create_task(self._execute(token, step, ctx, ctx.iteration),
                                               name=f"{self.run_id}:{step.spec.id}")
                    self._tasks[task] = token
                self._ready.clear()
                done, _ = await asyncio.wait(self._tasks, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    self._tasks.pop(task)
                # Steps that finished together commit together (one group-commit transaction).
                await asyncio.gather(*(self._finished(task.result()) for task in done))
            self.active_seconds += time.monotonic() - began
            began = time.monotonic()
            if self.status != "completed":  # else it was committed with the last step's checkpoint
                if self.failure is not None:
                    await self._fail(self.failure)
                elif self.frontier.gates:
                    await self._pause()
                else:
                    await self._complete()
        except RunFenced:
            await self._abandon()
            self.status = "lost"
            return self.status
        except asyncio.CancelledError:
            if not self.cancel_requested:
                await self._abandon()
                raise
            if self.status != "running":  # it completed, paused or failed first: that stands
                await self._abandon()
                return self.status
            await self._unless_fenced(self.cancel())
            return self.status
        except Exception as exc:  # noqa: BLE001 - an engine bug must fail the run, not strand it
            await self._abandon()
            self.failure = RunError(f"internal error: {type(exc).__name__}: {exc}")
            await self._unless_fenced(self._fail(self.failure))
        finally:
            self.active_seconds += time.monotonic() - began
            if self._event_flush is not None:
                await asyncio.gather(self._event_flush, return_exceptions=True)
        return self.status

    async def _unless_fenced(self, ending: Coroutine[Any, Any, None]) -> None:
        """End the run with `ending`, unless the run was ended or taken over elsewhere meanwhile:
        then this driver has lost it, and nothing it wrote since counts."""
        try:
            await ending
        except RunFenced:
            await self._abandon()
            self.status = "lost"

    async def _start(self, token: Token) -> None:
        step = self.graph.steps[token.step_id]
        if token.step_id in self.gates:  # its question is open: no need to run it again
            await self._join_gate(token)
            return
        if scheduler.loop_guard(self.graph, self.frontier, token.step_id):
            nxt = step.next[0] if step.next else None
            self.emit(LoopLimitReached(step_id=step.spec.id, max_iterations=step.spec.max_iterations, next_step_id=nxt))
            now = time.time()
            await self._commit_step(token, step, "skipped", self.frontier.iterations.get(step.spec.id, 0),
                                    now, now, {}, skipped=True)
            return
        if self.turns >= self.graph.orchestration.max_total_turns:
            self.failure = TurnLimitExceeded(f"Global turn limit ({self.graph.orchestration.max_total_turns}) exceeded")
            return
        self.turns += 1
        iteration = scheduler.count_iteration(self.frontier, step.spec.id)
        self.emit(StepStart(step_id=step.spec.id, step_name=step.spec.label, step_type=step.type, iteration=iteration))
        ctx = StepCtx(self, step, self.state, iteration)
        self._ready.append((token, step, ctx))
        self._contexts[token.id] = ctx

    async def _execute(self, token: Token, step: CompiledStep, ctx: StepCtx, iteration: int) -> _Finished:
        started = time.time()
        result, error = await self.execute_step(step, ctx)
        return _Finished(token, step, iteration, started, time.time(), result, error, ctx.turns, ctx.cost, ctx)

    def executor_for(self, step: CompiledStep) -> Executor:
        return self.host.executor_for(step)

    async def execute_step(self, step: CompiledStep, ctx: StepCtx) -> tuple[StepResult | None, EngineError | None]:
        return await execute_step(self, step, ctx)

    async def run_substep(self, parent: StepCtx, step_id: str, state: Mapping[str, Any], iteration: int) -> StepResult:
        step = self.graph.steps[step_id]
        if self.turns >= self.graph.orchestration.max_total_turns:  # loop bodies count as turns too
            raise TurnLimitExceeded(f"Global turn limit ({self.graph.orchestration.max_total_turns}) exceeded",
                                    step_id=step_id)
        self.turns += 1
        self.emit(StepStart(step_id=step_id, step_name=step.spec.label, step_type=step.type, iteration=iteration))
        ctx = StepCtx(self, step, state, iteration, key=f"{parent.key}/{step_id}#{iteration}")
        started = time.time()
        result, error = await self.execute_step(step, ctx)
        ended = time.time()
        status = "completed" if error is None else "failed"
        output = None if result is None or result.output is NO_OUTPUT else result.output
        self.emit(StepComplete(step_id=step_id, step_name=step.spec.label, step_type=step.type, status=status,
                               output_key=step.spec.output_key, output=preview(output), turns=ctx.turns,
                               cost_usd=ctx.cost, duration_seconds=round(ended - started, 6)))
        parent.body.extend(ctx.body)
        parent.body.append(self._record(step, status, iteration, ctx.turns, ctx.cost, started, ended, {}, error))
        if error is not None:
            if step.spec.on_error != "continue":
                raise error
            return StepResult(turns=ctx.turns, cost_usd=ctx.cost)
        assert result is not None
        result.turns, result.cost_usd = ctx.turns, ctx.cost
        return result

    async def _finished(self, fin: _Finished) -> None:
        self._contexts.pop(fin.token.id, None)
        step, spec = fin.step, fin.step.spec
        error = fin.error
        if error is None and self.failure is not None and isinstance(self.failure, CostLimitExceeded):
            error = self.failure
        writes: dict[str, Any] | bytes = {}
        if error is None and fin.result is not None and fin.result.gate is not None:
            await self._park(fin)
            return
        if error is None and fin.result is not None:
            try:
                writes = self._apply_writes(step, fin.result)
            except RunError as exc:
                error = exc
        body = fin.ctx.body if fin.ctx is not None else []
        if error is not None:
            self.emit(StepError(step_id=spec.id, error=error.message))
            if spec.on_error != "continue" or isinstance(error, CostLimitExceeded):
                # Set before the commit: steps finishing alongside must not complete the run.
                self.failure = self.failure or (error if isinstance(error, RunError) else RunError(error.message))
                await self._commit_step(fin.token, step, "failed", fin.iteration, fin.started, fin.ended, {},
                                        error=error, turns=fin.turns, cost=fin.cost, body=body, retire=False)
                return
            await self._commit_step(fin.token, step, "failed", fin.iteration, fin.started, fin.ended, {},
                                    error=error, turns=fin.turns, cost=fin.cost, body=body, route=None)
            return
        assert fin.result is not None
        if step.kind.announces_route:  # other routers report their own decision, with reasoning
            from orch.events import RoutingDecision

            target = scheduler.targets(step, fin.result.route)
            self.emit(RoutingDecision(step_id=spec.id, decision=str(fin.result.route),
                                      target_step_id=target[0] if target else None, reasoning=fin.result.reasoning))
        await self._commit_step(fin.token, step, "completed", fin.iteration, fin.started, fin.ended, writes,
                                turns=fin.turns, cost=fin.cost, body=body, route=fin.result.route,
                                output=fin.result.output)

    def _apply_writes(self, step: CompiledStep, result: StepResult) -> bytes:
        """Write the step's outputs to the state; returns them encoded, as its record stores them."""
        writes: dict[str, Any] = {}
        if step.spec.output_key and result.output is not NO_OUTPUT:
            writes[step.spec.output_key] = result.output
        writes.update(result.extra_writes)
        try:
            encoded = _json.encode(writes)
        except (TypeError, ValueError) as exc:
            raise StepFailed(f"step {step.spec.id}: its output cannot be stored as JSON ({exc})",
                             step_id=step.spec.id) from None
        trial = {k: self.state.get(k) for k in writes}
        for key, value in writes.items():
            self.graph.schema.apply(trial, key, value, step_id=step.spec.id)
        self.state.update(trial)
        if step.spec.output_key and result.output is not NO_OUTPUT:
            self.last_output = trial[step.spec.output_key]
            self.response = self.last_output
        return encoded

    async def _commit_step(self, token: Token, step: CompiledStep, status: str, iteration: int, started: float,
                           ended: float, writes: dict[str, Any] | bytes, *, error: EngineError | None = None, turns: int = 0,
                           cost: float = 0.0, body: list[StepRecord] | None = None, route: str | None = None,
                           output: Any = NO_OUTPUT, skipped: bool = False, retire: bool = True) -> None:
        spec = step.spec
        if status != "skipped":
            self.emit(StepComplete(step_id=spec.id, step_name=spec.label, step_type=step.type, status=status,
                                   output_key=spec.output_key, output=preview(None if output is NO_OUTPUT else output),
                                   turns=turns, cost_usd=cost, duration_seconds=round(ended - started, 6)))
        records = list(body or [])
        records.append(self._record(step, status, iteration, turns, cost, started, ended, writes, error))
        new: list[Token] = []
        if retire:
            new = scheduler.advance(self.graph, self.frontier, token, route, skipped=skipped)
        else:
            self.frontier.tokens.pop(token.id, None)
        if status == "failed" and not retire and self.failure is not None:
            # The failure is durable with the step that caused it, so a crash right after cannot
            # let recovery carry on as if nothing happened.
            await self._checkpoint(records, status=RunStatus.FAILED, error=self.failure.message,
                                   response=self.failure.message)
            return
        if (retire and not new and not self._tasks and not self.frontier.tokens and not self.frontier.gates
                and self.failure is None):
            # The run's last step: its checkpoint and the run's completion share one transaction.
            await self._checkpoint(records, **self._completion())
            return
        await self._checkpoint(records)
        for tok in new:
            await self._start(tok)

    def _record(self, step: CompiledStep, status: str, iteration: int, turns: int, cost: float, started: float,
                ended: float, writes: dict[str, Any] | bytes, error: EngineError | None) -> StepRecord:
        return StepRecord(
            run_id=self.run_id, idx=0, step_id=step.spec.id, step_name=step.spec.label, type=step.type, status=status,
            iteration=iteration, turns=turns, cost_usd=cost, started_at=started, ended_at=ended,
            output_key=step.spec.output_key, error=error.message if error is not None else None,
            writes=writes if isinstance(writes, bytes) else _json.encode(writes),
        )

    async def _checkpoint(self, records: list[StepRecord], **ending: Any) -> None:
        """Commit the run's progress with `records` and the pending events; `ending` sets the
        optional columns of the Checkpoint (status, state, gates, response, ...)."""
        self.history.extend(history_rows(records))
        for r in records:
            self.step_count += 1
            self.executed += r.status != "skipped"
            r.idx = self.step_count
        events = self.events.take()
        active = ending.pop("active_seconds", None)
        if active is None:
            active = self.active_seconds + (time.monotonic() - self._began if self._began else 0.0)
        await self.store.checkpoint(Checkpoint(
            run_id=self.run_id, epoch=self.epoch, frontier=scheduler.encode(self.frontier), cost_usd=self.cost,
            turns=self.turns, steps_done=self.step_count, last_seq=self.events.seq, updated_at=time.time(),
            active_seconds=active, steps=records, events=events, **ending))
        if events:
            self.events.stored(events[-1][0])

    # -- gates and endings -------------------------------------------------------------------

    async def _park(self, fin: _Finished) -> None:
        gate = fin.result.gate  # type: ignore[union-attr]
        assert gate is not None
        spec = fin.step.spec
        if spec.id in self.gates:  # it ran alongside the arrival that asked first
            self.frontier.iterations[spec.id] -= 1
            self.turns -= 1
            if gate.child_run_id and gate.child_run_id != self.gates[spec.id].child_run_id:
                # It started a child of its own: only the first child's question is asked.
                await self.children.cancel_child(gate.child_run_id)
            await self._join_gate(fin.token)
            return
        freed = scheduler.park(self.graph, self.frontier, fin.token)
        self.gates[spec.id] = Gate(step_id=spec.id, prompt=gate.prompt, fields=gate.fields,
                                   agent_context=gate.agent_context, deadline=time.time() + gate.timeout_seconds,
                                   started_at=fin.started, iteration=fin.iteration, child_run_id=gate.child_run_id)
        self.emit(HumanInputRequired(step_id=spec.id, prompt=gate.prompt, fields=gate.fields,
                                     agent_context=gate.agent_context))
        await self._checkpoint([], gates=dict(self.gates))
        for tok in freed:
            await self._start(tok)

    async def _join_gate(self, token: Token) -> None:
        """A branch reached a gate whose question is still open (a fan-out inside a loop came
        round again): it waits for the same answer."""
        freed = scheduler.park(self.graph, self.frontier, token)
        await self._checkpoint([])
        for tok in freed:
            await self._start(tok)

    async def answer_gate(self, step_id: str, answer: Any) -> None:
        """Record a gate's answer as the human step's completion and release its token; drive()
        then starts what follows."""
        gate = self.gates.pop(step_id)
        token = scheduler.unpark(self.frontier, step_id)
        assert token is not None, f"no token parked at {step_id}"
        step = self.graph.steps[step_id]
        writes = {step.spec.output_key or "human_response": answer, "human_response": answer}
        trial = {k: self.state.get(k) for k in writes}
        for key, value in writes.items():
            self.graph.schema.apply(trial, key, value, step_id=step_id)
        self.state.update(trial)
        self.last_output = self.response = answer
        now = time.time()
        self.emit(StepComplete(step_id=step_id, step_name=step.spec.label, step_type=step.type, status="completed",
                               output_key=step.spec.output_key, output=preview(answer), turns=0, cost_usd=0.0,
                               duration_seconds=round(now - gate.started_at, 6)))
        record = self._record(step, "completed", gate.iteration, 0, 0.0, gate.started_at, now, writes, None)
        scheduler.advance(self.graph, self.frontier, token, None)
        await self._checkpoint([record], gates=dict(self.gates),
                               gate_deadline=None)

    async def rerun_gate(self, step_id: str) -> None:
        """A gate inside a sub-orchestration was answered: run the parent's step again (same
        iteration, so it finds the same child run)."""
        self.gates.pop(step_id)
        token = scheduler.unpark(self.frontier, step_id)
        assert token is not None
        self.frontier.iterations[step_id] -= 1
        self.turns -= 1
        await self._checkpoint([], gates=dict(self.gates), gate_deadline=None)

    async def _pause(self) -> None:
        self.status = "paused"
        deadline = min(g.deadline for g in self.gates.values())
        self.emit(Done(status="paused"))
        await self._checkpoint([], status=RunStatus.PAUSED, state=_json.encode(self.state),
                               gates=dict(self.gates), gate_deadline=deadline,
                               active_seconds=self.active_seconds)

    def _completion(self) -> dict[str, Any]:
        """Mark the run completed: emit its final events and return the run-row columns."""
        self.status = "completed"
        response = self.response_text()
        self.emit(OrchestrationComplete(status="completed", final_state=self.state, response=response,
                                        total_cost_usd=self.cost))
        self.emit(Done(status="completed"))
        active = self.active_seconds + (time.monotonic() - self._began if self._began else 0.0)
        return {"status": RunStatus.COMPLETED, "state": _json.encode(self.state), "response": response,
                "gates": {}, "finished_at": time.time(), "active_seconds": active}

    def result(self) -> RunResult:
        """The run's result as it stands, from memory (no store read)."""
        response = self.response_text() if self.status == "completed" else self.failure_text
        return build_result(self.run_id, self.status, self.cost, response, self.history, self.state, self.gates)

    async def _complete(self) -> None:
        await self._checkpoint([], **self._completion())

    def response_text(self) -> str:
        if self.response is NO_OUTPUT or self.response is None:
            return f"Orchestration completed. {self.executed_steps()} steps executed."
        return self.response if isinstance(self.response, str) else _json.encode(self.response).decode()

    def executed_steps(self) -> int:
        return self.executed

    async def _fail(self, error: RunError) -> None:
        self.status = "failed"
        self.failure_text = error.message
        await self._cancel_tasks(f"cancelled: {error.message}")
        self.emit(OrchestrationError(error=error.message))
        self.emit(Done(status="failed"))
        await self._checkpoint([], status=RunStatus.FAILED, state=_json.encode(self.state), error=error.message,
                               response=error.message, finished_at=time.time(), active_seconds=self.active_seconds)

    async def _cancel_tasks(self, reason: str) -> None:
        """Cancel in-flight steps; each one is recorded as failed with what it spent."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._ready.clear()
        records: list[StepRecord] = []
        now = time.time()
        for token_id, ctx in self._contexts.items():  # tasks, the step run inline, and started ones
            records.extend(ctx.body)
            records.append(self._record(ctx.step, "failed", ctx.iteration, ctx.turns, ctx.cost, ctx.started, now,
                                        {}, RunError(reason)))
            self.frontier.tokens.pop(token_id, None)
        self._contexts.clear()
        if records:
            await self._checkpoint(records)

    async def _abandon(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._ready.clear()
        self._contexts.clear()

    async def cancel(self) -> None:
        await self._cancel_tasks("cancelled: the run was cancelled")
        self.emit(OrchestrationError(error="Run cancelled"))
        self.emit(Done(status="cancelled"))
        await self._checkpoint([], status=RunStatus.CANCELLED, state=_json.encode(self.state), error="Run cancelled",
                               response="Run cancelled", finished_at=time.time(), active_seconds=self.active_seconds)
        self.status = "cancelled"  # only once it is stored: a fenced driver did not cancel the run
        self.failure_text = "Run cancelled"
