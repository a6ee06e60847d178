"""OpenTelemetry traces of runs: a span per run (per stretch of it: a run that pauses ends its
span, and its resume starts another in the trace of the request that resumed it), one per step
execution beneath it, and beneath those one per LLM call (GenAI semantic conventions: the
provider, the model, token usage) and per tool call. Every span carries the run id
(`orch.run_id`). A run started by an HTTP request is a child of that request's span, itself the
child of the caller's `traceparent`. The vendor HTTP requests of an LLM call nest under it
(opentelemetry-instrumentation-httpx).

Tracing is on when the standard variables ask for it: `OTEL_TRACES_EXPORTER` names an exporter
other than `none` (`otlp`, `console`, or any installed one), or an OTLP endpoint is set
(`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`); `OTEL_SDK_DISABLED=true`
turns it off. Off, nothing here is imported or called.
"""

from __future__ import annotations

import os
from importlib.metadata import entry_points
from typing import Any, Mapping

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from orch.errors import ProviderError
from orch.events import (
    Done, Event, HumanInputRequired, OrchestrationError, RoutingDecision, RunContinued, RunStart, StepComplete,
    StepError, StepStart, ToolExecution, ToolResult,
)
from orch.observe.calls import LLMCall, unwatch_calls, watch_calls
from orch.observe.otel_env import tracing_requested

RUN_ID = "orch.run_id"
_RUN_KEY = otel_context.create_key("orch.run_id")
_EXPORTER_ALIASES = {"otlp": "otlp_proto_http"}


class TracingError(ValueError):
    """The OTEL_* variables ask for tracing that cannot be set up."""


def exporters_from_env(env: Mapping[str, str] | None = None) -> list[SpanExporter]:
    env = os.environ if env is None else env
    names = [n.strip() for n in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if n.strip() not in ("", "none")]
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or ""
    installed = {e.name: e for e in entry_points(group="opentelemetry_traces_exporter")}
    exporters: list[SpanExporter] = []
    for name in names or ["otlp"]:
        wanted = "otlp_proto_grpc" if name == "otlp" and protocol == "grpc" else _EXPORTER_ALIASES.get(name, name)
        entry = installed.get(wanted)
        if entry is None:
            known = ", ".join(sorted({*installed, *_EXPORTER_ALIASES} - set(_EXPORTER_ALIASES.values())))
            raise TracingError(f"OTEL_TRACES_EXPORTER: no span exporter '{name}' is installed; installed: {known}")
        try:
            exporters.append(entry.load()())
        except Exception as exc:  # noqa: BLE001 - reported in one line
            raise TracingError(f"OTEL_TRACES_EXPORTER: exporter '{name}' cannot start: {exc}") from None
    return exporters


def provider_from_env(env: Mapping[str, str] | None = None) -> TracerProvider | None:
    """A tracer provider exporting as the OTEL_* variables say, or None when tracing is off.
    The service is `orch` unless OTEL_SERVICE_NAME (or OTEL_RESOURCE_ATTRIBUTES) names it."""
    env = os.environ if env is None else env
    if not tracing_requested(env):
        return None
    resource = Resource.create({} if env.get("OTEL_SERVICE_NAME") else {"service.name": "orch"})
    provider = TracerProvider(resource=resource)
    for exporter in exporters_from_env(env):
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


_global: TracerProvider | None = None


def start_tracing(env: Mapping[str, str] | None = None) -> TracerProvider | None:
    """Once per process: the provider of `provider_from_env`, made the global one, with the
    httpx instrumentation that traces vendor calls. None when tracing is off."""
    global _global
    if _global is not None:
        return _global
    provider = provider_from_env(env)
    if provider is None:
        return None
    trace.set_tracer_provider(provider)
    instrument_httpx(provider)
    _global = provider
    return provider


def instrument_httpx(provider: TracerProvider) -> None:
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    def tag(span: Span, request: Any) -> None:
        run_id = otel_context.get_value(_RUN_KEY)
        if run_id and span.is_recording():
            span.set_attribute(RUN_ID, str(run_id))

    async def atag(span: Span, request: Any) -> None:
        tag(span, request)

    instrumentor = HTTPXClientInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=provider, request_hook=tag, async_request_hook=atag)


