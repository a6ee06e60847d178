"""The documented API, as the seed page shows it: its curl calls and its Python example."""

from __future__ import annotations

import httpx
import requests

from tests.conftest import isolation_missing
from tests.server.conftest import API_KEY, LiveServer

GATE = {
    "step_id": "step-approve",
    "prompt": "Please review the draft article and decide whether to publish.",
    "fields": [
        {"name": "decision", "type": "select", "label": "Decision", "options": "approve,reject"},
        {"name": "notes", "type": "text", "label": "Editor notes"},
    ],
}


def test_the_seed_python_example_runs_unchanged(live: LiveServer) -> None:
    BASE = live.url + "/api/v1"
    HEADERS = {"Authorization": f"Bearer {API_KEY}"}

    resp = requests.post(f"{BASE}/orchestrations/orch-research-report/run", headers=HEADERS,
                         json={"message": "AI orchestration trends 2025"})
    data = resp.json()
    assert resp.status_code == 200 and data["status"] == "paused"
    run_id = data["run_id"]
    gate = data["human_input_required"]
    assert {k: gate[k] for k in GATE} == GATE
    assert gate["agent_context"].startswith("# AI orchestration trends 2025")

    resume_resp = requests.post(f"{BASE}/orchestrations/runs/{run_id}/resume", headers=HEADERS,
                                json={"response": {"decision": "approve", "notes": "Approved via API"}})
    final = resume_resp.json()
    assert resume_resp.status_code == 200
    assert final["status"] == "completed" and final["run_id"] == run_id
    assert final["shared_state"]["article"].startswith("# AI orchestration trends 2025")
    assert final["shared_state"]["review"] == {"decision": "approve", "notes": "Approved via API"}
    assert final["response"].startswith("Published: AI orchestration trends 2025")
    assert [(h["step_id"], h["type"], h["status"]) for h in final["step_history"]] == [
        ("step-research", "agent", "completed"), ("step-write", "agent", "completed"),
        ("step-approve", "human", "completed"), ("step-decide", "if_else", "completed"),
        ("step-publish", "print", "completed"),
    ]
    entry = final["step_history"][0]
    assert entry["step_name"] == "Research" and entry["turns"] >= 1 and entry["cost_usd"] > 0


def test_rejecting_ends_the_run_with_the_draft_in_state(api: httpx.Client) -> None:
    run_id = api.post("/orchestrations/orch-research-report/run", json={"message": "Edge AI"}).json()["run_id"]
    final = api.post(f"/orchestrations/runs/{run_id}/resume", json={"response": {"decision": "reject"}}).json()
    assert final["status"] == "completed"
    assert "published" not in final["shared_state"] and final["shared_state"]["article"]


def test_a_plain_text_response_answers_the_first_field(api: httpx.Client) -> None:
    run_id = api.post("/orchestrations/orch-research-report/run", json={"message": "Edge AI"}).json()["run_id"]
    final = api.post(f"/orchestrations/runs/{run_id}/resume", json={"response": "approve"}).json()
    assert final["status"] == "completed" and final["shared_state"]["review"] == {"decision": "approve"}


def test_list_orchestrations_has_the_seed_shape(api: httpx.Client) -> None:
    listing = api.get("/orchestrations").json()
    assert {"id": "orch-research-report", "name": "Research → Report",
            "description": "Research a topic and generate a report", "steps": 5} in listing
    assert all(set(item) == {"id", "name", "description", "steps"} for item in listing)


def test_get_orchestration_has_every_step(api: httpx.Client) -> None:
    body = api.get("/orchestrations/orch-research-report").json()
    assert body["id"] == "orch-research-report" and body["max_total_cost_usd"] == 0.5
    assert [(s["id"], s["type"]) for s in body["steps"]] == [
        ("step-research", "agent"), ("step-write", "agent"), ("step-approve", "human"),
        ("step-decide", "if_else"), ("step-publish", "print"),
    ]
    assert body["steps"][2]["human_fields"][0] == {
        **GATE["fields"][0], "aliases": {"yes": "approve", "y": "approve", "no": "reject", "n": "reject"}}


def test_the_graph_renders_as_mermaid_and_dot(api: httpx.Client) -> None:
    mermaid = api.get("/orchestrations/orch-research-report/graph")
    assert mermaid.headers["content-type"].startswith("text/plain")
    assert mermaid.text.startswith("flowchart TD") and "s_step_approve" in mermaid.text
    dot = api.get("/orchestrations/orch-research-report/graph", params={"format": "dot"})
    assert dot.text.startswith('digraph "orch-research-report"')


