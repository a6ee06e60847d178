"""The trace of one run, taken with the SDK's in-memory exporter: the caller's traceparent, the
request's span, the run, its steps, their LLM and tool calls."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from orch.settings import Settings
from tests.server.conftest import AUTH, LiveServer

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"


def tree(spans: list[ReadableSpan], parent: int | None) -> list[Any]:
    """(name, children) of the spans under `parent`, in start order."""
    below = sorted((s for s in spans if (s.parent.span_id if s.parent else None) == parent), key=lambda s: s.start_time or 0)
    return [(s.name, tree(spans, s.context.span_id)) if tree(spans, s.context.span_id) else s.name for s in below]


def test_the_trace_of_one_run(settings: Settings) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    server = LiveServer(settings, tracer_provider=provider).start()
    try:
        response = httpx.post(f"{server.url}/api/v1/orchestrations/orch-calculator-tools/run", json={"message": "offsite"},
                              headers={**AUTH, "traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01"}, timeout=60)
    finally:
        server.stop()
    assert response.json()["status"] == "completed"
    run_id = response.json()["run_id"]
    spans = [s for s in exporter.get_finished_spans() if s.context.trace_id == int(TRACE_ID, 16)]
    [request] = [s for s in spans if s.kind == SpanKind.SERVER]
    assert request.parent is not None and request.parent.span_id == int(CALLER_SPAN, 16)
    assert tree(spans, int(CALLER_SPAN, 16)) == [("POST /api/v1/orchestrations/{orch_id}/run", [
        ("orch.run orch-calculator-tools", [
            ("orch.step step-timestamp", ["chat offline", "execute_tool current_time"]),
            ("orch.step step-total", ["execute_tool calculator"]),
            "orch.step step-within-budget",
            ("orch.step step-cuts", ["chat offline", "execute_tool calculator", "chat offline"]),
            "orch.step step-summary",
        ])])]
    assert all(s.attributes["orch.run_id"] == run_id for s in spans if s is not request)
    chat = next(s for s in spans if s.name == "chat offline")
    assert {k: chat.attributes[k] for k in ("gen_ai.operation.name", "gen_ai.system", "gen_ai.request.model")} == {
        "gen_ai.operation.name": "chat", "gen_ai.system": "offline", "gen_ai.request.model": "offline"}
    assert chat.attributes["gen_ai.usage.input_tokens"] > 0 and chat.attributes["gen_ai.usage.output_tokens"] > 0
    assert chat.kind == SpanKind.CLIENT
    run = next(s for s in spans if s.name.startswith("orch.run "))
    assert (run.attributes["orch.run.status"], run.attributes["orch.orchestration_id"]) == (
        "completed", "orch-calculator-tools")
