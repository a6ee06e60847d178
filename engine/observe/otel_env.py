"""Whether the standard OTEL_* variables ask for traces, read without importing OpenTelemetry
(so that tracing off costs nothing, not even the import)."""

from __future__ import annotations

import os
from typing import Mapping


def tracing_requested(env: Mapping[str, str] | None = None) -> bool:
    """`OTEL_TRACES_EXPORTER` names an exporter other than `none`, or, without it, an OTLP
    endpoint is set; `OTEL_SDK_DISABLED=true` turns tracing off whatever else is set."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    names = env.get("OTEL_TRACES_EXPORTER")
    if names is not None:
        return any(n.strip() not in ("", "none") for n in names.split(","))
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
