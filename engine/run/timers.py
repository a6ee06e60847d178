"""Gate deadlines armed as timers on the event loop: when one passes unanswered, `expire` is
called with the run's id (in a task of its own; it decides, against the store, whether the run
really timed out)."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Coroutine


class GateTimers:
    def __init__(self, expire: Callable[[str], Coroutine[Any, Any, None]]) -> None:
        self._expire = expire
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def arm(self, run_id: str, deadline: float, *, replace: bool = True) -> None:
        if run_id in self._timers:
            if not replace:
                return
            self.disarm(run_id)
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.pop(run_id, None)
            task = loop.create_task(self._expire(run_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        self._timers[run_id] = loop.call_later(max(0.0, deadline - time.time()), fire)

    def disarm(self, run_id: str) -> None:
        timer = self._timers.pop(run_id, None)
        if timer is not None:
            timer.cancel()

    def __contains__(self, run_id: str) -> bool:
        return run_id in self._timers

    async def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
