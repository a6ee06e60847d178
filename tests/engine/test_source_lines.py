"""Problems of a graph file point at lines: by JSON path, or by the step they name."""

from __future__ import annotations

from orch.definition.compile import compile_catalog
from orch.definition.loader import Catalog, load_text
from orch.definition.source_lines import SourceLines
from orch.tools import ToolRegistry

YAML = """\
id: lines
name: Lines
steps:
  - id: first
    type: print
    print_content: hi
    outptu_key: x
    next_step_id: second
  - id: second
    type: print
    print_content: "{state.nowhere}"
"""


def problems_with_lines(text: str, file: str) -> list[tuple[str, int | None]]:
    catalog = load_text(text, file, Catalog())
    found = list(catalog.problems)
    for result in compile_catalog(catalog, tools=set(ToolRegistry.with_builtins().names())).values():
        found += result.problems
    lines = SourceLines(text)
    return sorted({(p.code, lines.of_problem(p)) for p in found}, key=str)


def test_yaml_problems_point_at_the_key_or_the_step() -> None:
    assert problems_with_lines(YAML, "lines.yaml") == [("no-writer", 9), ("unknown-field", 7)]


def test_json_bundles_find_the_step_in_its_own_orchestration() -> None:
    text = """{
  "orchestrations": [
    {"id": "one", "name": "One", "steps": [{"id": "s", "type": "print", "print_content": "a"}]},
    {"id": "two", "name": "Two", "steps": [
      {"id": "t", "type": "print", "print_content": "b"},
      {"id": "s", "type": "print", "print_content": "{state.missing}"}
    ]}
  ]
}"""
    assert problems_with_lines(text, "bundle.json") == [("no-writer", 6), ("unreachable-step", 6)]
    assert SourceLines(text).of_path("$.orchestrations[1].steps[0].type") == 5
    assert SourceLines(text).of_path("$.orchestrations[7]") == 2  # as deep as the path goes


def test_text_that_does_not_parse_has_no_lines() -> None:
    assert SourceLines("a: [").of_path("$.a") is None


def test_a_problem_about_a_field_of_a_step_points_at_that_field() -> None:
    text = """\
id: fields
name: Fields
steps:
  - id: judge
    type: evaluator
    route_map:
      good: end
      bad: nowhere
  - {id: end, type: end}
"""
    assert problems_with_lines(text, "fields.yaml") == [("unknown-step", 8)]
