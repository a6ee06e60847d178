"""One structured log event per run transition, built from the run's events.

    run started        run_start
    run resumed        a gate was answered and this process continues the run
    run recovered      this process, starting, continues a run left by a process that exited
    run taken over     the heartbeat continues a run whose owner stopped renewing its lease
    run paused         done(paused), with the gate it waits at
    run completed      done(completed)
    run failed         done(failed), with the error
    run cancelled      done(cancelled)
    step retrying      step_error(will_retry), with the error

Each carries `run_id`, `orchestration`, `status`, `duration_seconds` (time spent running, over
every stretch) and `cost_usd` (spent so far). A run ended from outside its driver (a paused run
cancelled, a gate timed out) is read back from the store for those fields.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from orch.events import (
    Done, Event, HumanInputRequired, OrchestrationComplete, OrchestrationError, RunContinued, RunStart,
    StepComplete, StepError,
)
from orch.observe.logs import get_logger
from orch.run.model import Run

log = get_logger("orch.runs")

_CONTINUED = {"resumed": "run resumed", "recovered": "run recovered", "taken_over": "run taken over"}
_ENDED = {"completed": "run completed", "failed": "run failed", "cancelled": "run cancelled", "paused": "run paused"}


@dataclass
class _Stretch:
    """A run while this process drives it."""

    orchestration: str
    began: float  # time.monotonic() when this process took it up
    active_before: float
    cost_usd: float
    error: str | None = None
    gate: str | None = None

    def duration(self) -> float:
        return round(self.active_before + time.monotonic() - self.began, 3)


class RunLog:
    """A hub listener; `lookup` reads a run from the store (for runs ended elsewhere)."""

    def __init__(self, lookup: Callable[[str], Awaitable[Run | None]] | None = None) -> None:
        self.lookup = lookup
        self._runs: dict[str, _Stretch] = {}
        self._errors: dict[str, str] = {}  # runs not driven here: the error announced before done
        self._pending: set[asyncio.Task[None]] = set()

    def __call__(self, e: Event) -> None:
        run = self._runs.get(e.run_id)
        if isinstance(e, StepComplete):
            if run is not None:
                run.cost_usd += e.cost_usd
        elif isinstance(e, RunStart):
            self._runs[e.run_id] = _Stretch(e.orchestration_id, time.monotonic(), 0.0, 0.0)
            log.info("run started", run_id=e.run_id, orchestration=e.orchestration_id, status="running",
                     version=e.version)
        elif isinstance(e, RunContinued):
            self._runs[e.run_id] = _Stretch(e.orchestration_id, time.monotonic(), e.active_seconds, e.cost_usd)
            log.info(_CONTINUED.get(e.how, "run continued"), run_id=e.run_id, orchestration=e.orchestration_id,
                     status="running", duration_seconds=round(e.active_seconds, 3), cost_usd=e.cost_usd)
        elif isinstance(e, StepError):
            if e.will_retry:
                log.warning("step retrying", run_id=e.run_id, orchestration=run.orchestration if run else None,
                            step_id=e.step_id, error=e.error)
        elif isinstance(e, HumanInputRequired):
            if run is not None:
                run.gate = e.step_id
        elif isinstance(e, OrchestrationComplete):
            if run is not None:
                run.cost_usd = e.total_cost_usd
        elif isinstance(e, OrchestrationError):
            if run is not None:
                run.error = e.error
            else:
                self._errors[e.run_id] = e.error
        elif isinstance(e, Done):
            self._ended(e, self._runs.pop(e.run_id, None))

    def _ended(self, e: Done, run: _Stretch | None) -> None:
        if run is not None:
            fields: dict[str, Any] = {"orchestration": run.orchestration, "duration_seconds": run.duration(),
                                      "cost_usd": round(run.cost_usd, 8)}
            if e.status == "paused":
                fields["gate"] = run.gate
            ended(e.run_id, e.status, run.error, fields)
            return
        error = self._errors.pop(e.run_id, None)
        if self.lookup is None:
            ended(e.run_id, e.status, error, {})
            return
        try:  # ended from outside a driver: the store already holds the ending
            task = asyncio.get_running_loop().create_task(self._ended_elsewhere(e.run_id, e.status, error))
        except RuntimeError:
            ended(e.run_id, e.status, error, {})
            return
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _ended_elsewhere(self, run_id: str, status: str, error: str | None) -> None:
        assert self.lookup is not None
        fields: dict[str, Any] = {}
        try:
            run = await self.lookup(run_id)
        except Exception:  # noqa: BLE001 - the event is logged without the run's figures
            run = None
        if run is not None:
            fields = {"orchestration": run.orchestration_id, "duration_seconds": round(run.active_seconds, 3),
                      "cost_usd": round(run.cost_usd, 8)}
        ended(run_id, status, error, fields)

    async def drain(self) -> None:
        """Wait for the log events of runs ended elsewhere that are still being read."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)


def ended(run_id: str, status: str, error: str | None, fields: dict[str, Any]) -> None:
    message = _ENDED.get(status, f"run {status}")
    if status == "failed":
        log.error(message, run_id=run_id, status=status, error=error, **fields)
    else:
        log.info(message, run_id=run_id, status=status, **fields)
