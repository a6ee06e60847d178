"""Watching LLM calls where steps make them (orch.steps.prompting.call_model).

A watcher is told when a call starts and how it ended: metrics count calls, tokens, cost and
provider errors; traces open a span around the call, so the vendor's HTTP request nests under
it. With no watcher installed, `llm_call` hands back one shared object whose methods do
nothing: the call costs what it cost before.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Protocol

from orch.providers.base import Completion


class LLMCall:
    """One call to a model, as watchers see it."""

    __slots__ = ("run_id", "step_id", "provider", "model", "started", "completion", "cost_usd", "_open")

    def __init__(self, run_id: str, step_id: str, provider: str, model: str) -> None:
        self.run_id, self.step_id, self.provider, self.model = run_id, step_id, provider, model
        self.started = time.perf_counter()
        self.completion: Completion | None = None
        self.cost_usd = 0.0
        self._open: list[tuple[CallWatcher, object]] = []

    def completed(self, completion: Completion, cost_usd: float) -> None:
        self.completion, self.cost_usd = completion, cost_usd

    def __enter__(self) -> "LLMCall":
        for watcher in tuple(_watchers):
            self._open.append((watcher, watcher.call_started(self)))
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        for watcher, token in reversed(self._open):
            watcher.call_ended(self, token, error)


class _Unwatched:
    """What `llm_call` returns when nothing watches."""

    __slots__ = ()

    def completed(self, completion: Completion, cost_usd: float) -> None:
        return None

    def __enter__(self) -> "_Unwatched":
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        return None


class CallWatcher(Protocol):
    def call_started(self, call: LLMCall) -> object:
        """Called before the request is sent; the value returned comes back to `call_ended`."""

    def call_ended(self, call: LLMCall, token: object, error: BaseException | None) -> None:
        """Called once the call ended: `call.completion` is set when it answered (the step may
        still fail after, e.g. over its cost limit: then `error` is set too)."""


_UNWATCHED = _Unwatched()
_watchers: list[CallWatcher] = []


def llm_call(run_id: str, step_id: str, provider: str, model: str) -> LLMCall | _Unwatched:
    """A context manager around one call; `completed(...)` it with the answer and its cost."""
    if not _watchers:
        return _UNWATCHED
    return LLMCall(run_id, step_id, provider, model)


def watch_calls(watcher: CallWatcher) -> None:
    """Tell `watcher` about every LLM call of this process (once per watcher)."""
    if watcher not in _watchers:
        _watchers.append(watcher)


def unwatch_calls(watcher: CallWatcher) -> None:
    if watcher in _watchers:
        _watchers.remove(watcher)
