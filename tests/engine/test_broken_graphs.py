"""A catalogue of broken graph files, one mistake each, and exactly what loading them reports.

Every file (or folder, for mistakes that need two files) under `broken/` is loaded and compiled
the way the server does it; the test compares the complete list of problems, so a missing
problem, an extra one, a vaguer message or a lost step id all fail. Problems are compared as
(code, step id, JSON path, message); a few cases also compare the rendered text with the file
and the hint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from orch.definition.compile import compile_catalog
from orch.errors import Problem
from orch.definition.loader import load_paths

HERE = Path(__file__).parent
BROKEN = HERE / "broken"
TOOLS = frozenset({"web_search"})
MANY_MISTAKES = "many_mistakes.yaml"

Row = tuple[str, str | None, str | None, str]  # code, step id, path, message

ALL_CODES = frozenset({
    "yaml-syntax", "json-syntax", "not-a-definition", "unknown-field", "invalid-field", "missing-field",
    "unknown-step-type", "duplicate-agent", "duplicate-orchestration", "bad-type", "duplicate-step",
    "unknown-entry", "no-steps", "bad-expression", "unknown-step", "unknown-agent", "unknown-orchestration",
    "recursive-orchestration", "invalid-value", "unsupported-in-loop", "bad-transform", "duplicate-field",
    "unregistered-tool", "unreachable-step", "unguarded-cycle", "unconditional-cycle", "loop-with-several-entries",
    "type-mismatch",
    "concurrent-writers", "read-races-writer", "read-before-write", "no-writer", "bad-default",
})  # fmt: skip

UNKNOWN_TYPE = "expected str, int, float, bool, list, dict, any, list[T] or dict[str, T]"
UNREACHABLE = "no path from the entry step reaches this step"


@dataclass(frozen=True)
class Case:
    path: str  # relative to broken/; a folder loads every graph file in it
    errors: list[Row]
    warnings: list[Row] = field(default_factory=list)
    rendered: list[str] | None = None  # str() of every error, for the cases that check the full text


CASES = [
    # -- the file cannot be read as a definition ------------------------------------------------
    Case("yaml_syntax.yaml", [
        ("yaml-syntax", None, None, "line 7, column 4: expected <block end>, but found '<block mapping start>'"),
    ], rendered=[
        "broken/yaml_syntax.yaml: line 7, column 4: expected <block end>, but found '<block mapping start>' [yaml-syntax];"
        " fix the YAML at that position",
    ]),
    Case("json_syntax.json", [
        ("json-syntax", None, None, "line 7, column 3: JSON is malformed: trailing comma in array"),
    ]),
    Case("not_a_definition.yaml", [
        ("not-a-definition", None, "$", "expected a mapping at the top level, got a list"),
    ]),
    # -- fields of the file format --------------------------------------------------------------
    Case("unknown_field_typo.yaml", [
        ("unknown-field", "answer", "$.steps[0].output_kye", "unknown field 'output_kye'"),
    ], rendered=[
        "broken/unknown_field_typo.yaml: $.steps[0].output_kye (step answer): unknown field 'output_kye' [unknown-field];"
        " did you mean 'output_key'?",
    ]),
    Case("wrong_field_type.yaml", [
        ("invalid-field", "show", "$.steps[1].output_key", "expected str, got int"),
    ], rendered=[
        "broken/wrong_field_type.yaml: $.steps[1].output_key (step show): expected str, got int [invalid-field]",
    ]),
    Case("wrong_field_type.json", [
        ("invalid-field", "parse", "$.steps[0].input_keys", "expected array, got str"),
    ]),
    Case("bad_merge_strategy.yaml", [
        ("invalid-field", "combine", "$.steps[2].merge_strategy", "invalid enum value 'join'"),
    ], rendered=[
        "broken/bad_merge_strategy.yaml: $.steps[2].merge_strategy (step combine): invalid enum value 'join' [invalid-field];"
        " one of: list, concat, dict",
    ]),
    Case("bad_reducer.yaml", [
        ("invalid-field", None, "$.state_schema.total.reducer", "invalid enum value 'sum'"),
    ]),
    Case("step_without_id.yaml", [
        ("missing-field", None, "$.steps[1]", "missing required field 'id'"),
    ]),
    Case("step_without_type.yaml", [
        ("missing-field", "greet", "$.steps[0]", "missing required field 'type'"),
    ]),
    Case("orchestration_without_name.yaml", [
        ("missing-field", None, "$", "missing required field 'name'"),
    ]),
    Case("unknown_step_type.yaml", [
        ("unknown-step-type", "review", "$.steps[1].type", "unknown step type 'evalutor'"),
    ], rendered=[
        "broken/unknown_step_type.yaml: $.steps[1].type (step review): unknown step type 'evalutor' [unknown-step-type];"
        " did you mean 'evaluator'?",
    ]),
    # -- ids across files -----------------------------------------------------------------------
    Case("duplicate_agent", [
        ("duplicate-agent", None, "$", "agent 'researcher' is also defined in broken/duplicate_agent/pipeline.yaml"),
    ], rendered=[
        "broken/duplicate_agent/researcher.yaml: $: agent 'researcher' is also defined in"
        " broken/duplicate_agent/pipeline.yaml [duplicate-agent]; agent ids must be unique across all loaded files",
    ]),
    Case("duplicate_orchestration", [
        ("duplicate-orchestration", None, "$",
         "orchestration 'orch-report' is also defined in broken/duplicate_orchestration/report.yaml"),
    ]),
    # -- the orchestration as a whole -----------------------------------------------------------
    Case("bad_state_type.yaml", [
        ("bad-type", None, None, f"state_schema.summary: unknown type 'strng'; {UNKNOWN_TYPE}"),
    ]),
    Case("bad_default.yaml", [
        ("bad-default", None, None, "state_schema.retries: default 'three' does not fit type int"),
    ]),
    Case("duplicate_step.yaml", [
        ("duplicate-step", "draft", None, "step id 'draft' is used more than once"),
    ]),
    Case("unknown_entry.yaml", [
        ("unknown-entry", None, None, "entry_step_id 'strat' is not a step"),
    ], rendered=[
        "broken/unknown_entry.yaml: orch-unknown-entry: entry_step_id 'strat' is not a step [unknown-entry];"
        " did you mean 'start'?",
    ]),
    Case("no_steps.yaml", [
        ("no-steps", None, None, "the orchestration has no steps"),
    ]),
    # -- expressions and code -------------------------------------------------------------------
    Case("bad_expression_syntax.yaml", [
        ("bad-expression", "check", None, "if_condition: invalid syntax at column 13"),
    ]),
    Case("forbidden_dunder.yaml", [
        ("bad-expression", "route", None,
         "switch_expression: attribute '__class__' is not allowed; names starting with '_' are private"),
    ]),
    Case("forbidden_call.yaml", [
        ("bad-expression", "check", None,
         "if_condition: function 'open' is not allowed; allowed: len, int, float, str, bool, list, dict, abs,"
         " min, max, round"),
    ]),
    Case("bad_transform.yaml", [
        ("bad-transform", "clean", None,
         "transform_code: closing parenthesis ']' does not match opening parenthesis '(' (line 2)"),
    ]),
    # -- references to steps, agents and orchestrations -----------------------------------------
    Case("dangling_next_step.yaml", [
        ("unknown-step", "fetch", None, "next_step_id points to 'sumarize', which is not a step"),
    ], warnings=[
        ("unreachable-step", "summarize", None, UNREACHABLE),
    ], rendered=[
        "broken/dangling_next_step.yaml: step fetch: next_step_id points to 'sumarize', which is not a step"
        " [unknown-step]; did you mean 'summarize'?",
    ]),
    Case("dangling_route_target.yaml", [
        ("unknown-step", "review", None, "route_map.approve points to 'publsh', which is not a step"),
    ], warnings=[
        ("unreachable-step", "publish", None, UNREACHABLE),
    ]),
    Case("dangling_if_true.yaml", [
        ("unknown-step", "check", None, "if_true_step_id points to 'aprove', which is not a step"),
    ], warnings=[
        ("unreachable-step", "approve", None, UNREACHABLE),
    ]),
    Case("dangling_switch_case.json", [
        ("unknown-step", "route", None, "switch_cases.fr points to 'frensh', which is not a step"),
    ], warnings=[
        ("unreachable-step", "french", None, UNREACHABLE),
    ]),
    Case("unknown_agent.yaml", [
        ("unknown-agent", "write", None, "agent 'writer' is not defined in any loaded file"),
    ]),
    Case("synapse_bundle_unknown_agent.json", [
        ("unknown-agent", "research", None, "agent 'agent-reseacher' is not defined in any loaded file"),
    ], rendered=[
        "broken/synapse_bundle_unknown_agent.json: step research: agent 'agent-reseacher' is not defined in any"
        " loaded file [unknown-agent]; did you mean 'agent-researcher'?",
    ]),
    Case("unknown_orchestration.yaml", [
        ("unknown-orchestration", "research", None,
         "agent 'deep-researcher' runs orchestration 'orch-deep-research', which is not loaded"),
    ]),
    Case("recursive_orchestration.yaml", [
        ("recursive-orchestration", "recurse", None, "a sub-orchestration step runs its own orchestration"),
    ]),
    Case("unregistered_tool.yaml", [], warnings=[
        ("unregistered-tool", "search", None, "tool 'web_serch' is not registered"),
    ]),
    # -- values and step combinations -----------------------------------------------------------
    Case("negative_timeout.yaml", [
        ("invalid-value", "answer", None, "timeout_seconds must be positive, got -30.0"),
    ]),
    Case("human_in_loop.yaml", [
        ("unsupported-in-loop", "rounds", None, "a human step ('approve') cannot be part of a loop body"),
    ]),
    Case("duplicate_human_field.yaml", [
        ("duplicate-field", "review", None, "human field 'comment' is defined twice"),
    ]),
    # -- required fields per step type ----------------------------------------------------------
    Case("tool_without_forced_tool.yaml", [("missing-field", "search", None, "tool step needs 'forced_tool'")]),
    Case("evaluator_without_route_map.yaml", [("missing-field", "review", None, "evaluator step needs 'route_map'")]),
    Case("merge_without_input_keys.yaml", [("missing-field", "combine", None, "merge step needs 'input_keys'")]),
    Case("transform_without_code.yaml", [("missing-field", "count", None, "transform step needs 'transform_code'")]),
    Case("print_without_content.yaml", [
        ("missing-field", "show", None, "print step needs 'print_content'"),
    ], rendered=[
        "broken/print_without_content.yaml: step show: print step needs 'print_content' [missing-field];"
        " text with {state.key} placeholders",
    ]),
    Case("if_else_without_condition.yaml", [("missing-field", "check", None, "if_else step needs 'if_condition'")]),
    Case("switch_without_expression.yaml", [
        ("missing-field", "route", None, "switch step needs 'switch_expression'"),
    ]),
    Case("loop_without_body.yaml", [("missing-field", "rounds", None, "loop step needs 'loop_step_ids'")]),
    Case("select_without_options.yaml", [
        ("missing-field", "review", None, "select field 'decision' needs 'options'"),
    ]),
    # -- reachability and cycles ----------------------------------------------------------------
    Case("unreachable_step.yaml", [], warnings=[
        ("unreachable-step", "footer", None, UNREACHABLE),
    ]),
    Case("unguarded_cycle.yaml", [
        ("unguarded-cycle", "write", None, "step is on a cycle (write → score → gate) but max_iterations is 0"),
    ]),
    Case("unconditional_cycle.yaml", [], warnings=[
        ("unconditional-cycle", "draft", None, "cycle draft → polish has no router; it always runs until max_iterations"),
    ]),
    Case("loop_with_two_entries.yaml", [], warnings=[
        ("loop-with-several-entries", "check", None, "cycle edit → check can be entered at edit and at check: "
         "which of its steps wait for other branches depends on which way in is met first"),
    ]),
    # -- data flow and types --------------------------------------------------------------------
    Case("if_else_into_int.yaml", [
        ("type-mismatch", "check", None, "writes bool to 'attempts', which state_schema declares int"),
    ]),
    Case("merge_concat_into_dict.yaml", [
        ("type-mismatch", "combine", None, "writes str to 'report', which state_schema declares dict"),
    ]),
    Case("loop_over_str.yaml", [
        ("type-mismatch", "each", None, "loop_over reads 'topic', which state_schema declares str, not a list"),
    ]),
    Case("concurrent_writers.yaml", [
        ("concurrent-writers", "papers", None, "writes 'findings' concurrently with step 'web'"),
    ], rendered=[
        "broken/concurrent_writers.yaml: step papers: writes 'findings' concurrently with step 'web'"
        " [concurrent-writers]; give 'findings' a reducer (append, merge or add) in state_schema, or write"
        " different keys",
    ]),
    Case("read_races_writer.yaml", [], warnings=[
        ("read-races-writer", "critique", None,
         "reads 'draft', which only step 'write' writes, and that step runs concurrently with this one"),
    ]),
    Case("read_before_write.yaml", [
        ("read-before-write", "outline", None,
         "reads 'style_guide', which is written only by step 'style', and that step never runs before this one"),
    ]),
    Case("no_writer.yaml", [
        ("no-writer", "show", None, "reads 'summary', which no step writes and state_schema does not declare"),
    ]),
]  # fmt: skip


def problems_of(path: str) -> list[Problem]:
    """Load and compile broken/<path> as the server does, collecting every problem."""
    catalog = load_paths([f"broken/{path}"])
    problems = list(catalog.problems)
    for result in compile_catalog(catalog, tools=TOOLS).values():
        problems.extend(result.problems)
    return problems


def row(p: Problem) -> Row:
    return (p.code, p.step_id, p.path, p.message)


@pytest.fixture(autouse=True)
def _relative_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    # Problems carry the path as given; loading from here keeps it short and stable.
    monkeypatch.chdir(HERE)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.path)
def test_broken_graph_reports_its_mistake(case: Case) -> None:
    problems = problems_of(case.path)
    errors = [p for p in problems if p.severity == "error"]
    warnings = [p for p in problems if p.severity == "warning"]
    rendered = [str(p) for p in errors] if case.rendered is not None else None
    assert ([row(p) for p in errors], [row(p) for p in warnings], rendered) == (case.errors, case.warnings, case.rendered)


def test_many_mistakes_are_reported_together() -> None:
    errors = [row(p) for p in problems_of(MANY_MISTAKES) if p.severity == "error"]
    assert sorted(errors, key=repr) == sorted([
        ("unknown-field", None, "$.max_total_turn", "unknown field 'max_total_turn'"),
        ("bad-type", None, None, f"state_schema.score: unknown type 'flaot'; {UNKNOWN_TYPE}"),
        ("bad-type", None, None, f"state_schema.tags: unknown type 'lst'; {UNKNOWN_TYPE}"),
        ("unknown-step", "draft", None, "next_step_id points to 'reveiw', which is not a step"),
        ("bad-expression", "review", None, "if_condition: invalid syntax at column 13"),
        ("missing-field", "publish", None, "print step needs 'print_content'"),
        ("invalid-value", "publish", None, "timeout_seconds must be positive, got -1.0"),
        ("missing-field", "search", None, "tool step needs 'forced_tool'"),
        ("no-writer", "draft", None, "reads 'style', which no step writes and state_schema does not declare"),
    ], key=repr)  # fmt: skip


def test_catalogue_lists_every_file() -> None:
    on_disk = {p.name for p in BROKEN.iterdir()} - {MANY_MISTAKES}
    assert sorted(on_disk) == sorted(c.path for c in CASES)


def test_catalogue_covers_every_problem_code() -> None:
    covered = {r[0] for c in CASES for r in (*c.errors, *c.warnings)}
    assert covered == ALL_CODES


def test_every_file_states_its_mistake() -> None:
    unexplained = []
    for path in sorted(BROKEN.rglob("*.*")):
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            # JSON has no comments: the orchestration's description states the mistake.
            explained = '"description": "' in text
        else:
            explained = text.startswith("# ")
        if not explained:
            unexplained.append(path.relative_to(BROKEN).as_posix())
    assert unexplained == []
