"""The console over plain HTTP: sign-in and the session cookie, CSRF, CORS, the forms and what
the pages say. The browser tests (test_console_browser.py) drive the same pages in Chromium."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

import httpx
import pytest

from orch.settings import Settings
from orch.server.app import create_app
from orch.server.cors import BadCorsOrigin
from orch.server.sessions import SessionSecretTooShort
from tests.server.conftest import API_KEY, AUTH, LiveServer, make_settings
from tests.server.console import ConsoleUser, console_graphs, csrf

RESEARCH = "orch-research-report"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    directory = tmp_path_factory.mktemp("console")
    settings = make_settings(directory)
    settings.graphs_dir = str(console_graphs(directory / "graphs"))
    live = LiveServer(settings, sse_ping_seconds=0.3).start()
    yield live
    live.stop()


@pytest.fixture
def user(server: LiveServer) -> Iterator[ConsoleUser]:
    person = ConsoleUser(server.url)
    yield person
    person.close()


@pytest.fixture
def signed_in(user: ConsoleUser) -> ConsoleUser:
    assert user.sign_in().status_code == 303
    return user


def paused_run(server: LiveServer, message: str = "console") -> str:
    body = httpx.post(f"{server.url}/api/v1/orchestrations/{RESEARCH}/run", headers=AUTH, json={"message": message},
                      timeout=30).json()
    assert body["status"] == "paused"
    return str(body["run_id"])


def test_pages_ask_to_sign_in_and_an_api_key_signs_in(user: ConsoleUser) -> None:
    page = user.get("/ui/runs?status=paused")
    assert (page.status_code, page.headers["location"]) == (303, "/ui/sign-in?next=%2Fui%2Fruns%3Fstatus%3Dpaused")
    wrong = user.submit("/ui/sign-in", "/ui/sign-in", {"api_key": "not-a-key", "next": "/ui/runs"})
    assert wrong.status_code == 401 and "That API key is not valid." in wrong.text
    ok = user.submit("/ui/sign-in", "/ui/sign-in", {"api_key": API_KEY, "next": "/ui/runs"})
    assert (ok.status_code, ok.headers["location"]) == (303, "/ui/runs")
    cookie = ok.headers["set-cookie"]
    assert cookie.startswith("orch_session=") and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Path=/;" in cookie and API_KEY not in cookie
    assert user.get("/ui/runs").status_code == 200
    # Only paths of this console are followed after signing in.
    elsewhere = user.submit("/ui", "/ui/sign-in", {"api_key": API_KEY, "next": "https://evil.example/ui"})
    assert elsewhere.headers["location"] == "/ui"


def test_the_session_reads_the_api_but_changes_nothing(server: LiveServer, signed_in: ConsoleUser) -> None:
    run_id = paused_run(server)
    events = signed_in.get(f"/api/v1/orchestrations/runs/{run_id}/events")
    assert events.status_code == 200 and events.headers["content-type"].startswith("text/event-stream")
    assert [line for line in events.text.splitlines() if line.startswith("id: ")][-1] == "id: 13"
    assert signed_in.get("/api/v1/orchestrations/runs", params={"status": "paused"}).status_code == 200
    refused = signed_in.http.post(f"/api/v1/orchestrations/runs/{run_id}/cancel")
    assert (refused.status_code, refused.json()["detail"]) == (
        401, "missing API key: send the header 'Authorization: Bearer <key>'")
    # A Bearer key works as before, and a bad one is still refused even with a session cookie.
    assert signed_in.get(f"/api/v1/orchestrations/runs/{run_id}", headers=AUTH).status_code == 200
    bad = signed_in.get(f"/api/v1/orchestrations/runs/{run_id}", headers={"Authorization": "Bearer nope"})
    assert (bad.status_code, bad.json()["detail"]) == (401, "invalid API key")


def test_signing_out_ends_the_session(server: LiveServer, signed_in: ConsoleUser) -> None:
    cookie = signed_in.http.cookies["orch_session"]
    out = signed_in.submit("/ui", "/ui/sign-out", {})
    assert (out.status_code, out.headers["location"]) == (303, "/ui/sign-in")
    assert "orch_session" not in signed_in.http.cookies
    with httpx.Client(base_url=server.url, cookies={"orch_session": cookie}) as stolen:
        assert stolen.get("/ui").status_code == 303
        assert stolen.get("/api/v1/orchestrations/runs").status_code == 401


def test_forms_need_the_page_csrf_token(signed_in: ConsoleUser) -> None:
    forged = signed_in.http.post(f"/ui/orchestrations/{RESEARCH}/runs", data={"message": "from elsewhere"})
    assert forged.status_code == 403 and "This form has expired" in forged.text
    guessed = signed_in.http.post(f"/ui/orchestrations/{RESEARCH}/runs",
                                  data={"message": "x", "_csrf_token": "0" * 128})
    assert guessed.status_code == 403


def test_local_mode_has_nothing_to_sign_in_to(settings: Settings) -> None:
    server = LiveServer(settings, api_keys=[], allow_unauthenticated=True).start()
    try:
        with httpx.Client(base_url=server.url) as http:
            page = http.get("/ui")
            assert page.status_code == 200 and "local mode" in page.text and "Sign out" not in page.text
            assert http.get("/ui/sign-in").headers["location"] == "/ui"
            assert http.get("/").headers["location"] == "/ui"
    finally:
        server.stop()


def test_the_start_form_types_initial_state_and_names_bad_fields(signed_in: ConsoleUser, server: LiveServer) -> None:
    page = "/ui/orchestrations/orch-typed-inputs"
    form = signed_in.get(page).text
    for name, kind in [("count", "int"), ("ratio", "float"), ("loud", "bool"), ("tags", "list[str]")]:
        assert f'<label for="f-state_{name}">{name} ({kind})</label>' in form
    bad = signed_in.submit(page, f"{page}/runs", {"message": "m", "state.count": "two", "state.tags": "[1,"})
    assert bad.status_code == 422
    assert '<p class="error" id="f-state_count-error">&#39;two&#39; is not a whole number</p>' in bad.text
    assert 'id="f-state_tags-error">is not JSON: Input data was truncated</p>' in bad.text
    assert ('value="two" step="1" aria-describedby="f-state_count-hint f-state_count-error" aria-invalid="true"'
            in bad.text)
    wrong_type = signed_in.submit(page, f"{page}/runs", {"state.tags": '["a", 2]'})
    assert wrong_type.status_code == 422 and "state.tags: state key &#39;tags&#39; expects list[str]" in wrong_type.text
    ok = signed_in.submit(page, f"{page}/runs", {"message": "hello", "state.count": "3", "state.ratio": "0.5",
                                                 "state.loud": "true", "state.tags": '["a"]'})
    assert ok.status_code == 303
    run_id = ok.headers["location"].rsplit("/", 1)[1]
    state = httpx.get(f"{server.url}/api/v1/orchestrations/runs/{run_id}", headers=AUTH).json()["state"]
    assert {k: state[k] for k in ("topic", "count", "ratio", "loud", "tags", "shown")} == {
        "topic": "hello", "count": 3, "ratio": 0.5, "loud": True, "tags": ["a"], "shown": "hello x3"}


def test_a_gate_answered_by_someone_else_says_so(server: LiveServer, signed_in: ConsoleUser) -> None:
    run_id = paused_run(server, "answered twice")
    inbox = signed_in.get(f"/ui/gates?run={run_id}").text
    assert "Please review the draft article and decide whether to publish." in inbox
    token = csrf(inbox)
    answered = httpx.post(f"{server.url}/api/v1/orchestrations/runs/{run_id}/resume", headers=AUTH,
                          json={"response": {"decision": "reject"}}, timeout=30)
    assert answered.json()["status"] == "completed"
    late = signed_in.http.post(f"/ui/gates/{run_id}", data={"step_id": "step-approve", "answer.decision": "approve",
                                                            "_csrf_token": token})
    assert late.status_code == 409
    assert (f"This gate of run {run_id} was already answered by someone else; the run is completed now."
            in late.text)


def test_a_refused_answer_comes_back_with_the_error_by_its_field(server: LiveServer, signed_in: ConsoleUser) -> None:
    run_id = paused_run(server, "bad answer")
    refused = signed_in.submit(f"/ui/gates?run={run_id}", f"/ui/gates/{run_id}",
                               {"step_id": "step-approve", "answer.decision": "maybe", "answer.notes": "hm"})
    assert refused.status_code == 422
    assert ('<p class="error" id="g0-answer_decision-error">&#39;maybe&#39; is not one of: approve, reject</p>'
            in refused.text)
    assert 'name="answer.notes" type="text" value="hm"' in refused.text  # what was typed stays
    ok = signed_in.submit(f"/ui/gates?run={run_id}", f"/ui/gates/{run_id}",
                          {"step_id": "step-approve", "answer.decision": "approve"})
    assert (ok.status_code, ok.headers["location"]) == (303, f"/ui/runs/{run_id}?notice=answered")


def test_the_orchestrations_page_lists_graphs_and_the_file_left_out(signed_in: ConsoleUser) -> None:
    page = signed_in.get("/ui").text
    assert page.count('<li class="card"') == 9  # the 7 examples, TYPED and JOIN
    assert 'data-orchestration="orch-research-report"' in page
    left = page[page.index('id="left-out"'):]
    assert "orch-dangling-next in" in left and "dangling_next_step.yaml" in left
    assert re.search(r'<span class="where">line 9</span>\s*<span class="where">step <code>fetch</code></span>', left)
    assert "next_step_id points to &#39;sumarize&#39;, which is not a step" in left
    assert "did you mean &#39;summarize&#39;?" in left


def test_validate_lists_problems_with_lines_and_draws_a_graph_that_compiles(signed_in: ConsoleUser) -> None:
    broken = (Path(__file__).parents[1] / "engine" / "broken" / "dangling_next_step.yaml").read_bytes()
    token = csrf(signed_in.get("/ui/validate").text)
    checked = signed_in.http.post("/ui/validate", data={"_csrf_token": token, "definition": ""},
                                  files={"file": ("mine.yaml", broken, "application/yaml")})
    assert checked.status_code == 200
    assert "mine.yaml: 1 error" in checked.text and "does not compile" in checked.text
    assert re.search(r'<span class="where">line 9</span>\s*<span class="where">step <code>fetch</code></span>',
                     checked.text)
    assert "<svg" not in checked.text
    good = signed_in.submit("/ui/validate", "/ui/validate", {"definition": (Path(__file__).parents[2] / "graphs" /
                                                                            "research_report.yaml").read_text()})
    assert "pasted.yaml: no errors" in good.text and "compiles" in good.text
    assert good.text.count('class="step ') == 5
    empty = signed_in.submit("/ui/validate", "/ui/validate", {"definition": "  "})
    assert empty.status_code == 422 and "Paste a graph file or choose one to upload." in empty.text


def test_the_run_page_shows_history_state_cost_and_statuses(server: LiveServer, signed_in: ConsoleUser) -> None:
    run_id = paused_run(server, "statuses")
    page = signed_in.get(f"/ui/runs/{run_id}").text
    assert 'class="step step-human status-waiting-person" data-step="step-approve"' in page
    assert 'class="step step-agent status-completed" data-step="step-research"' in page
    assert 'class="step step-print status-pending" data-step="step-publish"' in page
    assert "Waiting for a person at <code>step-approve</code>" in page
    assert " of $0.50 allowed" in page and "Cancel run" in page
    part = signed_in.get(f"/ui/runs/{run_id}/part", headers={"X-Console-Part": "1"})
    statuses = re.search(r'<div id="run-summary">\s*<script type="application/json" id="step-statuses">(.*?)</script>',
                         part.text)
    assert statuses and json.loads(statuses.group(1)) == {
        "step-research": "completed", "step-write": "completed", "step-approve": "waiting-person"}
    anonymous = httpx.get(f"{server.url}/ui/runs/{run_id}/part", headers={"X-Console-Part": "1"})
    assert (anonymous.status_code, anonymous.text) == (401, "signed out")


def test_a_step_waiting_where_branches_meet_shows_so(server: LiveServer, signed_in: ConsoleUser) -> None:
    body = httpx.post(f"{server.url}/api/v1/orchestrations/orch-join-wait/run", headers=AUTH, json={},
                      timeout=30).json()
    assert body["status"] == "paused"
    page = signed_in.get(f"/ui/runs/{body['run_id']}").text
    assert 'class="step step-print status-waiting-join" data-step="meet"' in page
    assert 'class="step step-human status-waiting-person" data-step="ask"' in page
    assert 'class="step step-print status-completed" data-step="quick"' in page


def test_cancel_from_the_run_page(server: LiveServer, signed_in: ConsoleUser) -> None:
    run_id = paused_run(server, "to cancel")
    done = signed_in.submit(f"/ui/runs/{run_id}", f"/ui/runs/{run_id}/cancel", {})
    assert done.headers["location"] == f"/ui/runs/{run_id}?notice=cancelled"
    assert '<span class="badge big status-cancelled" id="run-status">cancelled</span>' in signed_in.get(
        done.headers["location"]).text
    again = signed_in.submit(f"/ui/runs/{run_id}", f"/ui/runs/{run_id}/cancel", {})
    assert again.headers["location"] == f"/ui/runs/{run_id}?notice=not-cancelled"


def test_the_run_list_filters_and_pages(server: LiveServer, signed_in: ConsoleUser) -> None:
    mine = [paused_run(server, f"page {i}") for i in range(3)]
    listed = signed_in.get("/ui/runs", params={"status": "paused", "orchestration": RESEARCH, "since": "1h"}).text
    assert all(run_id in listed for run_id in mine)
    assert 'data-live="3000"' in listed and "status-completed" not in listed.split("<tbody")[1]
    rows = signed_in.get("/ui/runs", params={"status": "failed"}, headers={"X-Console-Part": "1"}).text
    assert rows.strip() == '<tr><td colspan="6">No runs match these filters.</td></tr>'
    # Paging: 25 a page, then the rest; nothing twice, nothing left out.
    for i in range(25):
        paused_run(server, f"more {i}")
    first = signed_in.get("/ui/runs", params={"orchestration": RESEARCH}).text
    older = re.search(r'href="(/ui/runs\?[^"]+)" rel="next"', first)
    assert older
    second = signed_in.get(older.group(1).replace("&amp;", "&")).text
    ids = re.findall(r'<tr data-run="([^"]+)">', first) + re.findall(r'<tr data-run="([^"]+)">', second)
    assert len(ids) == len(set(ids)) and len(re.findall(r'<tr data-run="', first)) == 25
    assert set(mine) <= set(ids)


def test_no_page_or_asset_refers_to_another_host(server: LiveServer, signed_in: ConsoleUser) -> None:
    run_id = paused_run(server, "hosts")
    pages = ["/ui", f"/ui/orchestrations/{RESEARCH}", "/ui/runs", f"/ui/runs/{run_id}", "/ui/gates",
             "/ui/validate", "/ui/sign-in", "/schema", "/schema/swagger"]
    seen: list[str] = []
    for path in pages:
        page = signed_in.get(path) if path != "/ui/sign-in" else httpx.get(server.url + path)
        assert page.status_code == 200, path
        refs = re.findall(r'(?:src|href|action)\s*=\s*["\']([^"\']+)', page.text)
        refs += re.findall(r'url\(\s*["\']?([^"\')]+)', page.text)
        for ref in refs:
            if ref.startswith(("http://www.w3.org/2000/svg",)):
                continue
            seen.append(ref)
            assert not urlparse(ref).netloc or urlparse(ref).netloc == urlparse(server.url).netloc, (path, ref)
    assets = {r.split("?")[0] for r in seen if r.endswith((".css", ".js")) or ".css?" in r or ".js?" in r}
    assert assets >= {"/ui/static/console.css", "/ui/static/console.js", "/schema/assets/swagger-ui-bundle.js",
                      "/schema/assets/swagger-ui.css", "/schema/assets/swagger-ui-standalone-preset.js"}
    for asset in assets:
        body = signed_in.get(asset)
        assert body.status_code == 200, asset
        if asset.endswith(".css"):
            assert not re.search(r'url\(\s*["\']?(https?:)?//', body.text), asset


def test_the_openapi_document_describes_the_events_of_each_stream(server: LiveServer) -> None:
    doc = httpx.get(f"{server.url}/schema/openapi.json").json()
    for path, method in [("/api/v1/orchestrations/runs/{run_id}/events", "get"),
                         ("/api/v1/orchestrations/{orch_id}/run/stream", "post"),
                         ("/api/v1/orchestrations/runs/{run_id}/resume/stream", "post")]:
        frame = doc["paths"][path][method]["responses"]["200"]["content"]["text/event-stream"]["schema"]
        data = frame["properties"]["data"]
        assert (frame["required"], data["contentMediaType"]) == (["id", "data"], "application/json")
        stream = data["contentSchema"]
        assert {ref["$ref"].rsplit("/", 1)[1] for ref in stream["oneOf"]} == {
            "RunStart", "StepStart", "StepComplete", "StepError", "AgentTurn", "ToolExecution", "ToolResult",
            "RoutingDecision", "LoopLimitReached", "HumanInputRequired", "OrchestrationComplete",
            "OrchestrationError", "Done"}
    assert doc["components"]["schemas"]["StepStart"]["properties"]["type"] == {"type": "string", "const": "step_start"}
    assert not [p for p in doc["paths"] if p.startswith(("/ui", "/schema"))]


def test_cors_answers_only_the_origins_listed(settings: Settings) -> None:
    settings.cors_origins = ["https://app.example.com"]
    server = LiveServer(settings).start()
    try:
        asked = {"Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}
        ok = httpx.options(f"{server.url}/api/v1/orchestrations", headers={"Origin": "https://app.example.com", **asked})
        assert ok.status_code == 204 and ok.headers["access-control-allow-origin"] == "https://app.example.com"
        assert "access-control-allow-credentials" not in ok.headers
        other = httpx.options(f"{server.url}/api/v1/orchestrations", headers={"Origin": "https://evil.example", **asked})
        assert "access-control-allow-origin" not in other.headers
        listed = httpx.get(f"{server.url}/api/v1/orchestrations", headers={"Origin": "https://app.example.com", **AUTH})
        assert listed.headers["access-control-allow-origin"] == "https://app.example.com"
    finally:
        server.stop()
    plain = LiveServer(make_settings(Path(settings.sandbox_root).parent / "plain")).start()
    try:
        answer = httpx.get(f"{plain.url}/api/v1/orchestrations", headers={"Origin": "https://app.example.com", **AUTH})
        assert answer.status_code == 200 and "access-control-allow-origin" not in answer.headers
    finally:
        plain.stop()


def test_bad_browser_settings_are_refused_with_what_to_write(settings: Settings) -> None:
    settings.cors_origins = ["app.example.com"]
    with pytest.raises(BadCorsOrigin, match=re.escape(
            "ORCH_CORS_ORIGINS: 'app.example.com' is not an origin; write scheme://host[:port] with no path, "
            "e.g. https://app.example.com")):
        create_app(settings, api_keys=[API_KEY])
    settings.cors_origins = []
    settings.session_secret = "short"
    with pytest.raises(SessionSecretTooShort, match=re.escape(
            "ORCH_SESSION_SECRET must be at least 16 characters long (it has 5)")):
        create_app(settings, api_keys=[API_KEY])
    assert Settings.from_env({"ORCH_CORS_ORIGINS": "https://a.example, http://b.example:8080"}).cors_origins == [
        "https://a.example", "http://b.example:8080"]


def test_a_session_outlives_nothing_it_should_not(server: LiveServer) -> None:
    """A forged or expired cookie is no session."""
    signer = server.app.state.sessions
    from orch.server.auth import hash_key

    expired = signer.issue(hash_key(API_KEY), now=time.time() - 13 * 3600)
    unknown_key = signer.issue(hash_key("a-key-nobody-has-0000"))
    valid = signer.issue(hash_key(API_KEY))
    tampered = valid[:-2] + ("AA" if not valid.endswith("AA") else "BB")
    for token in (expired, unknown_key, tampered):
        with httpx.Client(base_url=server.url, cookies={"orch_session": token}) as http:
            assert http.get("/ui").status_code == 303
    with httpx.Client(base_url=server.url, cookies={"orch_session": valid}) as http:
        assert http.get("/ui").status_code == 200
