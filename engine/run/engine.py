"""The engine: graphs by id and version, starting, resuming, cancelling and recovering runs.

Everything a server or the CLI does with runs goes through `Engine`; each active run is driven
by a `RunDriver` task owned by this process, and the store decides who owns what.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from typing import Any, Awaitable, Callable, Mapping

import msgspec

from orch.definition.compiled import CompiledGraph, CompiledStep
from orch.errors import (
    GateTimeout, InvalidAnswer, InvalidInput, NotPaused, RunFenced, RunNotFound,
    StateWriteError,
)
from orch.events import Done, EventHub, OrchestrationError, RunContinued, RunStart, stamp
from orch.run import scheduler
from orch.run.driver import LIVE_EVENTS, RunDriver
from orch.run.graphs import GraphRegistry
from orch.run.idempotency import ResumeKey, check_same_run_request
from orch.run.ownership import new_owner, owner_is_dead
from orch.run.model import LIVE, Gate, Run, RunEnding, RunStatus, StepRecord
from orch.run.replay import load_driver, replay_state
from orch.run.results import ResultCache, RunResult, build_result, history_rows
from orch.run.timers import GateTimers
from orch.services import Services
from orch.steps import standard_kinds
from orch.steps.base import Executor, StepKind
from orch.steps.human import check_answer
from orch.store.base import RunStore

_json = msgspec.json.Encoder()


class Engine:
    def __init__(self, store: RunStore, services: Services, *, executors: Mapping[str, Executor] | None = None,
                 kinds: Mapping[str, StepKind] | None = None, owner: str | None = None) -> None:
        self.store = store
        self.services = services
        # Step kinds by name (stored definitions compile with them); `executors` replace the
        # executors of kinds by name.
        self.kinds: dict[str, StepKind] = dict(kinds) if kinds is not None else standard_kinds()
        self.executors: dict[str, Executor] = {
            **{name: kind.executor for name, kind in self.kinds.items()}, **(executors or {})}
        # host:pid:nonce — a process on the same host can tell whether an owner is still alive.
        self.owner = owner or new_owner()
        self.hub = EventHub()
        self.registry = GraphRegistry(store, self.kinds)
        self.graphs = self.registry.current  # the orchestrations served, by id
        self._drivers: dict[str, RunDriver] = {}
        self._tasks: dict[str, asyncio.Task[str]] = {}
        self.timers = GateTimers(self._gate_expired)
        self._heartbeat: asyncio.Task[None] | None = None
        self._results = ResultCache()  # results of runs that just stopped here, for wait()
        self.closing = False

    # -- graphs ------------------------------------------------------------------------------

    async def add_graph(self, graph: CompiledGraph) -> None:
        await self.registry.add(graph)

    async def graph_for_version(self, version: str) -> CompiledGraph:
        return await self.registry.version(version)

    def executor_for(self, step: CompiledStep) -> Executor:
        return self.executors.get(step.kind.name, step.kind.executor)

    # -- child runs (the ChildRuns protocol of sub-orchestration steps) ---------------------

    @property
    def children(self) -> "Engine":
        return self

    async def start_child(self, orchestration_id: str, message: str, *, parent: tuple[str, str, int],
                          idempotency_key: str) -> str:
        return await self.start(orchestration_id, message, idempotency_key=idempotency_key, parent=parent)

    async def cancel_child(self, run_id: str) -> None:
        with contextlib.suppress(NotPaused, RunNotFound):
            await self.cancel(run_id)

    async def gate_deadline(self, run_id: str) -> float | None:
        run = await self.store.get_run(run_id)
        return run.gate_deadline if run is not None else None

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        await self.store.open()
        if self._heartbeat is None:
            self._heartbeat = asyncio.create_task(self._renew_leases())

    async def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
        await self.timers.close()
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        # A graceful stop hands its unfinished runs over at once instead of after the lease.
        with contextlib.suppress(Exception):  # best effort: the lease runs out anyway
            await self.store.release_leases(self.owner)
        await self.services.aclose()
        await self.store.close()

    async def _gate_expired(self, run_id: str) -> None:
        await self.fail_paused(run_id, GateTimeout("human gate was not answered in time"))

    async def _renew_leases(self) -> None:
        lease = self.services.settings.lease_seconds
        while True:
            await asyncio.sleep(lease / 3)
            await self.store.renew_leases(self.owner, list(self._drivers), lease)
            await self.recover()

    # -- runs --------------------------------------------------------------------------------

    def initial_state(self, graph: CompiledGraph, message: str, state: Mapping[str, Any] | None) -> dict[str, Any]:
        values = graph.schema.initial()
        if message:
            values["user_input"] = message
            values["user_query"] = message
            if graph.schema.first_string_key:
                values[graph.schema.first_string_key] = message
        errors: dict[str, str] = {}
        for key, value in (state or {}).items():
            try:
                values[key] = graph.schema.check(key, value)
            except StateWriteError as exc:
                errors[key] = str(exc)
        if errors:
            raise InvalidInput("; ".join(f"state.{k}: {v}" for k, v in errors.items()))
        return values

    async def start(self, orchestration_id: str, message: str = "", state: Mapping[str, Any] | None = None, *,
                    idempotency_key: str | None = None, parent: tuple[str, str, int] | None = None) -> str:
        """Create a run and start driving it; returns its id (an existing one for a reused
        idempotency key)."""
        graph = self.graphs.get(orchestration_id)
        if graph is None:
            raise RunNotFound(f"orchestration '{orchestration_id}' not found")
        values = self.initial_state(graph, message, state)
        run_id = f"run_{orchestration_id}_{int(time.time())}{secrets.token_hex(4)}"
        frontier = scheduler.start(graph)
        now = time.time()
        start_event = RunStart(orchestration_id=graph.id, version=graph.version, message=message)
        first_events = stamp([start_event], run_id, 1, now)
        run = Run(id=run_id, orchestration_id=graph.id, version=graph.version, status=RunStatus.RUNNING,
                  message=message, frontier=scheduler.encode(frontier), steps_done=1, last_seq=1, created_at=now,
                  updated_at=now, epoch=1, owner=self.owner, lease_until=now + self.services.settings.lease_seconds,
                  parent_run_id=parent[0] if parent else None, parent_step_id=parent[1] if parent else None,
                  depth=parent[2] if parent else 0)
        record = StepRecord(run_id=run_id, idx=1, step_id="", step_name="", type="input", status="input",
                            iteration=0, turns=0, cost_usd=0.0, started_at=now, ended_at=now,
                            writes=_json.encode(values))
        # The run is durable before it does anything: a client that saw its id can always find it.
        created = await self.store.create_run(run, [record], first_events, idempotency_key)
        if created != run_id:
            if parent is None:  # a sub-orchestration step coming back for its child is a retry
                await check_same_run_request(self.store, idempotency_key or "", created, graph, message, state or {})
            return created
        driver = RunDriver(self, graph, run, state=values, frontier=frontier, step_count=1, epoch=1)
        self.hub.publish(start_event)
        self._launch(driver)
        return run_id

    def _launch(self, driver: RunDriver) -> None:
        self._results.drop(driver.run_id)
        self._drivers[driver.run_id] = driver
        task = asyncio.create_task(self._drive(driver), name=f"run {driver.run_id}")
        self._tasks[driver.run_id] = task
        # Cleared by a callback rather than in _drive: a task cancelled before it first ran never
        # enters its coroutine.
        task.add_done_callback(lambda done: self._forget(driver.run_id, done))

    def _forget(self, run_id: str, task: asyncio.Task[str]) -> None:
        if self._tasks.get(run_id) is task:
            del self._tasks[run_id]
            self._drivers.pop(run_id, None)
            self.hub.close(run_id)

    async def _drive(self, driver: RunDriver) -> str:
        status = await driver.drive()
        # A resume may have launched a new driver for this run while this one finished its last
        # writes: then the run is that driver's, and this one's outcome is stale.
        if self._tasks.get(driver.run_id) is asyncio.current_task():
            if status == RunStatus.PAUSED:
                self.timers.arm(driver.run_id, min(g.deadline for g in driver.gates.values()))
            if status in RunStatus.__members__.values():
                self._results.put(driver.run_id, driver.result())
        return status

    async def wait(self, run_id: str) -> RunResult:
        """The run's result once it stops running (completed, paused, failed, cancelled). A run
        that another process drives, or that recovery has not relaunched yet, is polled. The
        run goes on if the caller stops waiting; a run cancelled meanwhile is a result, too."""
        delay = 0.05
        while True:
            task = self._tasks.get(run_id)
            if task is not None:
                await asyncio.wait({task})  # never raises for the task's outcome, never cancels it
            if run_id not in self._tasks and (cached := self._results.take(run_id)) is not None:
                return cached
            result = await self.result(run_id)
            if result.status != RunStatus.RUNNING:
                return result
            if run_id in self._tasks:
                continue
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def run(self, orchestration_id: str, message: str = "", state: Mapping[str, Any] | None = None,
                  **kw: Any) -> RunResult:
        return await self.wait(await self.start(orchestration_id, message, state, **kw))

    async def get_run(self, run_id: str) -> Run:
        run = await self.store.get_run(run_id)
        if run is None:
            raise RunNotFound(f"run '{run_id}' not found")
        return run

    async def result(self, run_id: str) -> RunResult:
        run = await self.get_run(run_id)
        records = await self.store.step_records(run_id)
        if run.state is not None and run.status != RunStatus.RUNNING:
            state = run.state
        else:
            state = replay_state(await self.graph_for_version(run.version), records)
        response = run.response or run.error
        return build_result(run.id, run.status, run.cost_usd, response, history_rows(records), state, run.gates)

    def is_active(self, run_id: str) -> bool:
        return run_id in self._drivers

    def pending_events(self, run_id: str) -> list[Any]:
        driver = self._drivers.get(run_id)
        return list(driver.events.pending) if driver else []

    async def _load_driver(self, run: Run, epoch: int) -> RunDriver:
        graph = await self.graph_for_version(run.version)
        records = await self.store.step_records(run.id)
        return load_driver(self, graph, run, records, epoch)

    # -- the lifecycle: every change of status is a compare-and-set in the store ------------

    async def resume(self, run_id: str, response: Any, *, step_id: str | None = None,
                     idempotency_key: str | None = None) -> str:
        """Answer the run's gate and continue it. Exactly one of many concurrent resumes wins;
        the others raise NotPaused — except repeats of the winner's idempotency key with the
        same answer, which return the run as the winner did (another answer under that key is
        an IdempotencyConflict)."""
        if not idempotency_key:
            return await self._resume(run_id, response, step_id, ())
        idem = ResumeKey(run_id, idempotency_key, step_id, response)
        if await idem.repeated(self.store):
            return run_id
        try:
            return await self._resume(run_id, response, step_id, idem.keys)
        except NotPaused:
            if await idem.repeated(self.store):
                return run_id  # a concurrent repeat of this very request won
            raise

    async def _resume(self, run_id: str, response: Any, step_id: str | None, idempotency_keys: tuple[str, ...]) -> str:
        run = await self.get_run(run_id)
        if run.status != RunStatus.PAUSED:
            raise NotPaused(f"run '{run_id}' is {run.status}, not paused")
        gate = run.gates.get(step_id) if step_id else run.next_gate()
        if gate is None:
            raise NotPaused(f"run '{run_id}' has no pending gate{f' at step {step_id}' if step_id else ''}")
        if gate.deadline <= time.time():
            await self.fail_paused(run_id, GateTimeout(f"human gate {gate.step_id} was not answered in time"))
            raise NotPaused(f"run '{run_id}' is failed: its gate {gate.step_id} timed out")
        if gate.child_run_id:
            return await self._resume_child(run, gate, response)
        graph = await self.graph_for_version(run.version)
        gate_step = graph.steps[gate.step_id].spec
        answer = check_answer(gate_step, response)
        for key in {gate_step.output_key or "human_response", "human_response"}:
            try:  # an answer the state cannot hold is the caller's mistake: the run stays paused
                graph.schema.apply({}, key, answer, step_id=gate_step.id)
            except StateWriteError as exc:
                raise InvalidAnswer({"response": exc.message}) from None
        await self._claim_and_continue(run_id, idempotency_keys, lambda d: d.answer_gate(gate.step_id, answer))
        return run_id

    async def _resume_child(self, run: Run, gate: Gate, response: Any) -> str:
        """The parent waits at a gate inside its child: answer the child, then re-enter the
        parent's sub-orchestration step, which picks up the child where it now stands."""
        assert gate.child_run_id is not None
        try:
            await self.resume(gate.child_run_id, response)
        except NotPaused:
            pass  # answered already (directly, or by a racing resume): the parent still catches up
        await self._claim_and_continue(run.id, (), lambda d: d.rerun_gate(gate.step_id))
        return run.id

    async def _claim_and_continue(self, run_id: str, idempotency_keys: tuple[str, ...],
                                  first: Callable[[RunDriver], Awaitable[None]]) -> None:
        self._results.drop(run_id)  # from here on, a cached "paused" result is stale
        epoch = await self.store.claim_paused(run_id, self.owner, self.services.settings.lease_seconds,
                                              idempotency_keys)
        if epoch is None:
            raise NotPaused(f"run '{run_id}' is {await self._status(run_id)}, not paused")
        self.timers.disarm(run_id)
        await self._continue_claimed(run_id, epoch, first)

    async def _continue_claimed(self, run_id: str, epoch: int, first: Callable[[RunDriver], Awaitable[None]], *,
                                recovered: bool = False) -> None:
        """Load a run this process just claimed, apply `first` to its driver, and drive it. A
        cancel that lands in between wins (NotPaused); anything else fails the run rather than
        leaving it claimed and idle."""
        self._results.drop(run_id)  # the result it stopped with before is stale from now on
        try:
            driver = await self._load_driver(await self.get_run(run_id), epoch)
            if recovered:  # events the dead owner streamed but never committed keep their numbers
                await driver.skip_unstored_numbers()
            await first(driver)
        except RunFenced:
            raise NotPaused(f"run '{run_id}' is {await self._status(run_id)}: it was ended while it was "
                            "being resumed") from None
        except Exception as exc:
            await self.store.end_run(run_id, RunEnding(
                status=RunStatus.FAILED, message=f"internal error: {type(exc).__name__}: {exc}",
                expect=frozenset({RunStatus.RUNNING}), live_gap=LIVE_EVENTS,
                events=[OrchestrationError(error=str(exc)), Done(status="failed")]))
            raise
        how = "resumed" if not recovered else "taken_over" if asyncio.current_task() is self._heartbeat else "recovered"
        self.hub.notify(RunContinued(run_id=run_id, orchestration_id=driver.graph.id, how=how, cost_usd=driver.cost,
                                     active_seconds=driver.active_seconds))  # for logs, metrics, traces
        self._launch(driver)

    async def cancel(self, run_id: str) -> RunResult:
        """Stop a running or paused run. Of concurrent cancels exactly one wins; the others, and
        a cancel of a run that already ended, raise NotPaused naming the run's status."""
        driver, task = self._drivers.get(run_id), self._tasks.get(run_id)
        if driver is not None and task is not None:
            if driver.cancel_requested:  # another request is stopping it: that one wins
                await asyncio.wait({task})
                raise self._not_cancellable(run_id, await self._status(run_id))
            driver.cancel_requested = True
            task.cancel()
            await asyncio.wait({task})
            if driver.status == RunStatus.CANCELLED:
                return await self.result(run_id)
            if driver.status not in (RunStatus.PAUSED, RunStatus.RUNNING):  # it ended first, or lost the run
                raise self._not_cancellable(run_id, await self._status(run_id))
            # Paused just before, or stopped before it ever ran: end it as a run nobody drives.
        run = await self.get_run(run_id)
        if not await self._end_elsewhere(run.id, RunStatus.CANCELLED, "Run cancelled"):
            raise self._not_cancellable(run_id, await self._status(run_id))
        self.timers.disarm(run_id)
        for gate in run.gates.values():
            if gate.child_run_id:  # a gate inside a sub-orchestration: the child goes too
                with contextlib.suppress(NotPaused, RunNotFound):
                    await self.cancel(gate.child_run_id)
        return await self.result(run_id)

    @staticmethod
    def _not_cancellable(run_id: str, status: str) -> NotPaused:
        return NotPaused(f"run '{run_id}' is {status}; only running or paused runs can be cancelled")

    async def _status(self, run_id: str) -> str:
        run = await self.store.get_run(run_id)
        return str(run.status) if run is not None else "gone"

    async def fail_paused(self, run_id: str, error: Exception) -> None:
        """A gate's time ran out: fail the run, if it is still paused and past its deadline (on
        another server the same run may have been answered in time)."""
        await self._end_elsewhere(run_id, RunStatus.FAILED, str(error), expect=frozenset({RunStatus.PAUSED}),
                                  deadline_passed=True)

    async def _end_elsewhere(self, run_id: str, status: RunStatus, message: str,
                             expect: frozenset[RunStatus] = LIVE, deadline_passed: bool = False) -> bool:
        """End a run this process is not driving (paused, or owned by another process). One
        transaction bumps the epoch (fencing off any owner still writing), sets the status and
        appends the closing events after the run's last stored one."""
        self._results.drop(run_id)
        events: list[Any] = [OrchestrationError(error=message), Done(status=status.value)]
        ended = await self.store.end_run(run_id, RunEnding(status=status, message=message, expect=expect,
                                                           events=events, deadline_passed=deadline_passed,
                                                           live_gap=LIVE_EVENTS))
        if ended:
            for e in events:
                self.hub.publish(e)
            self.hub.close(run_id)
        return ended

    async def recover(self) -> list[str]:
        """Continue runs left `running` by a process that died, from their last checkpoint: runs
        whose owner was a process of this host that no longer exists (found at once), and runs
        whose owner stopped renewing its lease (found by the heartbeat's sweep)."""
        claimed = await self.store.claim_orphans(self.owner, self.services.settings.lease_seconds, owner_is_dead)
        resumed = []
        for run_id, epoch in claimed:
            if run_id in self._drivers:
                continue
            try:
                await self._continue_claimed(run_id, epoch, _nothing, recovered=True)
            except Exception:  # noqa: BLE001 - that run is marked failed; the others still recover
                continue
            resumed.append(run_id)
        for run in await self.store.runs_with_status(RunStatus.PAUSED):
            if run.gate_deadline is not None:
                self.timers.arm(run.id, run.gate_deadline, replace=False)
        return resumed


async def _nothing(driver: RunDriver) -> None:
    return None
