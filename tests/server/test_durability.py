"""Runs outlive requests and servers: one winner per gate, restarts, idempotent starts."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx

from orch.settings import Settings
from tests.server.conftest import AUTH, LiveServer
from tests.server.sse_frames import parse, read
from tests.server.flows import FIRST_LEG, SECOND_LEG, slowed

RUN = "/orchestrations/orch-research-report/run"


async def test_fifty_concurrent_resumes_of_one_gate_have_one_winner(aapi: httpx.AsyncClient) -> None:
    run_id = (await aapi.post(RUN, json={"message": "race"})).json()["run_id"]

    async def resume(i: int) -> tuple[int, Any]:
        r = await aapi.post(f"/orchestrations/runs/{run_id}/resume",
                            json={"response": {"decision": "approve", "notes": f"resumer {i}"}})
        return r.status_code, r.json()

    results = await asyncio.gather(*(resume(i) for i in range(50)))
    assert Counter(status for status, _ in results) == {200: 1, 409: 49}
    winner = next(body for status, body in results if status == 200)
    assert winner["status"] == "completed"
    assert all(body["detail"].startswith(f"run '{run_id}' is ") for status, body in results if status == 409)
    final = (await aapi.get(f"/orchestrations/runs/{run_id}")).json()
    assert final["state"]["review"] == winner["shared_state"]["review"]
    assert [h["step_id"] for h in final["step_history"]].count("step-approve") == 1


def test_a_paused_run_survives_a_restart(settings: Settings) -> None:
    first = LiveServer(settings).start()
    try:
        run_id = httpx.post(first.url + "/api/v1" + RUN, headers=AUTH, json={"message": "durable"}).json()["run_id"]
    finally:
        first.stop()
    second = LiveServer(settings).start()
    try:
        with httpx.Client(base_url=second.url + "/api/v1", headers=AUTH, timeout=30) as api:
            assert api.get(f"/orchestrations/runs/{run_id}").json()["status"] == "paused"
            final = api.post(f"/orchestrations/runs/{run_id}/resume",
                             json={"response": {"decision": "approve", "notes": "after restart"}}).json()
            assert final["status"] == "completed"
            assert final["shared_state"]["published"].startswith("Published: durable")
            _, body = read(api, "GET", f"/orchestrations/runs/{run_id}/events")
            assert body.types == FIRST_LEG + SECOND_LEG
            assert body.ids == list(range(1, len(body.ids) + 1))
    finally:
        second.stop()


def test_a_running_run_continues_after_a_restart(settings: Settings) -> None:
    first = LiveServer(settings, executors=slowed(0.5)).start()
    try:
        with httpx.Client(base_url=first.url + "/api/v1", headers=AUTH) as api:
            with api.stream("POST", RUN + "/stream", json={"message": "interrupted"}) as response:
                head = next(response.iter_bytes())
            run_id = head.split(b'"run_id":"')[1].split(b'"')[0].decode()
    finally:
        first.stop()  # mid-step: the run is left running in the database
    second = LiveServer(settings).start()
    try:
        with httpx.Client(base_url=second.url + "/api/v1", headers=AUTH, timeout=30) as api:
            _, body = read(api, "GET", f"/orchestrations/runs/{run_id}/events")
            assert body.types[-2:] == ["human_input_required", "done"]
            assert api.get(f"/orchestrations/runs/{run_id}").json()["status"] == "paused"
    finally:
        second.stop()


async def test_an_idempotency_key_returns_the_same_run(aapi: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "order-1234"}
    first, second = await asyncio.gather(*(aapi.post(RUN, json={"message": "once"}, headers=headers) for _ in range(2)))
    assert first.json()["run_id"] == second.json()["run_id"]
    assert first.json()["status"] == second.json()["status"] == "paused"
    third = await aapi.post(RUN, json={"message": "once"}, headers=headers)
    assert third.json()["run_id"] == first.json()["run_id"]
    other = await aapi.post(RUN, json={"message": "once"}, headers={"Idempotency-Key": "order-1235"})
    assert other.json()["run_id"] != first.json()["run_id"]
    runs = (await aapi.get("/orchestrations/runs", params={"limit": 200})).json()["runs"]
    assert sum(r["message"] == "once" for r in runs) == 2
    # The same key with another request is a client bug: refused, and nothing is started.
    for changed in ({"message": "twice"}, {"message": "once", "state": {"topic": "else"}}):
        reused = await aapi.post(RUN, json=changed, headers=headers)
        assert (reused.status_code, reused.json()["detail"]) == (
            422, f"Idempotency-Key 'order-1234' was first used for a different request (run "
                 f"'{first.json()['run_id']}'); use a new key for a new request")
    runs = (await aapi.get("/orchestrations/runs", params={"limit": 200})).json()["runs"]
    assert (sum(r["message"] == "once" for r in runs), sum(r["message"] == "twice" for r in runs)) == (2, 0)


def test_cancelling_a_running_run_ends_its_stream(settings: Settings) -> None:
    server = LiveServer(settings, executors=slowed(0.5)).start()
    try:
        with httpx.Client(base_url=server.url + "/api/v1", headers=AUTH, timeout=30) as api:
            with api.stream("POST", RUN + "/stream", json={"message": "stop me"}) as response:
                chunks = response.iter_bytes()
                raw = next(chunks)
                run_id = parse(raw[: raw.rfind(b"\n\n") + 2]).events[0]["run_id"]
                cancelled = api.post(f"/orchestrations/runs/{run_id}/cancel").json()
                raw += b"".join(chunks)
            assert (cancelled["status"], cancelled["response"]) == ("cancelled", "Run cancelled")
            body = parse(raw)
            assert body.types[-2:] == ["orchestration_error", "done"]
            assert body.events[-1]["status"] == "cancelled"
            assert body.ids == list(range(1, len(body.ids) + 1))
            assert api.get(f"/orchestrations/runs/{run_id}").json()["status"] == "cancelled"
    finally:
        server.stop()


async def test_a_resume_repeated_with_its_idempotency_key_gets_the_same_outcome(aapi: httpx.AsyncClient) -> None:
    run_id = (await aapi.post(RUN, json={"message": "twice"})).json()["run_id"]
    headers = {"Idempotency-Key": "answer-1"}
    body = {"response": {"decision": "approve"}}
    first, second = await asyncio.gather(*(aapi.post(f"/orchestrations/runs/{run_id}/resume", json=body,
                                                     headers=headers) for _ in range(2)))
    third = await aapi.post(f"/orchestrations/runs/{run_id}/resume", json=body, headers=headers)
    other = await aapi.post(f"/orchestrations/runs/{run_id}/resume", json=body, headers={"Idempotency-Key": "x"})
    changed = await aapi.post(f"/orchestrations/runs/{run_id}/resume", json={"response": {"decision": "reject"}},
                              headers=headers)
    assert [r.status_code for r in (first, second, third, other, changed)] == [200, 200, 200, 409, 422]
    assert first.json()["status"] == second.json()["status"] == third.json()["status"] == "completed"
    assert changed.json()["detail"] == (f"Idempotency-Key 'answer-1' was first used for a different answer to run "
                                        f"'{run_id}'; use a new key for a new request")
