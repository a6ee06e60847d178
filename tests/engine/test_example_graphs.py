"""The example graphs in graphs/: they load as one set, compile cleanly, mirror the documented
research report, and together show every step type and graph shape the engine supports."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any

import pytest

from orch.definition.compile import CompileResult, compile_catalog
from orch.definition.loader import Catalog, load_paths
from orch.definition.spec import STEP_TYPES
from orch.steps.human import field_payload
from orch.tools import ToolRegistry

GRAPHS = Path(__file__).resolve().parents[2] / "graphs"

# Every warning the examples are meant to produce, per orchestration: (code, step id, message).
EXPECTED_WARNINGS: dict[str, list[tuple[str, str | None, str]]] = {
    "orch-batch-summaries": [],
    "orch-calculator-tools": [],
    "orch-market-scan": [],
    "orch-nested-report": [],
    "orch-research-report": [],
    "orch-review-loop": [],
    "orch-triage-router": [],
}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_paths([GRAPHS])


@pytest.fixture(scope="module")
def compiled(catalog: Catalog) -> dict[str, CompileResult]:
    return compile_catalog(catalog, tools=set(ToolRegistry.with_builtins().names()))


def test_directory_loads_without_problems(catalog: Catalog) -> None:
    assert [str(p) for p in catalog.problems] == []
    assert sorted(catalog.orchestrations) == sorted(EXPECTED_WARNINGS)
    # Agents from agents.yaml and from graphs' own `agents:` lists all land in one registry.
    assert {a: Path(la.file).name for a, la in catalog.agents.items()} == {
        "agent-researcher": "agents.yaml",
        "agent-writer": "agents.yaml",
        "agent-market-analyst": "market_scan.yaml",
        "agent-estimator": "calculator_tools.yaml",
        "agent-market-scan": "nested_report.yaml",
    }


def test_every_graph_compiles_with_only_the_expected_warnings(compiled: dict[str, CompileResult]) -> None:
    found = {
        oid: [(p.code, p.step_id, p.message) for p in result.problems]
        for oid, result in compiled.items()
    }
    assert found == EXPECTED_WARNINGS
    assert all(result.graph is not None for result in compiled.values())


def test_research_report_matches_the_documented_listing(catalog: Catalog) -> None:
    orch = catalog.orchestrations["orch-research-report"].spec
    assert {"id": orch.id, "name": orch.name, "description": orch.description, "steps": len(orch.steps)} == {
        "id": "orch-research-report",
        "name": "Research → Report",
        "description": "Research a topic and generate a report",
        "steps": 5,
    }
    assert [(k, f.type) for k, f in orch.state_schema.items()] == [
        ("query", "str"), ("research_results", "str"), ("article", "str"),
    ]
    steps = {s.id: s for s in orch.steps}
    research = steps["step-research"]
    assert (research.type, research.name, research.agent_id, research.output_key) == (
        "agent", "Research", "agent-researcher", "research_results",
    )
    gate = steps["step-approve"]
    assert (gate.type, gate.human_prompt, gate.input_keys, gate.output_key) == (
        "human", "Please review the draft article and decide whether to publish.", ["article"], "review",
    )
    assert [field_payload(f) for f in gate.human_fields] == [
        {"name": "decision", "type": "select", "label": "Decision", "options": "approve,reject"},
        {"name": "notes", "type": "text", "label": "Editor notes"},
    ]
    assert [s.type for s in orch.steps] == ["agent", "agent", "human", "if_else", "print"]
    branch = steps[gate.next_step_id]  # type: ignore[index]
    assert (branch.if_condition, branch.if_true_step_id, branch.if_false_step_id) == (
        "state.review.decision == 'approve'", "step-publish", None,
    )


def test_examples_together_use_every_step_type(catalog: Catalog) -> None:
    used = {s.type for lo in catalog.orchestrations.values() for s in lo.spec.steps}
    assert used == set(STEP_TYPES)
    assert len(used) == 14


def test_examples_show_every_graph_shape(catalog: Catalog, compiled: dict[str, CompileResult]) -> None:
    def graph(oid: str) -> Any:
        g = compiled[oid].graph
        assert g is not None
        return g

    market = graph("orch-market-scan")
    scan = market.steps["step-scan"].fanout
    assert (scan.branches, scan.join, scan.parallel) == (
        (("step-news",), ("step-competitors",), ("step-trends",)), "step-merge", True,
    )
    assert market.steps["step-merge"].spec.merge_strategy == "concat"
    assert [(e.source, e.target, e.kind) for e in market.edges if e.back] == [
        ("step-decide", "step-scan", "route:needs_more_data"),
    ]
    assert market.cycles == (
        ("step-scan", "step-news", "step-merge", "step-decide", "step-competitors", "step-trends"),
    )
    assert {market.steps[s].spec.max_iterations for s in market.cycles[0]} == {2}

    review = graph("orch-review-loop")
    assert [(e.source, e.target, e.kind) for e in review.edges if e.back] == [
        ("step-verdict", "step-write", "route:revise"),
    ]
    assert {review.steps[s].spec.max_iterations for s in review.cycles[0]} == {2}

    nested = graph("orch-nested-report")
    scope = nested.steps["step-scope"].fanout
    assert (scope.branches, scope.join, scope.parallel) == (
        (("step-market-scan",), ("step-background",)), "step-briefing", False,
    )
    assert nested.schema.keys["notes"].reducer == "append"
    sub = nested.agents["agent-market-scan"]
    assert (sub.type, sub.orchestration_id) == ("orchestrator", "orch-market-scan")
    assert sub.orchestration_id in catalog.orchestrations

    loop = graph("orch-batch-summaries").steps["step-summarise-each"].spec
    assert (loop.loop_over, loop.item_key, loop.max_concurrency, loop.loop_step_ids) == (
        "sections", "section", 4, ["step-summarise", "step-parse"],
    )

    tools = graph("orch-calculator-tools").steps
    assert (tools["step-total"].spec.forced_tool, tools["step-total"].spec.tool_args) == (
        "calculator", {"expression": "{state.expr}"},
    )
    assert (tools["step-timestamp"].spec.forced_tool, tools["step-timestamp"].spec.tool_args) == ("current_time", None)
    registered = set(ToolRegistry.with_builtins().names())
    for lo in catalog.orchestrations.values():
        assert {s.forced_tool for s in lo.spec.steps if s.type == "tool"} <= registered
    for la in catalog.agents.values():
        assert set(la.spec.tool_names or ()) <= registered


@pytest.mark.skipif(importlib.util.find_spec("orch.definition.render") is None, reason="engine.render is not written yet")
def test_every_graph_renders_as_mermaid(compiled: dict[str, CompileResult]) -> None:
    mermaid = importlib.import_module("orch.definition.render").mermaid
    for oid, result in compiled.items():
        assert result.graph is not None
        text = mermaid(result.graph)
        assert text.startswith("flowchart"), oid
        missing = [s.spec.label for s in result.graph.steps.values() if s.spec.label not in text]
        assert missing == [], oid
