"""Step kinds: each kind's routes as a table, the table of kinds as the one place step types are
named, sub-orchestrations decided when compiling, and a new step kind defined in this file alone
(a Struct, an executor, a `StepKind` and a table entry) compiled, checked and run end to end."""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Container, Iterator, Mapping

import pytest

from orch.definition.compile import compile_catalog, compile_definition
from orch.definition.expressions import Expression
from orch.definition.loader import Catalog, load_text
from orch.definition.spec import (
    Agent, AgentStep, EndStep, EvaluatorStep, HumanStep, IfElseStep, LlmStep, Orchestration, ParallelStep, StepBase,
    SwitchStep,
)
from orch.definition.state import TypeSpec
from orch.errors import DefinitionError
from orch.run import scheduler
from orch.steps import spec_types, standard_kinds
from orch.steps.base import FieldReport, Link, StepContext, StepKind, StepResult

ENGINE = Path(__file__).resolve().parents[2] / "engine"
STANDARD = standard_kinds()


# -- routes, one row per case, no database ----------------------------------------------------


@dataclass(frozen=True)
class View:
    """A compiled step as routing sees it (orch.steps.base.StepView)."""

    spec: StepBase
    routes: Mapping[str, str | None] = field(default_factory=dict)
    writes: tuple[str, ...] = ()
    expression: Expression | None = None

    @property
    def next(self) -> tuple[str, ...]:
        return self.spec.next_ids

    @property
    def kind(self) -> StepKind:
        return STANDARD[self.spec.type]


def view(spec: StepBase) -> View:
    routes = STANDARD[spec.type].routes
    return View(spec, routes(spec) if routes is not None else {})


EVALUATOR = EvaluatorStep(id="judge", route_map={"good": "publish", "bad": None}, next_step_id="fallback")
IF_ELSE = IfElseStep(id="check", if_condition="state.ok", if_true_step_id="yes", next_step_id="after")
SWITCH = SwitchStep(id="pick", switch_expression="state.x", switch_cases={"a": "step-a", "b": None},
                    switch_default_step_id="other", next_step_id="after")
SWITCH_NO_DEFAULT = SwitchStep(id="pick", switch_expression="state.x", switch_cases={"a": "step-a"},
                               next_step_id="after")

ROUTES = [
    # step, label the executor returned, what its kind says, where the step goes
    (LlmStep(id="s", next_step_id="n"), None, None, ("n",)),
    (AgentStep(id="s", next_step_id="n"), "whatever", None, ("n",)),
    (LlmStep(id="s"), None, None, ()),
    (EndStep(id="s", next_step_id="n"), None, (), ()),
    (EVALUATOR, "good", ("publish",), ("publish",)),
    (EVALUATOR, "bad", (), ()),  # a route to null ends the branch
    (EVALUATOR, "unknown", None, ("fallback",)),
    (EVALUATOR, None, None, ("fallback",)),
    (IF_ELSE, "true", ("yes",), ("yes",)),
    (IF_ELSE, "false", None, ("after",)),  # a side with no target goes to next_step_id
    (IfElseStep(id="check", if_condition="state.ok", if_true_step_id="yes"), "false", None, ()),
    (SWITCH, "a", ("step-a",), ("step-a",)),
    (SWITCH, "b", (), ()),
    (SWITCH, "c", ("other",), ("other",)),  # no case matches: the default
    (SWITCH_NO_DEFAULT, "c", None, ("after",)),  # no default: next_step_id
    (HumanStep(id="s", next_step_id="n"), None, None, ("n",)),
]


@pytest.mark.parametrize(("spec", "label", "routed", "goes"), ROUTES,
                         ids=[f"{r[0].type}-{r[1]}-{i}" for i, r in enumerate(ROUTES)])
def test_route(spec: StepBase, label: str | None, routed: tuple[str, ...] | None, goes: tuple[str, ...]) -> None:
    step = view(spec)
    assert (step.kind.route(step, label), scheduler.targets(step, label)) == (routed, goes)  # type: ignore[arg-type]


