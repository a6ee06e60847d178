"""RunFeed against a scripted engine: the races a live server rarely shows on demand."""

from __future__ import annotations

import asyncio
from typing import Any

from orch.run.model import Run, RunStatus
from orch.events import Done, EventHub, Event, StepStart, encode_event
from orch.server.feed import RunFeed

RUN = "run_x"


def event(seq: int, done: bool = False) -> Event:
    e: Event = Done(status="paused") if done else StepStart(step_id=f"s{seq}", step_name="", step_type="print")
    e.run_id, e.seq, e.ts = RUN, seq, float(seq)
    return e


class ScriptedEngine:
    """What RunFeed uses of an Engine: a hub, pending events, a store and whether it drives the run."""

    def __init__(self, stored: list[Event], pending: tuple[Event, ...] = (), active: bool = True) -> None:
        self.hub = EventHub()
        self.stored = {e.seq: encode_event(e) for e in stored}
        self.pending = list(pending)
        self.active = active
        self.status = "running"
        self.last_seq = 0  # what the run row says was committed
        self.store = self

    async def get_run(self, run_id: str) -> Run:
        return Run(id=run_id, orchestration_id="o", version="v", status=RunStatus(self.status), last_seq=self.last_seq)

    async def events(self, run_id: str, after: int = 0) -> list[tuple[int, bytes]]:
        return sorted((s, b) for s, b in self.stored.items() if s > after)

    def pending_events(self, run_id: str) -> list[Event]:
        return list(self.pending)

    def is_active(self, run_id: str) -> bool:
        return self.active

    def commit(self, *events: Event) -> None:
        self.stored.update((e.seq, encode_event(e)) for e in events)


async def collect(feed: RunFeed, timeout: float = 5) -> list[int | None]:
    async def run() -> list[int | None]:
        return [None if item is None else item[0] async for item in feed]

    return await asyncio.wait_for(run(), timeout)


async def test_a_hole_left_by_a_late_commit_is_filled_from_the_store() -> None:
    engine = ScriptedEngine(stored=[event(1), event(2)])  # event 3 was taken for a commit still in flight
    feed = RunFeed(engine, RUN, idle_seconds=10)  # type: ignore[arg-type]
    reader = asyncio.create_task(collect(feed))
    await asyncio.sleep(0.05)
    engine.hub.publish(event(4))
    await asyncio.sleep(0.1)
    engine.commit(event(3))
    engine.hub.publish(event(5, done=True))
    assert await reader == [1, 2, 3, 4, 5]


async def test_numbers_skipped_by_a_recovered_run_are_passed_over_at_once() -> None:
    # A run recovered after a crash numbers on 1,000 past its last stored event.
    engine = ScriptedEngine(stored=[event(1), event(2), event(1003), event(1004, done=True)], active=False)
    engine.last_seq, engine.status = 1004, "paused"
    feed = RunFeed(engine, RUN, idle_seconds=10, gap_seconds=30)  # type: ignore[arg-type]
    assert await collect(feed, timeout=2) == [1, 2, 1003, 1004]


async def test_events_seen_in_several_places_are_sent_once() -> None:
    engine = ScriptedEngine(stored=[event(1), event(2), event(3)], pending=(event(3), event(4)))
    feed = RunFeed(engine, RUN, after=1, idle_seconds=10)  # type: ignore[arg-type]
    reader = asyncio.create_task(collect(feed))
    await asyncio.sleep(0.05)
    for e in (event(4), event(5), event(5), event(6, done=True)):
        engine.hub.publish(e)
    assert await reader == [2, 3, 4, 5, 6]


async def test_when_the_driver_stops_without_done_the_store_has_the_rest() -> None:
    engine = ScriptedEngine(stored=[event(1)])
    reader = asyncio.create_task(collect(RunFeed(engine, RUN, idle_seconds=10)))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    engine.commit(event(2), event(3, done=True))
    engine.active, engine.status = False, "paused"
    engine.hub.close(RUN)
    assert await reader == [1, 2, 3]


async def test_a_run_driven_elsewhere_is_followed_through_the_store() -> None:
    engine = ScriptedEngine(stored=[event(1)], active=False)
    feed = RunFeed(engine, RUN, idle_seconds=10, poll_seconds=0.05)  # type: ignore[arg-type]
    reader = asyncio.create_task(collect(feed))
    await asyncio.sleep(0.1)
    engine.commit(event(2))
    await asyncio.sleep(0.1)
    engine.commit(event(3, done=True))
    assert await reader == [1, 2, 3]


async def test_an_idle_feed_yields_keepalives_and_a_stopped_run_ends_it() -> None:
    engine = ScriptedEngine(stored=[event(1)])
    reader = asyncio.create_task(collect(RunFeed(engine, RUN, idle_seconds=0.05)))  # type: ignore[arg-type]
    await asyncio.sleep(0.18)
    engine.active, engine.status = False, "failed"
    engine.hub.close(RUN)
    items = await reader
    assert items[0] == 1 and items.count(None) >= 2 and set(items[1:]) == {None}
    assert engine.hub._subs == {}  # the subscription was dropped
