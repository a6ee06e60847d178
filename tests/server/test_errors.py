"""Error statuses and bodies: every error is {"detail": "...", "code": "..."}; bad input never gets a 500."""

from __future__ import annotations

import httpx
import pytest

RUN = "/orchestrations/orch-research-report/run"


def paused_run(api: httpx.Client) -> str:
    run_id: str = api.post(RUN, json={"message": "x"}).json()["run_id"]
    return run_id


@pytest.mark.parametrize("method, path, detail", [
    ("GET", "/orchestrations/orch-nope", "orchestration 'orch-nope' not found"),
    ("GET", "/orchestrations/orch-nope/graph", "orchestration 'orch-nope' not found"),
    ("POST", "/orchestrations/orch-nope/run", "orchestration 'orch-nope' not found"),
    ("POST", "/orchestrations/orch-nope/run/stream", "orchestration 'orch-nope' not found"),
    ("POST", "/orchestrations/runs/run_nope/resume", "run 'run_nope' not found"),
    ("POST", "/orchestrations/runs/run_nope/resume/stream", "run 'run_nope' not found"),
    ("GET", "/orchestrations/runs/run_nope", "run 'run_nope' not found"),
    ("POST", "/orchestrations/runs/run_nope/cancel", "run 'run_nope' not found"),
    ("GET", "/orchestrations/runs/run_nope/events", "run 'run_nope' not found"),
    ("GET", "/agents/agent-nope", "agent 'agent-nope' not found"),
])
def test_unknown_things_are_404(api: httpx.Client, method: str, path: str, detail: str) -> None:
    body = {"response": {"decision": "approve"}} if "resume" in path else {"message": "x"}
    response = api.request(method, path, json=body if method == "POST" else None)
    assert (response.status_code, response.json()) == (404, {"detail": detail, "code": "not_found"})


def test_resuming_a_run_that_is_not_paused_is_409(api: httpx.Client) -> None:
    run_id = paused_run(api)
    assert api.post(f"/orchestrations/runs/{run_id}/resume", json={"response": "approve"}).status_code == 200
    for path in (f"/orchestrations/runs/{run_id}/resume", f"/orchestrations/runs/{run_id}/resume/stream"):
        response = api.post(path, json={"response": "approve"})
        assert response.status_code == 409
        assert response.json() == {"detail": f"run '{run_id}' is completed, not paused", "code": "not_paused"}


def test_a_bad_gate_answer_is_422_naming_each_field_and_the_run_stays_paused(api: httpx.Client) -> None:
    run_id = paused_run(api)
    response = api.post(f"/orchestrations/runs/{run_id}/resume", json={"response": {"decision": "maybe", "notes": 7}})
    assert response.status_code == 422
    assert response.json() == {
        "detail": "invalid answer: decision: 'maybe' is not one of: approve, reject; notes: expected text, got int",
        "code": "invalid_answer",
        "fields": {"decision": "'maybe' is not one of: approve, reject", "notes": "expected text, got int"},
    }
    assert api.get(f"/orchestrations/runs/{run_id}").json()["status"] == "paused"
    assert api.post(f"/orchestrations/runs/{run_id}/resume/stream", json={"response": {"decision": 1}}).status_code == 422
    assert api.post(f"/orchestrations/runs/{run_id}/resume", json={"response": "approve"}).json()["status"] == "completed"


def test_initial_state_that_does_not_fit_the_schema_is_422(api: httpx.Client) -> None:
    response = api.post(RUN, json={"message": "x", "state": {"query": 5}})
    assert response.status_code == 422
    assert response.json() == {"detail": "state.query: state key 'query' expects str, got int",
                               "code": "invalid_input"}


@pytest.mark.parametrize("content, detail", [
    (b"{not json", "JSON is malformed: object keys must be strings (byte 1)"),
    (b"", "a JSON request body is required"),
    (b"[1, 2]", "request body: Expected `object`, got `array`"),
    (b'{"message": 5}', "request body at $.message: Expected `str`, got `int`"),
    (b'{"message": "x", "state": []}', "request body at $.state: Expected `object | null`, got `array`"),
])
def test_malformed_run_bodies_are_400(api: httpx.Client, content: bytes, detail: str) -> None:
    response = api.post(RUN, content=content, headers={"Content-Type": "application/json"})
    assert (response.status_code, response.json()) == (400, {"detail": detail, "code": "bad_request"})


