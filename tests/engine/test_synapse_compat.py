"""Synapse export bundles load as-is and compile: both packs of the shared compat set, loaded
together so that agents defined in one pack serve orchestrations in the other."""

from __future__ import annotations

from pathlib import Path

import pytest

from orch.definition.compile import CompileResult, compile_catalog
from orch.definition.loader import Catalog, load_paths
from orch.steps.human import field_payload
from orch.tools import ToolRegistry

SYNAPSE = Path(__file__).resolve().parents[3] / "shared" / "compat" / "synapse"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_paths([SYNAPSE])


@pytest.fixture(scope="module")
def compiled(catalog: Catalog) -> dict[str, CompileResult]:
    return compile_catalog(catalog, tools=set(ToolRegistry.with_builtins().names()))


def test_both_bundles_load_every_orchestration_and_agent(catalog: Catalog) -> None:
    assert [str(p) for p in catalog.problems] == []
    assert sorted(Path(f).name for f in catalog.files) == ["productivity_pack.bundle.json", "starter_pack.bundle.json"]
    assert sorted(catalog.orchestrations) == ["orch_content_pipeline", "orch_market_intelligence", "orch_mm0hine"]
    assert sorted(catalog.agents) == [
        "agent_1775669514774", "agent_1775670369694", "agent_1775843361761", "agent_1775900508434",
        "agent_content_writer", "agent_data_analyst", "agent_jira_analyst", "agent_slack_notifier",
        "agent_web_researcher",
    ]


def test_every_orchestration_compiles_with_only_the_expected_warnings(compiled: dict[str, CompileResult]) -> None:
    found = {
        oid: [(p.severity, p.code, p.step_id) for p in result.problems]
        for oid, result in compiled.items()
    }
    assert found == {
        "orch_market_intelligence": [
            ("warning", "unregistered-tool", "step_news_research"),
            ("warning", "unregistered-tool", "step_competitor_research"),
            ("warning", "unregistered-tool", "step_trends_research"),
            ("warning", "unregistered-tool", "step_data_analysis"),
            ("warning", "unregistered-tool", "step_generate_report"),
        ],
        "orch_mm0hine": [
            ("warning", "unregistered-tool", "step_yu9qldc"),
            ("warning", "unregistered-tool", "step_8pkksdx"),
        ],
        "orch_content_pipeline": [
            ("warning", "unregistered-tool", "step_research"),
            ("warning", "unregistered-tool", "step_write_draft"),
            ("warning", "unregistered-tool", "step_find_examples"),
            ("warning", "unregistered-tool", "step_revise"),
            ("warning", "unregistered-tool", "step_ilo9fz3"),
            ("warning", "read-races-writer", "step_find_examples"),
        ],
    }
    assert all(result.graph is not None for result in compiled.values())


def test_warning_texts_name_the_tools_and_the_racing_step(compiled: dict[str, CompileResult]) -> None:
    by_step = {(p.code, p.step_id): p for p in compiled["orch_content_pipeline"].problems}
    write = by_step[("unregistered-tool", "step_write_draft")]
    assert (write.message, write.hint) == (
        "agent 'agent_1775670369694' uses tools that are not registered: edit_file",
        "the model will not see them until they are registered",
    )
    race = by_step[("read-races-writer", "step_find_examples")]
    assert (race.message, race.hint) == (
        "reads 'article_draft', which only step 'step_write_draft' writes, and that step runs concurrently "
        "with this one",
        "the value may not be there yet; move the read after the join",
    )


def test_evaluator_loop_backs_are_cycles(compiled: dict[str, CompileResult]) -> None:
    shapes = {}
    for oid, result in compiled.items():
        graph = result.graph
        assert graph is not None
        shapes[oid] = (
            set(graph.cycles),
            {(e.source, e.target, e.kind) for e in graph.edges if e.back},
        )
        # Every cycle is closed through a router, so none is an unconditional loop.
        for cycle in graph.cycles:
            assert any(graph.steps[s].type == "evaluator" for s in cycle), (oid, cycle)
    assert shapes == {
        "orch_market_intelligence": (
            {("step_gather_parallel", "step_news_research", "step_merge_intelligence", "step_data_analysis",
              "step_go_nogo_eval", "step_competitor_research", "step_trends_research")},
            {("step_go_nogo_eval", "step_gather_parallel", "route:needs_more_data")},
        ),
        "orch_mm0hine": (
            {("step_yu9qldc", "step_923523w")},
            {("step_923523w", "step_yu9qldc", "route:need_more_data")},
        ),
        "orch_content_pipeline": (
            {("step_final_review", "step_revise"), ("step_research", "step_eval_research", "step_human_clarify")},
            {("step_revise", "step_final_review", "next"), ("step_human_clarify", "step_research", "next")},
        ),
    }


def test_human_fields_with_key_and_textarea_parse(catalog: Catalog) -> None:
    steps = {s.id: s for s in catalog.orchestrations["orch_content_pipeline"].spec.steps}
    gate = steps["step_human_clarify"]
    (field,) = gate.human_fields
    assert (field.key, field.name, field.field_name, field.type) == (
        "user_topic_refined", None, "user_topic_refined", "textarea",
    )
    assert field_payload(field) == {
        "name": "user_topic_refined", "type": "textarea", "label": "Refined Topic / Additional Context",
    }
