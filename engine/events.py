"""Run events (SPEC §4.2) as msgspec Structs, and the per-run stream subscribers read.

Every event carries `type`, `run_id`, `seq` (monotonic per run) and `ts`; the runtime assigns
those when it emits, so executors construct events with their own fields only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, AsyncIterator, Callable

import msgspec


class Event(msgspec.Struct, kw_only=True, tag_field="type"):
    run_id: str = ""
    seq: int = 0
    ts: float = 0.0


class RunStart(Event, tag="run_start"):
    orchestration_id: str
    version: str
    message: str = ""


class StepStart(Event, tag="step_start"):
    step_id: str
    step_name: str
    step_type: str
    iteration: int = 1


class StepComplete(Event, tag="step_complete"):
    step_id: str
    step_name: str
    step_type: str
    status: str
    output_key: str | None
    output: str
    turns: int
    cost_usd: float
    duration_seconds: float


class StepError(Event, tag="step_error"):
    step_id: str
    error: str
    will_retry: bool = False


class AgentTurn(Event, tag="agent_turn"):
    step_id: str
    turn: int
    content: str
    tool_calls: list[dict[str, Any]]
    cost_usd: float


class ToolExecution(Event, tag="tool_execution"):
    step_id: str
    tool_name: str
    args: dict[str, Any]


class ToolResult(Event, tag="tool_result"):
    step_id: str
    tool_name: str
    preview: str
    error: bool = False


class RoutingDecision(Event, tag="routing_decision"):
    step_id: str
    decision: str
    target_step_id: str | None
    reasoning: str = ""


class LoopLimitReached(Event, tag="loop_limit_reached"):
    step_id: str
    max_iterations: int
    next_step_id: str | None


class HumanInputRequired(Event, tag="human_input_required"):
    step_id: str
    prompt: str
    fields: list[dict[str, Any]]
    agent_context: str


class OrchestrationComplete(Event, tag="orchestration_complete"):
    status: str
    final_state: dict[str, Any]
    response: str
    total_cost_usd: float


class OrchestrationError(Event, tag="orchestration_error"):
    error: str


class Done(Event, tag="done"):
    status: str = ""


class RunContinued(Event, tag="run_continued"):
    """Not part of a run's stream (never stored, never sent to subscribers): tells the hub's
    listeners that this process took up a run that already existed: a gate was answered
    (`resumed`), or a run left by a process that exited (`recovered`, at this process's start)
    or whose owner stopped renewing its lease (`taken_over`, by the heartbeat's sweep) continues
    from its last checkpoint here. Carries what the run had spent before."""

    orchestration_id: str
    how: str  # resumed | recovered | taken_over
    cost_usd: float = 0.0
    active_seconds: float = 0.0


AnyEvent = (
    RunStart | StepStart | StepComplete | StepError | AgentTurn | ToolExecution | ToolResult
    | RoutingDecision | LoopLimitReached | HumanInputRequired | OrchestrationComplete
    | OrchestrationError | Done
)
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AnyEvent)


def encode_event(event: Event) -> bytes:
    return _encoder.encode(event)


def stamp(events: list[Event], run_id: str, first_seq: int, ts: float) -> list[tuple[int, bytes]]:
    """Number `events` of `run_id` from `first_seq` on, time them `ts`, and encode them: the one
    place event numbers are given (by a run's driver, and by whoever ends or starts a run)."""
    out = []
    for i, event in enumerate(events):
        event.run_id, event.seq, event.ts = run_id, first_seq + i, ts
        out.append((event.seq, _encoder.encode(event)))
    return out


def decode_event(data: bytes | str) -> Event:
    return _decoder.decode(data)


def preview(value: Any, limit: int = 500) -> str:
    text = value if isinstance(value, str) else ("" if value is None else _encoder.encode(value).decode())
    return text if len(text) <= limit else text[: limit - 1] + "…"


Listener = Callable[[Event], None]
log = logging.getLogger("orch.events")


class EventHub:
    """Fan-out of live events to subscribers, per run. Readers replay history from the store
    first, then follow the hub; `seq` lets them drop what they have already seen.

    Listeners (`add_listener`) see every run's events, and the `RunContinued` notices, as they
    are published, synchronously: logs, metrics and traces are built on them. A listener that
    raises is logged and otherwise ignored: observing a run never disturbs it."""

    def __init__(self) -> None:
        self._subs: dict[str, set[asyncio.Queue[Event | None]]] = {}
        self._listeners: tuple[Listener, ...] = ()

    def add_listener(self, listener: Listener) -> None:
        self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners = tuple(x for x in self._listeners if x is not listener)

    def publish(self, event: Event) -> None:
        for q in self._subs.get(event.run_id, ()):
            q.put_nowait(event)
        if self._listeners:
            self.notify(event)

    def notify(self, event: Event) -> None:
        """Tell the listeners only (a notice such as `RunContinued`, or a published event)."""
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # noqa: BLE001 - an observer's bug must not reach the run
                log.exception("event listener %r failed on a %s event", listener, type(event).__name__)

    def close(self, run_id: str) -> None:
        """The run stopped (paused, finished); wake its subscribers."""
        for q in self._subs.get(run_id, ()):
            q.put_nowait(None)

    def subscribe(self, run_id: str) -> "Subscription":
        q: asyncio.Queue[Event | None] = asyncio.Queue()
        self._subs.setdefault(run_id, set()).add(q)
        return Subscription(self, run_id, q)

    def _drop(self, run_id: str, q: asyncio.Queue[Event | None]) -> None:
        subs = self._subs.get(run_id)
        if subs is not None:
            subs.discard(q)
            if not subs:
                del self._subs[run_id]


class RunEvents:
    """One run's events as its driver emits them: numbered in order, kept until a checkpoint
    stores them, and streamed to live subscribers as they happen — at most `window` ahead of
    the stored ones (the rest wait for the next store), so that a run recovered after a crash
    can number on past anything a subscriber may have seen (`skip`)."""

    def __init__(self, hub: EventHub, run_id: str, last_seq: int, window: int) -> None:
        self.hub, self.run_id, self.window = hub, run_id, window
        self.seq = last_seq
        self.pending: list[Event] = []  # emitted, not yet stored
        self._stored = last_seq
        self._held: list[Event] = []  # emitted past the window: streamed once it moves on

    def emit(self, event: Event) -> None:
        self.seq += 1
        stamp([event], self.run_id, self.seq, time.time())
        self.pending.append(event)
        if self.seq <= self._stored + self.window:
            self.hub.publish(event)
        else:
            self._held.append(event)

    @property
    def backlog_full(self) -> bool:
        """As many events wait to be stored as may be streamed ahead: time to store them."""
        return len(self.pending) >= self.window

    def take(self) -> list[tuple[int, bytes]]:
        """The pending events, encoded, for the checkpoint that stores them."""
        out = [(e.seq, encode_event(e)) for e in self.pending]
        self.pending = []
        return out

    def stored(self, seq: int) -> None:
        """Events up to `seq` are stored: stream those held back that the window now allows."""
        self._stored = max(self._stored, seq)
        while self._held and self._held[0].seq <= self._stored + self.window:
            self.hub.publish(self._held.pop(0))

    def skip(self) -> None:
        """After a crash the dead owner may have streamed numbers up to a window past the last
        stored event: number on past them. The caller stores the new number, then `stored`."""
        self.seq += self.window


class Subscription:
    def __init__(self, hub: EventHub, run_id: str, queue: asyncio.Queue[Event | None]) -> None:
        self._hub, self.run_id, self._queue = hub, run_id, queue

    async def __aiter__(self) -> AsyncIterator[Event]:
        while (event := await self._queue.get()) is not None:
            yield event

    async def get(self, timeout: float | None = None) -> Event | None:
        return await asyncio.wait_for(self._queue.get(), timeout)

    def close(self) -> None:
        self._hub._drop(self.run_id, self._queue)

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