def test_routes_of_the_routers() -> None:
    routers = {name: kind.routes for name, kind in STANDARD.items() if kind.routes is not None}
    specs: dict[str, StepBase] = {"evaluator": EVALUATOR, "if_else": IF_ELSE, "switch": SWITCH}
    assert {name: routes(specs[name]) for name, routes in routers.items()} == {
        "evaluator": {"good": "publish", "bad": None},
        "if_else": {"true": "yes", "false": None},
        "switch": {"a": "step-a", "b": None},
    }


def test_what_fans_out() -> None:
    two = ["x", "y"]
    assert {
        "llm with two next steps": STANDARD["llm"].fans_out(LlmStep(id="s", next_step_id=two)),
        "llm with one": STANDARD["llm"].fans_out(LlmStep(id="s", next_step_id="x")),
        "parallel": STANDARD["parallel"].fans_out(ParallelStep(id="s", parallel_branches=["x"])),
        "evaluator with two next steps": STANDARD["evaluator"].fans_out(EvaluatorStep(id="s", next_step_id=two)),
        "end with two next steps": STANDARD["end"].fans_out(EndStep(id="s", next_step_id=two)),
    } == {
        "llm with two next steps": True, "llm with one": False, "parallel": True,
        "evaluator with two next steps": False, "end with two next steps": False,
    }


def test_what_kinds_write() -> None:
    specs: list[StepBase] = [
        LlmStep(id="s", output_key="out"), HumanStep(id="s", output_key="review"), HumanStep(id="s"),
        HumanStep(id="s", output_key="human_response"), ParallelStep(id="s", output_key="out"),
        EndStep(id="s", output_key="out"), LlmStep(id="s"),
    ]
    assert [(s.type, STANDARD[s.type].writes(s)) for s in specs] == [
        ("llm", ("out",)), ("human", ("review", "human_response")), ("human", ("human_response",)),
        ("human", ("human_response",)), ("parallel", ()), ("end", ()), ("llm", ()),
    ]


# -- step type names live in their kind's module ------------------------------------------------

# Words that are also something else: a chat message role, a state reducer.
OTHER_MEANINGS = {
    "tool": {"providers/base.py", "providers/anthropic.py", "providers/openai_compat.py", "providers/offline.py",
             "steps/agent.py"},
    "merge": {"definition/state.py"},
}


def test_each_step_type_is_named_only_by_its_kind() -> None:
    sources = {str(p.relative_to(ENGINE)): p.read_text(encoding="utf-8") for p in ENGINE.rglob("*.py")}
    misplaced: dict[str, set[str]] = {}
    for name, kind in STANDARD.items():
        home = str(Path(inspect.getsourcefile(kind.executor) or "").relative_to(ENGINE))
        allowed = {home, "definition/spec.py"} | OTHER_MEANINGS.get(name, set())
        quoted = re.compile(rf"""(["']){re.escape(name)}\1""")
        found = {path for path, text in sources.items() if quoted.search(text)}
        assert home in found, f"{name} is not named in its own module {home}"
        if found - allowed:
            misplaced[name] = found - allowed
    assert misplaced == {}


def test_the_table_lists_every_type_of_the_file_format_and_one_internal_kind() -> None:
    assert (list(spec_types(STANDARD)), [n for n, k in STANDARD.items() if not k.in_files]) == (
        ["agent", "llm", "tool", "evaluator", "parallel", "merge", "loop", "human", "transform", "extract_json",
         "if_else", "switch", "print", "end"],
        ["subflow"],
    )


# -- sub-orchestrations are decided when compiling ----------------------------------------------