def test_agents(api: httpx.Client) -> None:
    listing = api.get("/agents").json()
    assert {"id": "agent-writer", "name": "Writer", "type": "conversational", "model": None,
            "tools": ["word_count"],
            "description": "Turns notes and research into clear, well-structured prose for a general audience."} in listing
    agent = api.get("/agents/agent-researcher").json()
    assert agent["tools"] == ["current_time", "word_count"] and agent["max_turns"] == 6
    assert api.get("/agents/agent-nobody").json() == {"detail": "agent 'agent-nobody' not found", "code": "not_found"}


def test_run_detail_and_listing(api: httpx.Client) -> None:
    run_id = api.post("/orchestrations/orch-research-report/run", json={"message": "Solar"}).json()["run_id"]
    detail = api.get(f"/orchestrations/runs/{run_id}").json()
    assert detail["status"] == "paused" and detail["orchestration_id"] == "orch-research-report"
    assert detail["human_input_required"]["step_id"] == "step-approve"
    assert detail["state"]["query"] == "Solar"
    assert [h["step_id"] for h in detail["step_history"]] == ["step-research", "step-write"]
    assert detail["finished_at"] is None and detail["total_cost_usd"] > 0
    assert detail["last_event_id"] == len(api.get(f"/orchestrations/runs/{run_id}/events").text.split("\n\n")) - 1
    api.post(f"/orchestrations/runs/{run_id}/resume", json={"response": {"decision": "approve"}})
    detail = api.get(f"/orchestrations/runs/{run_id}").json()
    assert detail["status"] == "completed" and detail["human_input_required"] is None and detail["finished_at"]


def test_runs_are_listed_newest_first_in_pages(api: httpx.Client) -> None:
    started = [api.post("/orchestrations/orch-research-report/run", json={"message": f"t{i}"}).json()["run_id"]
               for i in range(5)]
    api.post("/orchestrations/orch-triage-router/run", json={"message": "refund please"})
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"orchestration_id": "orch-research-report", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = api.get("/orchestrations/runs", params=params).json()
        seen += [r["run_id"] for r in page["runs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen[:5] == started[::-1] and len(seen) == len(set(seen))
    paused = api.get("/orchestrations/runs", params={"status": "paused", "limit": 200}).json()["runs"]
    assert set(started) <= {r["run_id"] for r in paused}
    assert all(r["status"] == "paused" for r in paused)


def test_health_is_open(live: LiveServer) -> None:
    response = httpx.get(live.url + "/api/v1/health")
    assert response.status_code == 200
    transforms = "unisolated" if isolation_missing() else "isolated"
    assert response.json() == {"status": "ok", "graphs": 7, "rejected": 0, "db": "ok", "transforms": transforms}


SEED_EXAMPLE = '''
import requests

BASE = "http://localhost:8000/api/v1"
HEADERS = {"Authorization": "Bearer YOUR_KEY"}

# 1. Start the orchestration
resp = requests.post(
    f"{BASE}/orchestrations/orch-research-report/run",
    headers=HEADERS,
    json={"message": "AI orchestration trends 2025"}
)
data = resp.json()

if data["status"] == "paused":
    run_id = data["run_id"]
    human_prompt = data["human_input_required"]["prompt"]
    print(f"Human approval needed: {human_prompt}")

    # 2. Collect human input (e.g. from your UI)
    decision = input("Approve? (yes/no): ")

    # 3. Resume the orchestration
    resume_resp = requests.post(
        f"{BASE}/orchestrations/runs/{run_id}/resume",
        headers=HEADERS,
        json={"response": {"decision": decision, "notes": "Approved via API"}}
    )
    final = resume_resp.json()
    print(f"Status: {final['status']}")
    print(f"Article: {final['shared_state'].get('article', '')[:200]}...")

elif data["status"] == "completed":
    print(data["response"])
'''


def test_the_seed_script_itself_with_a_person_typing_yes(live: LiveServer, capsys) -> None:
    """The page's example, only pointed at this server and given its key; the person at the
    prompt answers as the prompt asks, "yes"."""
    code = SEED_EXAMPLE.replace("http://localhost:8000", live.url).replace("YOUR_KEY", API_KEY)
    exec(compile(code, "seed_example.py", "exec"), {"input": lambda prompt: "yes", "__name__": "__main__"})
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["Human approval needed: Please review the draft article and decide whether to publish.",
                       "Status: completed"]
    assert out[2] == "Article: # AI orchestration trends 2025"
