"""Structured logs of a server, as an operator reads them: JSON lines on standard error, one
event per run transition, request ids, and never a secret."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.fakes.llm_servers import Reply, Status, running_fake_llm
from tests.server.serving import GATE_GRAPH, Served, write_graphs

API_KEY = "orch_test-api-key-7f3a9c1e5b2d"
PROVIDER_KEY = "sk-provider-secret-0a1b2c3d4e5f"
SESSION_SECRET = "session-secret-9z8y7x6w5v4u3t"
VENDOR_GRAPH = """
id: o-vendor
name: Vendor
agents:
  - {id: writer, name: Writer, provider: openai, model: gpt-4o-mini, system_prompt: "You write."}
steps:
  - {id: draft, type: llm, agent_id: writer, prompt_template: "Draft {state.user_input}", output_key: text,
     retry: {attempts: 2, backoff_seconds: 0.01}, next_step_id: polish}
  - {id: polish, type: llm, agent_id: writer, prompt_template: "Polish {state.text}", output_key: final}
"""


def events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_a_failed_run_logs_one_event_with_its_error_and_no_secret(tmp_path: Path) -> None:
    write_graphs(tmp_path, VENDOR_GRAPH, GATE_GRAPH)
    with running_fake_llm() as llm:
        llm.script([Status(429, message="slow down"), Reply(text="a draft"),
                    Status(401, message=f"Incorrect API key provided: {PROVIDER_KEY}")])
        env = {"ORCH_LOG_FORMAT": "json", "ORCH_API_KEYS": API_KEY, "ORCH_OPENAI_API_KEY": PROVIDER_KEY,
               "ORCH_OPENAI_BASE_URL": llm.openai_base_url, "ORCH_SESSION_SECRET": SESSION_SECRET,
               "ORCH_DATABASE_URL": f"sqlite:///{tmp_path}/orch.db"}
        with Served(tmp_path, env=env) as server:
            failed = server.post("/orchestrations/o-vendor/run", {"message": "tides"}, API_KEY,
                                 **{"X-Request-ID": "req-42"})
            paused = server.post("/orchestrations/o-gate/run", {"message": "x"}, API_KEY).json()
            resumed = server.post(f"/orchestrations/runs/{paused['run_id']}/resume",
                                  {"response": {"ok": True}}, API_KEY).json()
            unauthorised = server.post("/orchestrations/o-gate/run", {"message": "x"}, "wrong-key")
        assert llm.requests[0].headers["authorization"] == f"Bearer {PROVIDER_KEY}"
    assert (failed.json()["status"], resumed["status"], unauthorised.status_code) == ("failed", "completed", 401)
    assert failed.headers["x-request-id"] == "req-42"
    run_id, error = failed.json()["run_id"], failed.json()["response"]
    logged = events(server.logs())  # every line is a JSON object

    about_run = [e for e in logged if e.get("run_id") == run_id]
    assert [(e["event"], e["level"]) for e in about_run] == [
        ("run started", "info"), ("step retrying", "warning"), ("run failed", "error")]
    started, retry, ended = about_run
    assert started["request_id"] == "req-42" and started["orchestration"] == "o-vendor"
    assert retry["step_id"] == "draft" and "(HTTP 429): slow down" in retry["error"]
    # The vendor echoed the provider key in its message: the log masks it.
    assert {k: ended[k] for k in ("orchestration", "status", "error")} == {
        "orchestration": "o-vendor", "status": "failed", "error": error.replace(PROVIDER_KEY, "********")}
    assert "(HTTP 401)" in error and ended["duration_seconds"] > 0 and ended["cost_usd"] > 0
    assert [e for e in logged if "(HTTP 401)" in json.dumps(e)] == [ended]  # the error, once

    gate_run = paused["run_id"]
    assert [(e["event"], e["status"]) for e in logged if e.get("run_id") == gate_run] == [
        ("run started", "running"), ("run paused", "paused"), ("run resumed", "running"),
        ("run completed", "completed")]
    requests = [e for e in logged if e["event"] == "request"]
    assert {"method": "POST", "path": "/api/v1/orchestrations/o-vendor/run", "status": 200,
            "request_id": "req-42"}.items() <= requests[0].items()
    assert [r["status"] for r in requests if r["path"] == "/api/v1/orchestrations/o-gate/run"] == [200, 401]

    everything = server.output()
    for secret in (API_KEY, PROVIDER_KEY, SESSION_SECRET, "wrong-key"):
        assert secret not in everything, secret