def test_an_agent_step_whose_agent_is_an_orchestrator_compiles_to_a_sub_orchestration() -> None:
    orch = Orchestration(id="parent", name="Parent", steps=[
        AgentStep(id="delegate", agent_id="runner", next_step_id="ask"),
        AgentStep(id="ask", agent_id="writer"),
    ])
    agents = {"runner": Agent(id="runner", type="orchestrator", orchestration_id="child"),
              "writer": Agent(id="writer")}
    result = compile_definition(orch, agents, orchestrations={"child"})
    assert result.graph is not None, result.errors
    assert [(sid, s.type, s.kind.name) for sid, s in result.graph.steps.items()] == [
        ("delegate", "agent", "subflow"), ("ask", "agent", "agent"),
    ]


# -- a step kind defined here, and nowhere else ---------------------------------------------------


class ByLengthStep(StepBase, tag="by_length", frozen=True, kw_only=True):
    """Routes by the length of the text in its first input key."""

    threshold: int = 10
    long_step_id: str | None = None
    short_step_id: str | None = None


async def run_by_length(ctx: StepContext) -> StepResult:
    spec: Any = ctx.step.spec
    size = len(str(ctx.state.get(spec.input_keys[0]) or ""))
    return StepResult(output=size, route="long" if size > spec.threshold else "short")


def by_length_routes(spec: Any) -> Mapping[str, str | None]:
    return {"long": spec.long_step_id, "short": spec.short_step_id}


def by_length_links(spec: Any, known: Container[str]) -> Iterator[Link]:
    yield Link(spec.id, spec.long_step_id, "long", "long_step_id")
    yield Link(spec.id, spec.short_step_id, "short", "short_step_id")


def check_by_length(spec: Any, report: FieldReport) -> None:
    report.need("input_keys", bool(spec.input_keys), "name the key that holds the text")
    if spec.threshold < 0:
        report.add("invalid-value", f"threshold must not be negative, got {spec.threshold}", "set 0 or more")


BY_LENGTH = StepKind(
    name="by_length", spec=ByLengthStep, executor=run_by_length, check_fields=check_by_length,
    output_type=lambda spec: TypeSpec("int"), routes=by_length_routes,
    route=lambda step, label: (step.routes[label],) if label in step.routes and step.routes[label] else None,
    links=by_length_links, shape="decision",
)
KINDS = {**standard_kinds(), BY_LENGTH.name: BY_LENGTH}

MEASURED = """
id: measured
name: Measured
state_schema:
  size: {type: int}
steps:
  - {id: measure, type: by_length, input_keys: [user_input], output_key: size, threshold: 12,
     long_step_id: long, short_step_id: short}
  - {id: long, type: print, print_content: "long ({state.size})", output_key: verdict}
  - {id: short, type: print, print_content: "short ({state.size})", output_key: verdict}
"""


def problems(text: str, kinds: dict[str, StepKind] | None = KINDS) -> list[tuple[str, str | None, str]]:
    catalog = load_text(text, "measured.yaml", Catalog(step_types=spec_types(kinds)) if kinds else None)
    found = list(catalog.problems)
    for result in compile_catalog(catalog, kinds=kinds).values():
        found.extend(result.problems)
    return [(p.code, p.step_id, p.message) for p in found]


@pytest.mark.parametrize(("message", "route"), [
    ("a rather long message", ["measure", "long"]),
    ("brief", ["measure", "short"]),
])
async def test_a_new_step_kind_runs_end_to_end(make_engine: Any, sqlite_url: str, message: str,
                                               route: list[str]) -> None:
    engine = await make_engine(sqlite_url, MEASURED, kinds=KINDS)
    result = await engine.run("measured", message)
    size = len(message)
    verdict = f"{route[1]} ({size})"
    assert (result.status, result.response, result.shared_state["size"],
            [(h.step_id, h.type, h.status) for h in result.step_history]) == (
        "completed", verdict, size, [(route[0], "by_length", "completed"), (route[1], "print", "completed")],
    )


