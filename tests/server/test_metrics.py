"""/metrics after a fixed workload, served by one process and by several workers (Prometheus
multi-process mode), and who may read it."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import pg_schema_url
from tests.fakes.llm_servers import Delay, Reply, running_fake_llm
from tests.server.serving import GATE_GRAPH, LLM_GRAPH, PRINT_GRAPH, Served, write_graphs

KEY = "metrics-test-key-0123"
AUTH = {"Authorization": f"Bearer {KEY}"}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def workload(server: Served) -> str:
    """4 completed runs, 2 runs paused at a gate (one then resumed), 3 runs with an LLM call;
    the id of a paused run."""
    for i in range(4):
        assert server.post("/orchestrations/o-print/run", {"message": str(i)}, KEY).json()["status"] == "completed"
    paused = [server.post("/orchestrations/o-gate/run", {"message": "x"}, KEY).json()["run_id"] for _ in range(2)]
    resumed = server.post(f"/orchestrations/runs/{paused[0]}/resume", {"response": {"ok": True}}, KEY).json()
    assert resumed["status"] == "completed"
    for _ in range(3):
        assert server.post("/orchestrations/o-llm/run", {"message": "tides"}, KEY).json()["status"] == "completed"
    return paused[1]


def check_counts(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], slow: int = 0) -> None:
    assert value(found, "orch_runs_started_total", orchestration="o-print") == 4
    assert value(found, "orch_runs_finished_total", orchestration="o-print", status="completed") == 4
    assert value(found, "orch_runs_started_total", orchestration="o-gate") == 2
    assert value(found, "orch_run_pauses_total", orchestration="o-gate") == 2
    assert value(found, "orch_runs_continued_total", orchestration="o-gate", how="resumed") == 1
    assert value(found, "orch_runs_finished_total", orchestration="o-gate", status="completed") == 1
    assert value(found, "orch_runs", status="paused") == 1
    assert value(found, "orch_runs", status="completed") == 8 + slow
    assert value(found, "orch_runs_in_progress") == 0
    assert value(found, "orch_step_duration_seconds_count", step_type="print", status="completed") == 5
    assert value(found, "orch_step_duration_seconds_count", step_type="llm", status="completed") == 3 + slow
    assert value(found, "orch_llm_calls_total", provider="offline", model="offline") == 3
    assert value(found, "orch_llm_tokens_total", provider="offline", model="offline", kind="input") > 0
    assert value(found, "orch_checkpoint_commit_seconds_count") >= 9
    assert value(found, "orch_http_requests_total", method="POST", route="/api/v1/orchestrations/{orch_id}/run",
                 status="200") == 9


SLOW_GRAPH = """
id: o-slow
name: Slow
agents:
  - {id: slow, name: Slow, provider: openai, model: gpt-4o-mini, system_prompt: "Take your time."}
steps:
  - {id: wait, type: llm, agent_id: slow, prompt_template: "Think", output_key: text}
"""


def test_metrics_count_a_fixed_workload_and_need_a_key(tmp_path: Path) -> None:
    write_graphs(tmp_path, PRINT_GRAPH, GATE_GRAPH, LLM_GRAPH, SLOW_GRAPH)
    with running_fake_llm() as llm:
        llm.script([Delay(4, Reply(text="slowly", input_tokens=7, output_tokens=3))])
        env = {"ORCH_API_KEYS": KEY, "ORCH_DATABASE_URL": f"sqlite:///{tmp_path}/orch.db",
               "ORCH_OPENAI_BASE_URL": llm.openai_base_url, "ORCH_OPENAI_API_KEY": "sk-fake"}
        with Served(tmp_path, env=env) as server:
            scrape_while_running(server)
            workload(server)
            scrape_after(server)


def scrape_while_running(server: Served) -> None:
    """A run streaming its events while its LLM call waits: one run in progress, one stream."""
    opened = threading.Event()

    def follow() -> None:
        with httpx.stream("POST", f"{server.url}/api/v1/orchestrations/o-slow/run/stream", json={"message": "x"},
                          headers=AUTH, timeout=30) as stream:
            for _ in stream.iter_lines():
                opened.set()

    reader = threading.Thread(target=follow)
    reader.start()
    assert opened.wait(20)
    during = samples(httpx.get(server.url + "/metrics", headers=AUTH).text)
    reader.join(30)
    after = samples(httpx.get(server.url + "/metrics", headers=AUTH).text)
    assert [(value(found, "orch_event_streams_open"), value(found, "orch_runs_in_progress"),
             value(found, "orch_runs", status="running")) for found in (during, after)] == [(1, 1, 1), (0, 0, 0)]
    assert value(after, "orch_llm_tokens_total", provider="openai", model="gpt-4o-mini", kind="output") == 3
    assert value(after, "orch_llm_cost_usd_total", provider="openai", model="gpt-4o-mini") > 0


def scrape_after(server: Served) -> None:
    assert httpx.get(server.url + "/metrics").status_code == 401
    scraped = httpx.get(server.url + "/metrics", headers=AUTH)
    assert scraped.headers["content-type"].startswith("text/plain; version=")
    check_counts(samples(scraped.text), slow=1)


def test_metrics_may_be_opened_to_scrapers_without_a_key(tmp_path: Path) -> None:
    write_graphs(tmp_path, PRINT_GRAPH)
    env = {"ORCH_API_KEYS": KEY, "ORCH_METRICS_PUBLIC": "true", "ORCH_DATABASE_URL": f"sqlite:///{tmp_path}/orch.db"}
    with Served(tmp_path, env=env) as server:
        scraped = httpx.get(server.url + "/metrics")
        assert scraped.status_code == 200 and "orch_runs_started_total" in scraped.text
        assert server.post("/orchestrations/o-print/run", {"message": "x"}).status_code == 401  # the API is not


@pytest.mark.postgres
def test_metrics_add_up_across_workers(tmp_path: Path) -> None:
    url, drop = pg_schema_url()
    write_graphs(tmp_path, PRINT_GRAPH, GATE_GRAPH, LLM_GRAPH)
    shared = tmp_path / "prometheus"
    shared.mkdir()
    (shared / "counter_999999.db").write_bytes(b"left by an earlier server")
    env = {"ORCH_API_KEYS": KEY, "ORCH_DATABASE_URL": url, "PROMETHEUS_MULTIPROC_DIR": str(shared)}
    try:
        with Served(tmp_path, "--workers", "2", env=env) as server:
            workload(server)
            scrapes = [samples(httpx.get(server.url + "/metrics", headers=AUTH).text) for _ in range(6)]
            for found in scrapes:  # whichever worker answers, the sums are the same
                check_counts(found)
            assert len({p.name.split("_")[-1] for p in shared.glob("*.db")}) >= 2  # a file per worker
        assert not (shared / "counter_999999.db").exists()
    finally:
        drop()
