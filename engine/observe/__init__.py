"""Seeing what the engine does: logs, metrics and traces, built on the event hub.

Every run transition and step already produces an event (orch.events), and the engine publishes
them on `engine.hub`; the observers here are the hub's listeners (`EventHub.add_listener`), so
the engine itself knows nothing of logging libraries, Prometheus or OpenTelemetry. LLM calls are
watched where steps make them (`calls.llm_call`), checkpoints where the store commits them
(`metrics.timed_store`).

    logs.py     structlog set up for JSON or console lines, with secrets scrubbed
    runlog.py   one log event per run start, pause, resume, end, recovery and takeover
    metrics.py  Prometheus metrics (single- and multi-process)
    traces.py   OpenTelemetry spans per run, step, LLM call and tool call
    calls.py    the hook around LLM calls

This package imports none of those libraries until a module that needs one is imported.
"""