async def test_a_stored_definition_compiles_again_with_the_engine_s_kinds(make_engine: Any, sqlite_url: str) -> None:
    first = await make_engine(sqlite_url, MEASURED, kinds=KINDS)
    version = first.graphs["measured"].version
    restarted = await make_engine(sqlite_url, kinds=KINDS)  # no graphs loaded: only what the store has
    graph = await restarted.graph_for_version(version)
    assert (graph.steps["measure"].kind, dict(graph.steps["measure"].routes)) == (
        BY_LENGTH, {"long": "long", "short": "short"})
    without = await make_engine(sqlite_url)
    with pytest.raises(DefinitionError) as caught:
        await without.graph_for_version(version)
    assert [(p.code, p.message) for p in caught.value.problems] == [
        ("unknown-step-type", "unknown step type 'by_length'"),
    ]


def test_a_new_step_kind_is_checked_like_the_built_in_ones() -> None:
    broken = (MEASURED.replace("input_keys: [user_input], ", "").replace("threshold: 12", "threshold: -1")
              .replace("short_step_id: short", "short_step_id: shrot"))
    assert problems(broken) == [
        ("unknown-step", "measure", "short_step_id points to 'shrot', which is not a step"),
        ("missing-field", "measure", "by_length step needs 'input_keys'"),
        ("invalid-value", "measure", "threshold must not be negative, got -1"),
        ("unreachable-step", "short", "no path from the entry step reaches this step"),
    ]


def test_without_its_table_entry_the_new_type_is_unknown() -> None:
    assert problems(MEASURED, kinds=None) == [
        ("unknown-step-type", "measure", "unknown step type 'by_length'"),
    ]


def test_a_new_step_kind_draws_as_its_shape() -> None:
    from orch.definition.render import mermaid

    catalog = load_text(MEASURED, "measured.yaml", Catalog(step_types=spec_types(KINDS)))
    graph = compile_catalog(catalog, kinds=KINDS)["measured"].graph
    assert graph is not None
    assert mermaid(graph).splitlines()[1:2] == ['    s_measure{"measure<br/><small>by_length</small>"}']


# -- an end step ends its branch, wherever it stands -------------------------------------------


async def named(ctx: Any) -> StepResult:
    return StepResult(output=ctx.step.spec.id)


END_IN_A_BRANCH = """
id: held
name: Held
steps:
  - {id: fan, type: parallel, parallel_branches: [[draft, hold, publish], [notify]], next_step_id: report}
  - {id: draft, type: agent, output_key: draft}
  - {id: hold, type: end}
  - {id: publish, type: agent, output_key: published}
  - {id: notify, type: agent, output_key: notified}
  - {id: report, type: print, print_content: "reported", output_key: report}
"""

END_WITH_TWO_NEXT = """
id: stopped
name: Stopped
steps:
  - {id: first, type: agent, output_key: first, next_step_id: stop}
  - {id: stop, type: end, next_step_id: [left, right]}
  - {id: left, type: agent, output_key: left}
  - {id: right, type: agent, output_key: right}
"""


@pytest.mark.parametrize(("graph", "orch_id", "ran"), [
    (END_IN_A_BRANCH, "held", ["fan", "draft", "notify", "hold", "report"]),
    (END_WITH_TWO_NEXT, "stopped", ["first", "stop"]),
])
async def test_an_end_step_ends_its_branch(make_engine: Any, sqlite_url: str, graph: str, orch_id: str,
                                           ran: list[str]) -> None:
    engine = await make_engine(sqlite_url, graph, executors={"agent": named})
    result = await engine.run(orch_id, "go")
    assert (result.status, sorted(h.step_id for h in result.step_history)) == ("completed", sorted(ran))


def test_only_the_templates_a_step_type_renders_count_as_reads() -> None:
    stray = """
id: stray
name: Stray
steps:
  - {id: ask, type: llm, prompt_template: "About {state.topic}", print_content: "{state.leftover}",
     human_prompt: "{state.other}", output_key: answer}
"""
    assert problems(stray) == [
        ("no-writer", "ask", "reads 'topic', which no step writes and state_schema does not declare"),
    ]
