"""Watching one engine: its runs logged and counted, and traced when given a tracer provider."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable

if TYPE_CHECKING:
    from orch.run.engine import Engine


def observe_engine(engine: "Engine", tracer_provider: Any = None) -> Callable[[], Awaitable[None]]:
    """Log (orch.observe.runlog), count (orch.observe.metrics) and, with an OpenTelemetry
    `tracer_provider`, trace (orch.observe.traces) the engine's runs; the server does this for
    its engine. Returns the coroutine function that stops watching."""
    from orch.observe.metrics import RunMetrics, process_exited, timed_store, watch_llm_calls
    from orch.observe.runlog import RunLog

    engine.store = timed_store(engine.store)
    watch_llm_calls()
    listeners: list[Any] = [RunLog(engine.store.get_run), RunMetrics(engine.store.get_run)]
    tracer = None
    if tracer_provider is not None:
        from orch.observe.traces import RunTracer

        tracer = RunTracer(tracer_provider)
        listeners.append(tracer)
    for listener in listeners:
        engine.hub.add_listener(listener)

    async def stop() -> None:
        for listener in listeners:
            engine.hub.remove_listener(listener)
            if hasattr(listener, "drain"):
                await listener.drain()
        if tracer is not None:
            tracer.close()
        process_exited()  # with several workers: this one's live gauges go

    return stop
