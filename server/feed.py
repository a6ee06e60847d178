"""A run's events for one reader: what is already stored, then the live run, in `seq` order with
nothing missing and nothing twice.

Events reach a reader by three ways: the store (committed with each step), the driver's pending
list (emitted, not yet committed) and the hub (live). The feed subscribes to the hub *before*
reading the others, so every event emitted after that moment arrives live; events emitted before
it are pending or stored. It subscribes when first iterated, so a response that is never sent
leaves no subscription behind. One window remains: an event taken off the pending list for a
commit that lands after the store was read. `seq` is contiguous per run, so such a hole shows as
a jump and is filled from the store once that commit lands.

The feed ends at a `done` event (the run paused or ended), or, for a run this process does not
drive, once the store shows it is no longer running. It yields `None` when it has been idle for
`idle_seconds`, so the SSE layer can send a keep-alive.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator

import msgspec

from orch.events import Done, Subscription, encode_event
from orch.run.engine import Engine
from orch.run.model import Run, RunStatus

Item = tuple[int, bytes]


class _Type(msgspec.Struct):
    type: str


_type_of = msgspec.json.Decoder(_Type)


def is_done(body: bytes) -> bool:
    return _type_of.decode(body).type == "done"


class RunFeed:
    sub: Subscription

    def __init__(self, engine: Engine, run_id: str, *, after: int = 0, idle_seconds: float = 15.0,
                 poll_seconds: float = 1.0, gap_seconds: float = 5.0) -> None:
        self.engine, self.run_id = engine, run_id
        self.last = after
        self.idle_seconds, self.poll_seconds, self.gap_seconds = idle_seconds, poll_seconds, gap_seconds
        self._sent_at = time.monotonic()

    async def __aiter__(self) -> AsyncIterator[Item | None]:
        self.sub = self.engine.hub.subscribe(self.run_id)
        try:
            row = await self.engine.store.get_run(self.run_id)
            backlog = self._backlog()
            backlog.update(await self.engine.store.events(self.run_id, after=self.last))
            for seq in sorted(backlog):
                for replayed in await self._through(seq, backlog[seq]):
                    yield replayed
            if backlog:
                if is_done(backlog[max(backlog)]):
                    return
            elif not await self._running(row):
                return
            async for item in self._tail():
                yield item
        finally:
            self.sub.close()

    def _backlog(self) -> dict[int, bytes]:
        return {e.seq: encode_event(e) for e in self.engine.pending_events(self.run_id) if e.seq > self.last}

    async def _running(self, run: Run | None = None) -> bool:
        if self.engine.is_active(self.run_id):
            return True
        if run is None:
            run = await self.engine.store.get_run(self.run_id)
        return run is not None and run.status == RunStatus.RUNNING

    async def _tail(self) -> AsyncIterator[Item | None]:
        while True:
            local = self.engine.is_active(self.run_id)
            wait = self.idle_seconds - (time.monotonic() - self._sent_at)
            if not local:
                wait = min(wait, self.poll_seconds)
            try:
                event = await self.sub.get(timeout=max(wait, 0.01))
                timed_out = False
            except TimeoutError:
                event, timed_out = None, True
            if event is not None:
                if event.seq > self.last:
                    for item in await self._through(event.seq, encode_event(event)):
                        yield item
                    if isinstance(event, Done):
                        return
            elif not timed_out or not local:
                # The driver here stopped (hub closed), or another process drives the run: the
                # store has the rest.
                stored = await self.engine.store.events(self.run_id, after=self.last)
                for seq, body in stored:
                    for item in await self._through(seq, body):
                        yield item
                if stored and is_done(stored[-1][1]):
                    return
                if not stored and not await self._running():
                    return
            if time.monotonic() - self._sent_at >= self.idle_seconds:
                self._sent_at = time.monotonic()
                yield None

    async def _through(self, seq: int, body: bytes) -> list[Item]:
        """`(seq, body)` preceded by whatever the reader has not seen before it."""
        if seq <= self.last:
            return []
        out: list[Item] = []
        if seq > self.last + 1:
            out.extend(await self._fill(seq))
        out.append((seq, body))
        self.last = seq
        self._sent_at = time.monotonic()
        return out

    async def _fill(self, upto: int) -> list[Item]:
        """Stored events between the last one sent and `upto`, waiting briefly for their commit.
        A hole below the run's stored `last_seq` is final: numbers a recovered run skipped past
        (docs/semantics.md, Events) are never stored, so there is nothing to wait for."""
        deadline = time.monotonic() + self.gap_seconds
        while True:
            found = [(s, b) for s, b in await self.engine.store.events(self.run_id, after=self.last) if s < upto]
            if (found and found[-1][0] == upto - 1) or time.monotonic() >= deadline:
                return found
            run = await self.engine.store.get_run(self.run_id)
            if run is not None and run.last_seq >= upto - 1:  # read again: a commit may have landed meanwhile
                return [(s, b) for s, b in await self.engine.store.events(self.run_id, after=self.last) if s < upto]
            await asyncio.sleep(0.02)