def test_malformed_resume_bodies_are_400(api: httpx.Client) -> None:
    run_id = paused_run(api)
    for body, detail in [({}, "request body: Object missing required field `response`"),
                         ({"response": 3}, "request body at $.response: Expected `str | object`, got `int`")]:
        response = api.post(f"/orchestrations/runs/{run_id}/resume", json=body)
        assert (response.status_code, response.json()) == (400, {"detail": detail, "code": "bad_request"})


@pytest.mark.parametrize("path, headers, detail", [
    ("/orchestrations/runs?limit=0", {}, "query parameter 'limit': Expected `int` >= 1"),
    ("/orchestrations/runs?limit=x", {}, "query parameter 'limit': Expected `int`, got `str`"),
    ("/orchestrations/runs?status=asleep", {}, "query parameter 'status': Invalid enum value 'asleep'"),
    ("/orchestrations/runs?cursor=bm90IGEgY3Vyc29y", {}, "query parameter 'cursor': is not a cursor this API returned"),
    ("/orchestrations/orch-research-report/graph?format=png", {}, "query parameter 'format': Invalid enum value 'png'"),
    ("/orchestrations/runs/r/events", {"Last-Event-ID": "abc"}, "header 'last-event-id': Expected `int | null`, got `str`"),
    ("/orchestrations/runs/r/events?after=-1", {}, "query parameter 'after': Expected `int` >= 0"),
])
def test_bad_parameters_are_400(api: httpx.Client, path: str, headers: dict[str, str], detail: str) -> None:
    response = api.get(path, headers=headers)
    assert (response.status_code, response.json()) == (400, {"detail": detail, "code": "bad_request"})


def test_unknown_routes_and_methods(api: httpx.Client) -> None:
    assert api.get("/nowhere").json() == {"detail": "Not Found", "code": "not_found"}
    response = api.delete("/orchestrations")
    assert response.status_code == 405 and response.json() == {"detail": "Method Not Allowed", "code": "method_not_allowed"}


def test_cancel(api: httpx.Client) -> None:
    run_id = paused_run(api)
    cancelled = api.post(f"/orchestrations/runs/{run_id}/cancel").json()
    assert (cancelled["status"], cancelled["response"]) == ("cancelled", "Run cancelled")
    again = api.post(f"/orchestrations/runs/{run_id}/cancel")
    assert again.status_code == 409
    assert again.json() == {"detail": f"run '{run_id}' is cancelled; only running or paused runs can be cancelled",
                            "code": "not_paused"}
    assert api.post(f"/orchestrations/runs/{run_id}/resume", json={"response": "approve"}).status_code == 409


def test_validate_reports_every_problem(api: httpx.Client) -> None:
    definition = {
        "id": "orch-posted", "name": "Posted",
        "steps": [
            {"id": "a", "type": "transform", "transform_code": "result = 1", "next_step_id": "b"},
            {"id": "b", "type": "llm", "input_keys": ["nowhere"], "next_step_id": "zz", "promt_template": "hi"},
        ],
    }
    report = api.post("/orchestrations/validate", json=definition).json()
    assert report["valid"] is False
    assert [(p["code"], p["step_id"], p["message"]) for p in report["problems"]] == [
        ("transform-not-allowed", "a", "transform steps are not accepted over HTTP"),
        ("unknown-field", "b", "unknown field 'promt_template'"),
        ("unknown-step", "b", "next_step_id points to 'zz', which is not a step"),
        ("no-writer", "b", "reads 'nowhere', which no step writes and state_schema does not declare"),
    ]
    assert report["problems"][1]["hint"] == "did you mean 'prompt_template'?"
    assert all("file" not in p for p in report["problems"])
    good = {"id": "orch-ok", "name": "OK", "steps": [{"id": "p", "type": "print", "print_content": "hi"}]}
    assert api.post("/orchestrations/validate", json=good).json() == {"valid": True, "problems": []}
    assert api.post("/orchestrations/validate", json=[1]).status_code == 400
