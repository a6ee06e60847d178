"""The async loop of one run: start ready steps as tasks, checkpoint each finished step in one
transaction before anything after it starts, pause at gates, stop on limits and failures.

What each happening does to the run is decided by engine.run.transition (pure); this module
executes steps, emits the events it returns and commits its records through the store.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Coroutine, Mapping

import msgspec

from orch.definition.compiled import CompiledGraph, CompiledStep
from orch.errors import EngineError, RunError, RunFenced, RunTimeout
from orch.events import Event, RunEvents
from orch.run import scheduler, transition
from orch.run.host import RunHost
from orch.run.model import Checkpoint, Gate, Run, RunStatus, StepRecord
from orch.run.results import HistoryRow, RunResult, build_result, history_rows
from orch.run.scheduler import Frontier, Token
from orch.run.stepctx import StepCtx, execute_step
from orch.run.transition import Effects, RunValue, StepOutcome
from orch.steps.base import Executor, StepResult

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
        self.value = RunValue(run.id, graph, state, frontier, dict(run.gates), run.cost_usd, run.turns, executed)
        self.step_count = step_count  # step records written so far (their idx)
        self.epoch = epoch
        self.events = RunEvents(host.hub, self.run_id, run.last_seq, LIVE_EVENTS)
        self.active_seconds: float = run.active_seconds
        self.status = "running"
        self.cancel_requested = False
        self._began: float | None = None
        self.history: list[HistoryRow] = []  # what step_history shows of this run's step records
        self.failure_text: str | None = None
        self.depth: int = run.depth
        self._tasks: dict[asyncio.Task[StepOutcome], Token] = {}
        self._ready: list[tuple[Token, CompiledStep, StepCtx]] = []  # started, not yet running
        self._contexts: dict[int, StepCtx] = {}
        self._event_flush: asyncio.Task[None] | None = None

    # The run's value, as the step contexts, the engine and replay read it.
    @property
    def state(self) -> dict[str, Any]:
        return self.value.state

    @property
    def frontier(self) -> Frontier:
        return self.value.frontier

    @property
    def gates(self) -> dict[str, Gate]:
        return self.value.gates

    @property
    def failure(self) -> RunError | None:
        return self.value.failure

    @property
    def last_output(self) -> Any:
        return self.value.last_output

    @property
    def cost(self) -> float:
        return self.value.cost

    @property
    def turns(self) -> int:
        return self.value.turns

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
        transition.add_cost(self.value, amount, step_id)

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
                    self.value.failure = RunTimeout(
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
                        self.value.failure = RunTimeout(
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
            self.value.failure = RunError(f"internal error: {type(exc).__name__}: {exc}")
            await self._unless_fenced(self._fail(self.value.failure))
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
        start = transition.start_step(self.value, token, time.time())
        if not start.run:
            await self._apply(start.effects)
            return
        for event in start.effects.events:
            self.emit(event)
        step = self.graph.steps[token.step_id]
        ctx = StepCtx(self, step, self.state, start.iteration)
        self._ready.append((token, step, ctx))
        self._contexts[token.id] = ctx

    async def _execute(self, token: Token, step: CompiledStep, ctx: StepCtx, iteration: int) -> StepOutcome:
        started = time.time()
        result, error = await self.execute_step(step, ctx)
        return StepOutcome(token, step, iteration, started, time.time(), result, error, ctx.turns, ctx.cost, ctx.body)

    def executor_for(self, step: CompiledStep) -> Executor:
        return self.host.executor_for(step)

    async def execute_step(self, step: CompiledStep, ctx: StepCtx) -> tuple[StepResult | None, EngineError | None]:
        return await execute_step(self, step, ctx)

    async def run_substep(self, parent: StepCtx, step_id: str, state: Mapping[str, Any], iteration: int) -> StepResult:
        step = self.graph.steps[step_id]
        self.emit(transition.start_substep(self.value, step, iteration))
        ctx = StepCtx(self, step, state, iteration, key=f"{parent.key}/{step_id}#{iteration}")
        started = time.time()
        result, error = await self.execute_step(step, ctx)
        outcome = StepOutcome(Token(0, step_id), step, iteration, started, time.time(), result, error, ctx.turns,
                              ctx.cost, ctx.body)
        self.emit(transition.substep_finished(self.value, parent.body, outcome))
        if error is not None:
            if step.spec.on_error != "continue":
                raise error
            return StepResult(turns=ctx.turns, cost_usd=ctx.cost)
        assert result is not None
        result.turns, result.cost_usd = ctx.turns, ctx.cost
        return result

    async def _finished(self, out: StepOutcome) -> None:
        self._contexts.pop(out.token.id, None)
        await self._apply(transition.step_finished(self.value, out, time.time()))

    async def _apply(self, effects: Effects) -> None:
        """Emit the effects' events, commit their records (with the run's failure or completion
        when they carry it), then start what became ready."""
        for event in effects.events:
            self.emit(event)
        if effects.cancel_child is not None:
            await self.children.cancel_child(effects.cancel_child)
        gates: dict[str, Any] = {"gates": dict(self.gates)} if effects.gate_changed else {}
        if effects.fails_run and self.failure is not None:
            # The failure is durable with the step that caused it, so a crash right after cannot
            # let recovery carry on as if nothing happened.
            await self._checkpoint(effects.records, status=RunStatus.FAILED, error=self.failure.message,
                                   response=self.failure.message, **gates)
            return
        if effects.completes_run:
            # The run's last step: its checkpoint and the run's completion share one transaction.
            await self._checkpoint(effects.records, **self._completion())
            return
        await self._checkpoint(effects.records, **gates)
        for tok in effects.ready:
            await self._start(tok)

    async def _checkpoint(self, records: list[StepRecord], **ending: Any) -> None:
        """Commit the run's progress with `records` and the pending events; `ending` sets the
        optional columns of the Checkpoint (status, state, gates, response, ...)."""
        self.history.extend(history_rows(records))
        for r in records:
            self.step_count += 1
            self.value.executed += r.status != "skipped"
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

    async def answer_gate(self, step_id: str, answer: Any) -> None:
        """Record a gate's answer as the human step's completion and release its token; drive()
        then starts what follows."""
        effects = transition.answer_gate(self.value, step_id, answer, time.time())
        for event in effects.events:
            self.emit(event)
        await self._checkpoint(effects.records, gates=dict(self.gates), gate_deadline=None)

    async def rerun_gate(self, step_id: str) -> None:
        """A gate inside a sub-orchestration was answered: run the parent's step again (same
        iteration, so it finds the same child run)."""
        transition.rerun_gate(self.value, step_id)
        await self._checkpoint([], gates=dict(self.gates), gate_deadline=None)

    async def _pause(self) -> None:
        self.status = "paused"
        events, deadline = transition.paused(self.value)
        for event in events:
            self.emit(event)
        await self._checkpoint([], status=RunStatus.PAUSED, state=_json.encode(self.state),
                               gates=dict(self.gates), gate_deadline=deadline,
                               active_seconds=self.active_seconds)

    def _completion(self) -> dict[str, Any]:
        """Mark the run completed: emit its final events and return the run-row columns."""
        self.status = "completed"
        events, response = transition.completed(self.value)
        for event in events:
            self.emit(event)
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
        return self.value.response_text()

    async def _fail(self, error: RunError) -> None:
        self.status = "failed"
        self.failure_text = error.message
        await self._cancel_tasks(f"cancelled: {error.message}")
        for event in transition.failed(error):
            self.emit(event)
        await self._checkpoint([], status=RunStatus.FAILED, state=_json.encode(self.state), error=error.message,
                               response=error.message, finished_at=time.time(), active_seconds=self.active_seconds)

    async def _cancel_tasks(self, reason: str) -> None:
        """Cancel in-flight steps; each one is recorded as failed with what it spent."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._ready.clear()
        stopped = [(ctx.step, ctx.iteration, ctx.turns, ctx.cost, ctx.started, ctx.body)
                   for ctx in self._contexts.values()]  # tasks, the step run inline, and started ones
        records = transition.stopped_records(self.value, stopped, reason, time.time())
        for token_id in self._contexts:
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
        for event in transition.cancelled():
            self.emit(event)
        await self._checkpoint([], status=RunStatus.CANCELLED, state=_json.encode(self.state), error="Run cancelled",
                               response="Run cancelled", finished_at=time.time(), active_seconds=self.active_seconds)
        self.status = "cancelled"  # only once it is stored: a fenced driver did not cancel the run
        self.failure_text = "Run cancelled"
