"""Prometheus metrics of runs, steps, LLM calls, checkpoints and event streams.

With several server workers (`orch serve --workers N`) each process writes its samples to files
in PROMETHEUS_MULTIPROC_DIR (prometheus-client's multi-process mode) and whichever worker
answers a scrape adds them all up; that variable must be set before this module is imported,
which `orch serve` does. The counts of runs by status come from the store at each scrape, so
they are the same whichever worker answers.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping, cast

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from orch.errors import ProviderError
from orch.events import Done, Event, RunContinued, RunStart, StepComplete, StepError, StepStart
from orch.observe.calls import LLMCall, watch_calls
from orch.run.model import Checkpoint, Run
from orch.store.base import RunStore

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
FINAL = frozenset({"completed", "failed", "cancelled"})
_STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)
_COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)

RUNS_STARTED = Counter("orch_runs_started", "Runs started", ["orchestration"])
RUNS_FINISHED = Counter("orch_runs_finished", "Runs that reached a final status", ["orchestration", "status"])
RUNS_PAUSED = Counter("orch_run_pauses", "Times a run paused at a human gate", ["orchestration"])
RUNS_CONTINUED = Counter("orch_runs_continued", "Runs this process took up again: resumed, recovered, taken over",
                         ["orchestration", "how"])
RUNS_DRIVEN = Gauge("orch_runs_in_progress", "Runs this process (all workers) is driving now",
                    multiprocess_mode="livesum")
STEP_SECONDS = Histogram("orch_step_duration_seconds", "Step executions by step type and outcome",
                         ["step_type", "status"], buckets=_STEP_BUCKETS)
STEP_RETRIES = Counter("orch_step_retries", "Step attempts that failed and are retried", ["step_type"])
LLM_CALLS = Counter("orch_llm_calls", "LLM calls answered", ["provider", "model"])
LLM_TOKENS = Counter("orch_llm_tokens", "LLM tokens by kind (input, output, cache_read, cache_write)",
                     ["provider", "model", "kind"])
LLM_COST = Counter("orch_llm_cost_usd", "LLM spend in US dollars", ["provider", "model"])
LLM_SECONDS = Histogram("orch_llm_call_duration_seconds", "LLM call latency, answered or not",
                        ["provider", "model"], buckets=_STEP_BUCKETS)
PROVIDER_ERRORS = Counter("orch_provider_errors", "LLM calls that failed, by HTTP status ('' when none)",
                          ["provider", "model", "status", "retryable"])
CHECKPOINT_SECONDS = Histogram("orch_checkpoint_commit_seconds", "Time to commit one checkpoint",
                               buckets=_COMMIT_BUCKETS)
STREAMS_OPEN = Gauge("orch_event_streams_open", "Open server-sent event streams", multiprocess_mode="livesum")


class RunMetrics:
    """A hub listener counting runs and steps; `lookup` reads runs ended outside a driver."""

    def __init__(self, lookup: Callable[[str], Awaitable[Run | None]] | None = None) -> None:
        self.lookup = lookup
        self._orchestration: dict[str, str] = {}  # runs driven here
        self._types: dict[tuple[str, str], str] = {}  # (run, step) → step type, for retries
        self._pending: set[asyncio.Task[None]] = set()

    def __call__(self, e: Event) -> None:
        if isinstance(e, StepComplete):
            STEP_SECONDS.labels(e.step_type, e.status).observe(e.duration_seconds)
        elif isinstance(e, StepStart):
            self._types[(e.run_id, e.step_id)] = e.step_type
        elif isinstance(e, StepError):
            if e.will_retry:
                STEP_RETRIES.labels(self._types.get((e.run_id, e.step_id), "")).inc()
        elif isinstance(e, RunStart):
            RUNS_STARTED.labels(e.orchestration_id).inc()
            self._driving(e.run_id, e.orchestration_id)
        elif isinstance(e, RunContinued):
            RUNS_CONTINUED.labels(e.orchestration_id, e.how).inc()
            self._driving(e.run_id, e.orchestration_id)
        elif isinstance(e, Done):
            self._done(e)

    def _driving(self, run_id: str, orchestration: str) -> None:
        if run_id not in self._orchestration:
            RUNS_DRIVEN.inc()
        self._orchestration[run_id] = orchestration

    def _done(self, e: Done) -> None:
        orchestration = self._orchestration.pop(e.run_id, None)
        if orchestration is not None:
            RUNS_DRIVEN.dec()
            for key in [k for k in self._types if k[0] == e.run_id]:
                del self._types[key]
            count(orchestration, e.status)
            return
        if e.status not in FINAL or self.lookup is None:
            return
        try:
            task = asyncio.get_running_loop().create_task(self._ended_elsewhere(e.run_id, e.status))
        except RuntimeError:
            return
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _ended_elsewhere(self, run_id: str, status: str) -> None:
        assert self.lookup is not None
        try:
            run = await self.lookup(run_id)
        except Exception:  # noqa: BLE001 - counted without its orchestration
            run = None
        count(run.orchestration_id if run is not None else "", status)

    async def drain(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)


def count(orchestration: str, status: str) -> None:
    if status == "paused":
        RUNS_PAUSED.labels(orchestration).inc()
    elif status in FINAL:
        RUNS_FINISHED.labels(orchestration, status).inc()


class CallMetrics:
    """Counts LLM calls, tokens, spend and provider errors (installed once per process)."""

    def call_started(self, call: LLMCall) -> object:
        return None

    def call_ended(self, call: LLMCall, token: object, error: BaseException | None) -> None:
        model = call.completion.model if call.completion is not None and call.completion.model else call.model
        LLM_SECONDS.labels(call.provider, model).observe(time.perf_counter() - call.started)
        if call.completion is not None:
            usage = call.completion.usage
            LLM_CALLS.labels(call.provider, model).inc()
            for kind, n in (("input", usage.input_tokens), ("output", usage.output_tokens),
                            ("cache_read", usage.cache_read_tokens), ("cache_write", usage.cache_write_tokens)):
                if n:
                    LLM_TOKENS.labels(call.provider, model, kind).inc(n)
            if call.cost_usd:
                LLM_COST.labels(call.provider, model).inc(call.cost_usd)
        elif isinstance(error, ProviderError):
            status = "" if error.status is None else str(error.status)
            PROVIDER_ERRORS.labels(call.provider, call.model, status, str(error.retryable).lower()).inc()


_CALLS = CallMetrics()


def watch_llm_calls() -> None:
    watch_calls(_CALLS)


class _TimedCheckpoints:
    """The store, with each checkpoint's commit timed."""

    def __init__(self, store: RunStore) -> None:
        self._store = store

    async def checkpoint(self, cp: Checkpoint) -> None:
        began = time.perf_counter()
        await self._store.checkpoint(cp)
        CHECKPOINT_SECONDS.observe(time.perf_counter() - began)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def timed_store(store: RunStore) -> RunStore:
    """`store` with checkpoint commit latency recorded (everything else passes through)."""
    if isinstance(store, _TimedCheckpoints):
        return cast(RunStore, store)
    return cast(RunStore, _TimedCheckpoints(store))


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def prepare_multiprocess_dir(path: str | Path) -> None:
    """Create the directory and remove samples a previous server left there (the files of
    prometheus-client, `*.db`; nothing else is touched)."""
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.db"):
        old.unlink(missing_ok=True)


def process_exited(pid: int | None = None) -> None:
    """In multi-process mode, drop this worker's live gauges (streams open, runs in progress)."""
    if multiprocess():
        mark_process_dead(os.getpid() if pid is None else pid)  # type: ignore[no-untyped-call]


def exposition(run_counts: Mapping[str, int] | None = None) -> bytes:
    """The text a scrape gets: this process's metrics (or every worker's), then the runs in the
    store by status when `run_counts` is given."""
    if multiprocess():
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        text = generate_latest(registry)
    else:
        text = generate_latest(REGISTRY)
    if run_counts is not None:
        family = GaugeMetricFamily("orch_runs", "Runs in the store by status", labels=["status"])
        for status in ("running", "paused", "completed", "failed", "cancelled"):
            family.add_metric([status], run_counts.get(status, 0))
        extra = CollectorRegistry()
        extra.register(_Fixed([family]))
        text += generate_latest(extra)
    return text


class _Fixed:
    def __init__(self, families: list[GaugeMetricFamily]) -> None:
        self.families = families

    def collect(self) -> list[GaugeMetricFamily]:
        return self.families
