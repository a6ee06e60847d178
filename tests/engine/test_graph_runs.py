"""Every graph in graphs/ runs end to end on the offline model; the research report's whole
result is compared with a golden file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgspec
import pytest

from orch.bootstrap import build_engine
from orch.settings import Settings
from orch.tools import BUILTIN_TOOLS, ToolRegistry
from tests.conftest import isolation_missing

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).with_name("golden") / "research_report.json"
MESSAGES = {
    "orch-research-report": "Synapse AI platform",
    "orch-triage-router": "My invoice was charged twice this month",
    "orch-calculator-tools": "Quote 12 licences at 990 each",
}


def current_time(timezone: str = "UTC") -> str:
    """Current date and time (fixed, so results can be compared)."""
    return "2026-01-15T09:30:00+00:00"


@pytest.fixture
async def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    tools = ToolRegistry([t for t in BUILTIN_TOOLS if t.__name__ != "current_time"] + [current_time])
    monkeypatch.setattr(ToolRegistry, "with_builtins", classmethod(lambda cls: tools))
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'runs.db'}", sandbox_root=str(tmp_path / "sandbox"))
    engine, report = await build_engine(settings, graphs=[ROOT / "graphs"])
    assert not report.rejected and not [p for p in report.problems if p.severity == "error"]
    # The examples' transforms run isolated wherever they can (always in CI), as on a server.
    if isolation_missing() is None or os.environ.get("ORCH_REQUIRE_ISOLATION") == "1":
        assert engine.services.transforms.mode == "isolated"
    yield engine
    await engine.close()


def answer_for(fields: list[dict[str, Any]]) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    for f in fields:
        options = f.get("options")
        if options:
            answers[f["name"]] = (options.split(",") if isinstance(options, str) else options)[0].strip()
        else:
            answers[f["name"]] = {"date": "2026-01-15", "number": "3", "boolean": "yes", "email": "ed@example.com",
                                  "phone": "+44 20 7946 0000"}.get(f["type"], "Looks good.")
    return answers


def stable(result: Any) -> dict[str, Any]:
    return {
        "status": result.status,
        "response": result.response,
        "shared_state": result.shared_state,
        "step_history": [(h.step_id, h.type, h.status, h.turns, h.cost_usd, h.iteration)
                         for h in result.step_history],
    }


async def test_research_report_pauses_resumes_and_matches_the_golden_result(engine: Any) -> None:
    paused = await engine.run("orch-research-report", "Synapse AI platform")
    gate = paused.human_input_required
    assert (paused.status, gate.step_id, gate.prompt, gate.fields) == (
        "paused", "step-approve", "Please review the draft article and decide whether to publish.",
        [{"name": "decision", "type": "select", "label": "Decision", "options": "approve,reject"},
         {"name": "notes", "type": "text", "label": "Editor notes"}],
    )
    assert gate.agent_context == paused.shared_state["article"]
    await engine.resume(paused.run_id, {"decision": "approve", "notes": "Approved via API"})
    done = stable(await engine.wait(paused.run_id))
    if os.environ.get("ORCH_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(msgspec.json.format(msgspec.json.encode(done)).decode() + "\n")
    assert msgspec.json.decode(msgspec.json.encode(done)) == msgspec.json.decode(GOLDEN.read_bytes())


async def test_every_example_graph_runs_to_completion(engine: Any) -> None:
    outcomes = {}
    for oid in sorted(engine.graphs):
        result = await engine.run(oid, MESSAGES.get(oid, "Quarterly market review for electric bikes"))
        gates = 0
        while result.status == "paused" and gates < 5:
            gates += 1
            await engine.resume(result.run_id, answer_for(result.human_input_required.fields))
            result = await engine.wait(result.run_id)
        outcomes[oid] = (result.status, gates)
    assert outcomes == {
        "orch-batch-summaries": ("completed", 0),
        "orch-calculator-tools": ("completed", 0),
        "orch-market-scan": ("completed", 0),
        "orch-nested-report": ("completed", 0),
        "orch-research-report": ("completed", 1),
        "orch-review-loop": ("completed", 1),
        "orch-triage-router": ("completed", 0),
    }
