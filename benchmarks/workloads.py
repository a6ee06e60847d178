"""The benchmark workloads, built the same way for this engine and for LangGraph.

Every step is a no-op that adds 1 to an int key `count` whose reducer sums writes, so both
engines carry the same state and persist the same one-key delta per step: here an `add`
reducer in `state_schema`, there `Annotated[int, operator.add]`.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from orch.steps.base import StepResult

# -- this engine ---------------------------------------------------------------------------

_HEADER = """\
id: {id}
name: {id}
max_total_turns: 100000
state_schema:
  count: {{type: int, default: 0, reducer: add}}
steps:
"""


async def noop(ctx: Any) -> StepResult:
    """The executor for every `agent` step of the workloads: no work, one write."""
    return StepResult(output=1)


def chain_yaml(graph_id: str, length: int) -> str:
    lines = [_HEADER.format(id=graph_id)]
    for i in range(length):
        nxt = f"\n    next_step_id: s{i + 1}" if i + 1 < length else ""
        lines.append(f"  - id: s{i}\n    type: agent\n    name: s{i}\n    output_key: count{nxt}\n")
    return "".join(lines)


def fanout_yaml(graph_id: str, width: int) -> str:
    """A `parallel` step starting `width` branches that all meet at one join step."""
    branches = ", ".join(f"[b{i}]" for i in range(width))
    lines = [_HEADER.format(id=graph_id),
             f"  - id: fan\n    type: parallel\n    name: fan\n    parallel_branches: [{branches}]\n"
             "    next_step_id: join\n"]
    for i in range(width):
        lines.append(f"  - id: b{i}\n    type: agent\n    name: b{i}\n    output_key: count\n    next_step_id: join\n")
    lines.append("  - id: join\n    type: agent\n    name: join\n    output_key: count\n")
    return "".join(lines)


# -- LangGraph ----------------------------------------------------------------------------

class CountState(TypedDict):
    count: Annotated[int, operator.add]


def _node(state: CountState) -> dict[str, int]:
    return {"count": 1}


async def _anode(state: CountState) -> dict[str, int]:
    return {"count": 1}


def lg_chain(length: int, checkpointer: Any, *, is_async: bool = False) -> Any:
    from langgraph.graph import END, START, StateGraph

    g = StateGraph(CountState)
    fn = _anode if is_async else _node
    for i in range(length):
        g.add_node(f"s{i}", fn)
    g.add_edge(START, "s0")
    for i in range(length - 1):
        g.add_edge(f"s{i}", f"s{i + 1}")
    g.add_edge(f"s{length - 1}", END)
    return g.compile(checkpointer=checkpointer)


def lg_fanout(width: int, checkpointer: Any, *, is_async: bool = False) -> Any:
    """fan → `width` branches → join, the join waiting for every branch."""
    from langgraph.graph import END, START, StateGraph

    g = StateGraph(CountState)
    fn = _anode if is_async else _node
    g.add_node("fan", lambda state: {})
    branch_ids = [f"b{i}" for i in range(width)]
    for b in branch_ids:
        g.add_node(b, fn)
        g.add_edge("fan", b)
    g.add_node("join", fn)
    g.add_edge(branch_ids, "join")
    g.add_edge(START, "fan")
    g.add_edge("join", END)
    return g.compile(checkpointer=checkpointer)
