"""The engine: graphs by id and version, starting, resuming, cancelling and recovering runs.

Everything a server or the CLI does with runs goes through `Engine`; each active run is driven
by a `RunDriver` task owned by this process, and the store decides who owns what.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time
import uuid
from typing import Any, Mapping

import msgspec

from orch.run import scheduler
from orch.definition.compile import CompiledGraph, CompiledStep, compile_definition
from orch.errors import (
    DefinitionError, GateTimeout, InvalidAnswer, InvalidInput, NotPaused, ProviderError, RunNotFound,
    StateWriteError,
)
from orch.events import Done, EventHub, OrchestrationError, RunStart, encode_event
from orch.run.idempotency import ResumeKey, check_same_run_request
from orch.definition.loader import decode_orchestration
from orch.run.results import ResultCache, RunResult, build_result, history_rows
from orch.run.driver import LIVE_EVENTS, RunDriver
from orch.services import Services
from orch.definition.spec import Agent
from orch.steps import default_executors
from orch.steps.base import Executor
from orch.steps.human import check_answer
from orch.store.sql import Fenced, SQLStore

_json = msgspec.json.Encoder()


class Engine:
    def __init__(self, store: SQLStore, services: Services, *, executors: Mapping[str, Executor] | None = None,
                 owner: str | None = None) -> None:
        self.store = store
        self.services = services
        services.engine = self
        self.executors: dict[str, Executor] = {**default_executors(), **(executors or {})}
        # host:pid:nonce — a process on the same host can tell whether an owner is still alive.
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.hub = EventHub()
        self.graphs: dict[str, CompiledGraph] = {}
        self._versions: dict[str, CompiledGraph] = {}
        self._drivers: dict[str, RunDriver] = {}
        self._tasks: dict[str, asyncio.Task[str]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._heartbeat: asyncio.Task[None] | None = None
        self._results = ResultCache()  # results of runs that just stopped here, for wait()
        self._background: set[asyncio.Task[Any]] = set()
        self.closing = False

    # -- graphs ------------------------------------------------------------------------------

    async def add_graph(self, graph: CompiledGraph) -> None:
        self.graphs[graph.id] = graph
        self._versions[graph.version] = graph
        body = {"orchestration": msgspec.to_builtins(graph.orchestration),
                "agents": [msgspec.to_builtins(a) for a in graph.agents.values()]}
        await self.store.save_definition(graph.version, graph.id, _json.encode(body).decode())

    async def graph_for_version(self, version: str) -> CompiledGraph:
        graph = self._versions.get(version)
        if graph is not None:
            return graph
        body = await self.store.get_definition(version)
        if body is None:
            raise RunNotFound(f"definition version {version} is not stored")
        doc = msgspec.json.decode(body)
        orch, problems = decode_orchestration(doc["orchestration"], f"<stored {version}>")
        agents = {a["id"]: msgspec.convert(a, Agent) for a in doc.get("agents", [])}
        if orch is None:
            raise DefinitionError(problems)
        import msgspec.structs as structs

        result = compile_definition(structs.replace(orch, version=version), agents,
                                    orchestrations=set(self.graphs))
        if result.graph is None:
            raise DefinitionError(result.problems)
        self._versions[version] = result.graph
        return result.graph

    def executor_for(self, step: CompiledStep) -> Executor:
        if step.type == "agent" and step.spec.agent_id:
            agent = self._agent(step)
            if agent is not None and agent.type == "orchestrator":
                return self.executors["subflow"]
        executor = self.executors.get(step.type)
        if executor is None:
            raise ProviderError(f"no executor for {step.type} steps", provider="engine", model="-")
        return executor

    def _agent(self, step: CompiledStep) -> Agent | None:
        for graph in self._versions.values():
            agent = graph.agents.get(step.spec.agent_id or "")
            if agent is not None:
                return agent
        return None

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
        for timer in self._timers.values():
            timer.cancel()
        for task in [*self._tasks.values(), *self._background]:
            task.cancel()
        await asyncio.gather(*self._tasks.values(), *self._background, return_exceptions=True)
        # A graceful stop hands its unfinished runs over at once instead of after the lease.
        with contextlib.suppress(Exception):  # best effort: the lease runs out anyway
            await self.store.release_leases(self.owner)
        await self.services.aclose()
        await self.store.close()

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
            except Exception as exc:  # StateWriteError
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
        start_event.run_id, start_event.seq, start_event.ts = run_id, 1, now
        row = {
            "id": run_id, "orchestration_id": graph.id, "version": graph.version, "status": "running",
            "message": message, "frontier": scheduler.encode(frontier), "cost_usd": 0.0, "turns": 0,
            "steps_done": 1, "last_seq": 1, "active_seconds": 0.0, "created_at": now, "updated_at": now,
            "epoch": 1, "owner": self.owner, "lease_until": now + self.services.settings.lease_seconds,
            "parent_run_id": parent[0] if parent else None, "parent_step_id": parent[1] if parent else None,
            "depth": parent[2] if parent else 0,
        }
        record = {"run_id": run_id, "idx": 1, "step_id": "", "step_name": "", "type": "input", "status": "input",
                  "iteration": 0, "turns": 0, "cost_usd": 0.0, "started_at": now, "ended_at": now,
                  "output_key": None, "error": None, "writes": _json.encode(values)}
        # The run is durable before it does anything: a client that saw its id can always find it.
        created = await self.store.create_run(row, [(1, encode_event(start_event))], idempotency_key,
                                              steps=[record])
        if created != run_id:
            if parent is None:  # a sub-orchestration step coming back for its child is a retry
                await check_same_run_request(self.store, idempotency_key or "", created, graph, message, state or {})
            return created
        driver = RunDriver(self, graph, row, state=values, frontier=frontier, step_count=1, epoch=1)
        self.hub.publish(start_event)
        self._launch(driver)
        return run_id

    def _launch(self, driver: RunDriver) -> None:
        self._results.drop(driver.run_id)
        self._drivers[driver.run_id] = driver
        self._tasks[driver.run_id] = asyncio.create_task(self._drive(driver), name=f"run {driver.run_id}")

    async def _drive(self, driver: RunDriver) -> str:
        me = asyncio.current_task()
        try:
            status = await driver.drive()
            # A resume may have launched a new driver for this run while this one finished its
            # last writes: then the run is that driver's, and this one's outcome is stale.
            current = self._tasks.get(driver.run_id) is me
            if status == "paused" and current:
                self._arm_gate_timer(driver.run_id, min(g["deadline"] for g in driver.gates.values()))
            if status in ("completed", "paused", "failed", "cancelled") and current:
                self._results.put(driver.run_id, driver.result())
            return status
        finally:
            if self._tasks.get(driver.run_id) is me:
                self._drivers.pop(driver.run_id, None)
                self._tasks.pop(driver.run_id, None)
                self.hub.close(driver.run_id)

    async def wait(self, run_id: str) -> RunResult:
        """The run's result once it stops running (completed, paused, failed, cancelled). A run
        that another process drives, or that recovery has not relaunched yet, is polled."""
        delay = 0.05
        while True:
            task = self._tasks.get(run_id)
            if task is not None:
                await asyncio.shield(task)
            if run_id not in self._tasks and (cached := self._results.take(run_id)) is not None:
                return cached
            result = await self.result(run_id)
            if result.status != "running" or run_id in self._tasks:
                if result.status != "running":
                    return result
                continue
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def run(self, orchestration_id: str, message: str = "", state: Mapping[str, Any] | None = None,
                  **kw: Any) -> RunResult:
        return await self.wait(await self.start(orchestration_id, message, state, **kw))

    async def result(self, run_id: str) -> RunResult:
        row = await self.store.get_run(run_id)
        if row is None:
            raise RunNotFound(f"run '{run_id}' not found")
        records = await self.store.step_records(run_id)
        if row["state"] is not None and row["status"] != "running":
            state = msgspec.json.decode(row["state"])
        else:
            graph = await self.graph_for_version(row["version"])
            state = replay_state(graph, records)
        gates = msgspec.json.decode(row["gate"]) if row["gate"] else {}
        return build_result(row, history_rows(records), state, gates)

    def is_active(self, run_id: str) -> bool:
        return run_id in self._drivers

    def pending_events(self, run_id: str) -> list[Any]:
        driver = self._drivers.get(run_id)
        return list(driver.events.pending) if driver else []

    async def _load_driver(self, row: dict[str, Any], epoch: int) -> RunDriver:
        graph = await self.graph_for_version(row["version"])
        records = await self.store.step_records(row["id"])
        state = replay_state(graph, records)
        driver = RunDriver(self, graph, row, state=state, frontier=scheduler.decode(row["frontier"], records),
                           step_count=len(records), epoch=epoch,
                           executed=sum(1 for r in records if r["status"] in ("completed", "failed")))
        driver.history = history_rows(records)
        # In-flight steps of a crashed process start again; count each execution once.
        driver.turns = sum(1 for r in records if r["type"] != "input" and r["status"] != "skipped") + len(
            driver.frontier.gates)
        outputs = [r for r in records if r["output_key"] and r["status"] == "completed"]
        if outputs:
            key = outputs[-1]["output_key"]
            driver.last_output = driver.response = state.get(key)
        return driver

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
        row = await self.store.get_run(run_id)
        if row is None:
            raise RunNotFound(f"run '{run_id}' not found")
        if row["status"] != "paused":
            raise NotPaused(f"run '{run_id}' is {row['status']}, not paused")
        gates = msgspec.json.decode(row["gate"]) if row["gate"] else {}
        gate = gates.get(step_id) if step_id else (min(gates.values(), key=lambda g: g["deadline"]) if gates else None)
        if gate is None:
            raise NotPaused(f"run '{run_id}' has no pending gate{f' at step {step_id}' if step_id else ''}")
        if gate["deadline"] <= time.time():
            await self.fail_paused(run_id, GateTimeout(f"human gate {gate['step_id']} was not answered in time"))
            raise NotPaused(f"run '{run_id}' failed: its gate {gate['step_id']} timed out")
        if gate.get("child_run_id"):
            return await self._resume_child(row, gate, response)
        graph = await self.graph_for_version(row["version"])
        gate_step = graph.steps[gate["step_id"]].spec
        answer = check_answer(gate_step, response)
        for key in {gate_step.output_key or "human_response", "human_response"}:
            try:  # an answer the state cannot hold is the caller's mistake: the run stays paused
                graph.schema.apply({}, key, answer, step_id=gate_step.id)
            except StateWriteError as exc:
                raise InvalidAnswer({"response": exc.message}) from None
        self._results.drop(run_id)  # from here on, a cached "paused" result may be stale
        epoch = await self.store.claim_paused(run_id, self.owner, self.services.settings.lease_seconds,
                                              idempotency_keys)
        if epoch is None:
            raise NotPaused(f"run '{run_id}' is no longer paused")
        self._disarm_gate_timer(run_id)
        await self._continue_claimed(run_id, epoch, lambda driver: driver.answer_gate(gate["step_id"], answer))
        return run_id

    async def _continue_claimed(self, run_id: str, epoch: int, first: Any, *, recovered: bool = False) -> None:
        """Load a run this process just claimed, apply `first` to its driver, and drive it. A
        cancel that lands in between wins (NotPaused); anything else fails the run rather than
        leaving it claimed and idle."""
        self._results.drop(run_id)  # the result it stopped with before is stale from now on
        try:
            row = await self.store.get_run(run_id)
            assert row is not None
            driver = await self._load_driver(row, epoch)
            if recovered:  # events the dead owner streamed but never committed keep their numbers
                await driver.skip_unstored_numbers()
            await first(driver)
        except Fenced:
            raise NotPaused(f"run '{run_id}' was ended while it was being resumed") from None
        except Exception as exc:
            await self.store.end_run(run_id, "failed", f"internal error: {type(exc).__name__}: {exc}",
                                     expect=("running",), events=[OrchestrationError(error=str(exc)),
                                                                  Done(status="failed")], live_gap=LIVE_EVENTS)
            raise
        self._launch(driver)

    async def _resume_child(self, row: dict[str, Any], gate: dict[str, Any], response: Any) -> str:
        """The parent waits at a gate inside its child: answer the child, then re-enter the
        parent's sub-orchestration step, which picks up the child where it now stands."""
        child_id = gate["child_run_id"]
        try:
            await self.resume(child_id, response)
        except NotPaused:
            pass  # answered already (directly, or by a racing resume): the parent still catches up
        self._results.drop(row["id"])
        epoch = await self.store.claim_paused(row["id"], self.owner, self.services.settings.lease_seconds)
        if epoch is None:
            raise NotPaused(f"run '{row['id']}' is no longer paused")
        self._disarm_gate_timer(row["id"])
        await self._continue_claimed(row["id"], epoch, lambda driver: driver.rerun_gate(gate["step_id"]))
        return str(row["id"])

    async def cancel(self, run_id: str) -> RunResult:
        driver = self._drivers.get(run_id)
        task = self._tasks.get(run_id)
        if driver is not None and task is not None:
            driver.cancel_requested = True
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return await self.result(run_id)
        row = await self.store.get_run(run_id)
        if row is None:
            raise RunNotFound(f"run '{run_id}' not found")
        if not await self._end_elsewhere(row, "cancelled", "Run cancelled"):
            raise NotPaused(f"run '{run_id}' is {row['status']}; only running or paused runs can be cancelled")
        self._disarm_gate_timer(run_id)
        for gate in (msgspec.json.decode(row["gate"]) if row["gate"] else {}).values():
            if gate.get("child_run_id"):  # a gate inside a sub-orchestration: the child goes too
                with contextlib.suppress(NotPaused, RunNotFound):
                    await self.cancel(gate["child_run_id"])
        return await self.result(run_id)

    async def fail_paused(self, run_id: str, error: Exception) -> None:
        """A gate's time ran out: fail the run, if it is still paused and past its deadline (on
        another server the same run may have been answered in time)."""
        row = await self.store.get_run(run_id)
        if row is not None:
            await self._end_elsewhere(row, "failed", str(error), expect=("paused",), deadline_passed=True)

    async def _end_elsewhere(self, row: dict[str, Any], status: str, message: str,
                             expect: tuple[str, ...] = ("paused", "running"), deadline_passed: bool = False) -> bool:
        """End a run this process is not driving (paused, or owned by another process). One
        transaction bumps the epoch (fencing off any owner still writing), sets the status and
        appends the closing events after the run's last stored one."""
        self._results.drop(row["id"])
        events: list[Any] = [OrchestrationError(error=message), Done(status=status)]
        ended = await self.store.end_run(row["id"], status, message, expect=expect, events=events,
                                         deadline_passed=deadline_passed, live_gap=LIVE_EVENTS)
        if ended:
            for e in events:
                self.hub.publish(e)
            self.hub.close(row["id"])
        return ended

    def _arm_gate_timer(self, run_id: str, deadline: float) -> None:
        self._disarm_gate_timer(run_id)
        loop = asyncio.get_running_loop()

        def expire() -> None:
            self._timers.pop(run_id, None)
            task = loop.create_task(self.fail_paused(run_id, GateTimeout("human gate was not answered in time")))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

        self._timers[run_id] = loop.call_later(max(0.0, deadline - time.time()), expire)

    def _disarm_gate_timer(self, run_id: str) -> None:
        timer = self._timers.pop(run_id, None)
        if timer is not None:
            timer.cancel()

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
        for row in await self.store.runs_with_status("paused"):
            if row["gate_deadline"] is not None and row["id"] not in self._timers:
                self._arm_gate_timer(row["id"], row["gate_deadline"])
        return resumed


def owner_is_dead(owner: str | None) -> bool:
    """Whether `owner` (host:pid:nonce) was a process of this host that has exited."""
    if not owner or owner.count(":") < 2:
        return owner is None
    host, pid, _ = owner.rsplit(":", 2)
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


async def _nothing(driver: RunDriver) -> None:
    return None


def replay_state(graph: CompiledGraph, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's state rebuilt from its step records' deltas, reducers applied in order."""
    state: dict[str, Any] = {}
    for r in records:
        writes = msgspec.json.decode(r["writes"]) if r["writes"] else {}
        if r["type"] == "input":
            state.update(writes)
            continue
        for key, value in writes.items():
            try:
                graph.schema.apply(state, key, value)
            except StateWriteError:  # checked when written; replay never refuses what was stored
                state[key] = value
    return state