class RunTracer:
    """A hub listener making the spans of runs, steps and tool calls, and an LLM call watcher
    making the spans of model calls. `close()` ends what is still open."""

    def __init__(self, provider: trace.TracerProvider) -> None:
        self.tracer = provider.get_tracer("orch")
        self._runs: dict[str, Span] = {}
        self._steps: dict[tuple[str, str], list[Span]] = {}
        self._tools: dict[tuple[str, str, str], list[Span]] = {}
        watch_calls(self)

    # -- events ------------------------------------------------------------------------------

    def __call__(self, e: Event) -> None:
        if isinstance(e, (RunStart, RunContinued)):
            self._run_began(e)
            return
        run = self._runs.get(e.run_id)
        if run is None:
            return
        if isinstance(e, StepStart):
            step = self.tracer.start_span(
                f"orch.step {e.step_id}", context=trace.set_span_in_context(run),
                attributes={RUN_ID: e.run_id, "orch.step.id": e.step_id, "orch.step.type": e.step_type,
                            "orch.step.iteration": e.iteration})
            self._steps.setdefault((e.run_id, e.step_id), []).append(step)
        elif isinstance(e, StepComplete):
            done = _pop(self._steps, (e.run_id, e.step_id))
            if done is not None:
                done.set_attributes({"orch.step.status": e.status, "orch.step.turns": e.turns,
                                     "orch.cost_usd": e.cost_usd})
                if e.status == "failed":
                    done.set_status(Status(StatusCode.ERROR))
                done.end()
        elif isinstance(e, StepError):
            target = _last(self._steps, (e.run_id, e.step_id)) or run
            target.add_event("retry" if e.will_retry else "error", {"orch.error": e.error})
            if not e.will_retry:
                target.set_status(Status(StatusCode.ERROR, e.error))
        elif isinstance(e, ToolExecution):
            parent = _last(self._steps, (e.run_id, e.step_id)) or run
            tool = self.tracer.start_span(
                f"execute_tool {e.tool_name}", context=trace.set_span_in_context(parent),
                attributes={RUN_ID: e.run_id, "orch.step.id": e.step_id, "gen_ai.operation.name": "execute_tool",
                            "gen_ai.tool.name": e.tool_name})
            self._tools.setdefault((e.run_id, e.step_id, e.tool_name), []).append(tool)
        elif isinstance(e, ToolResult):
            called = _pop(self._tools, (e.run_id, e.step_id, e.tool_name))
            if called is not None:
                if e.error:
                    called.set_status(Status(StatusCode.ERROR, e.preview))
                called.end()
        elif isinstance(e, RoutingDecision):
            (_last(self._steps, (e.run_id, e.step_id)) or run).set_attribute("orch.route", e.decision)
        elif isinstance(e, HumanInputRequired):
            run.add_event("human_input_required", {"orch.step.id": e.step_id})
        elif isinstance(e, OrchestrationError):
            run.set_status(Status(StatusCode.ERROR, e.error))
        elif isinstance(e, Done):
            self._run_ended(e.run_id, e.status)

    def _run_began(self, e: RunStart | RunContinued) -> None:
        attributes: dict[str, Any] = {RUN_ID: e.run_id, "orch.orchestration_id": e.orchestration_id}
        if isinstance(e, RunStart):
            attributes["orch.version"] = e.version
        else:
            attributes["orch.run.how"] = e.how
        old = self._runs.pop(e.run_id, None)
        if old is not None:
            old.end()
        # The current context: the HTTP request that started or resumed the run, if any.
        self._runs[e.run_id] = self.tracer.start_span(f"orch.run {e.orchestration_id}", attributes=attributes)

    def _run_ended(self, run_id: str, status: str) -> None:
        open_spans = [span for key in [k for k in self._tools if k[0] == run_id] for span in self._tools.pop(key)]
        open_spans += [span for key in [k for k in self._steps if k[0] == run_id] for span in self._steps.pop(key)]
        for span in open_spans:
            if status != "paused":  # else it is the gate's step, answered in a later stretch
                span.set_status(Status(StatusCode.ERROR, f"run {status}"))
            span.end()
        run = self._runs.pop(run_id, None)
        if run is not None:
            run.set_attribute("orch.run.status", status)
            run.end()

    # -- LLM calls ---------------------------------------------------------------------------

    def call_started(self, call: LLMCall) -> object:
        parent = _last(self._steps, (call.run_id, call.step_id)) or self._runs.get(call.run_id)
        if parent is None:  # a run of another engine of this process
            return None
        span = self.tracer.start_span(
            f"chat {call.model}", context=trace.set_span_in_context(parent), kind=SpanKind.CLIENT,
            attributes={RUN_ID: call.run_id, "orch.step.id": call.step_id, "gen_ai.operation.name": "chat",
                        "gen_ai.system": call.provider, "gen_ai.provider.name": call.provider,
                        "gen_ai.request.model": call.model})
        ctx = otel_context.set_value(_RUN_KEY, call.run_id, trace.set_span_in_context(span))
        return span, otel_context.attach(ctx)

    def call_ended(self, call: LLMCall, token: object, error: BaseException | None) -> None:
        if token is None:
            return
        assert isinstance(token, tuple)
        span: Span = token[0]
        otel_context.detach(token[1])
        if call.completion is not None:
            usage = call.completion.usage
            span.set_attributes({"gen_ai.response.model": call.completion.model or call.model,
                                 "gen_ai.usage.input_tokens": usage.input_tokens,
                                 "gen_ai.usage.output_tokens": usage.output_tokens,
                                 "orch.cost_usd": call.cost_usd})
            if call.completion.stop_reason:
                span.set_attribute("gen_ai.response.finish_reasons", [call.completion.stop_reason])
        if error is not None and call.completion is None:
            span.set_attribute("error.type", type(error).__name__)
            if isinstance(error, ProviderError) and error.status is not None:
                span.set_attribute("http.response.status_code", error.status)
            span.set_status(Status(StatusCode.ERROR, str(error)))
        span.end()

    def close(self) -> None:
        unwatch_calls(self)
        for run_id in list(self._runs):
            self._run_ended(run_id, "interrupted")


def _last(table: Mapping[Any, list[Span]], key: Any) -> Span | None:
    spans = table.get(key)
    return spans[-1] if spans else None


def _pop(table: dict[Any, list[Span]], key: Any) -> Span | None:
    spans = table.get(key)
    if not spans:
        return None
    span = spans.pop(0)
    if not spans:
        del table[key]
    return span
