"""Graph algorithms the compiler runs over the networkx graph of an orchestration: which edges
close cycles, the forward (acyclic) graph, where fan-outs meet again, and the bitsets the
scheduler tests to hold branches where they meet. Pure functions of their arguments."""

from __future__ import annotations

from typing import Mapping

import networkx as nx

from orch.definition.compiled import FanOut


def classify_back_edges(
    g: "nx.DiGraph[str]", entry: str | None
) -> tuple[set[tuple[str, str]], dict[str, int]]:
    """Edges that close a cycle in a depth-first walk from the entry (then from any unvisited
    step), and the order in which that walk first meets each step."""
    back: set[tuple[str, str]] = set()
    state: dict[str, int] = {}  # 1 on stack, 2 done
    order: dict[str, int] = {}
    roots = ([entry] if entry else []) + list(g.nodes)
    for root in roots:
        if root in state:
            continue
        stack = [(root, iter(g.successors(root)))]
        state[root] = 1
        order[root] = len(order)
        while stack:
            node, it = stack[-1]
            for nxt in it:
                st = state.get(nxt)
                if st == 1:
                    back.add((node, nxt))
                elif st is None:
                    state[nxt] = 1
                    order[nxt] = len(order)
                    stack.append((nxt, iter(g.successors(nxt))))
                    break
            else:
                state[node] = 2
                stack.pop()
    return back, order


def cycles_of(g: "nx.DiGraph[str]", order: Mapping[str, int]) -> tuple[tuple[str, ...], ...]:
    """Every cycle (strongly connected set of steps), each listed in the order a walk from the
    entry meets its steps, the cycles in the order their first steps are met."""
    return tuple(sorted(
        (tuple(sorted(c, key=order.__getitem__)) for c in nx.strongly_connected_components(g)
         if len(c) > 1 or g.has_edge(next(iter(c)), next(iter(c)))),
        key=lambda c: order[c[0]],
    ))


def forward_graph(g: "nx.DiGraph[str]", back: set[tuple[str, str]]) -> "nx.DiGraph[str]":
    """The graph without back edges and loop bodies: acyclic, what branches flow along."""
    fwd: nx.DiGraph[str] = nx.DiGraph()
    fwd.add_nodes_from(g.nodes)
    fwd.add_edges_from((u, v) for u, v, d in g.edges(data=True) if (u, v) not in back and d.get("kind") != "body")
    return fwd


def fan_out(fwd: "nx.DiGraph[str]", order: Mapping[str, int], step_id: str, heads: tuple[str, ...],
            ends: set[str]) -> FanOut:
    """The fan-out of a step with several next steps: one branch per head, joined where they meet."""
    branches = tuple((h,) for h in heads)
    return FanOut(step_id, branches, meeting_point(fwd, list(heads), order, ends), False)


def merge_masks(fwd: "nx.DiGraph[str]", topo: list[str]) -> tuple[dict[str, int], dict[str, int]]:
    """A bit per step, in topological order, and for each step with several forward
    predecessors the bits of all its ancestors (a bitset per step: cheap to test at run time)."""
    bits: dict[str, int] = {}
    ancestors: dict[str, int] = {}
    masks: dict[str, int] = {}
    for i, node in enumerate(topo):
        bits[node] = 1 << i
        preds = list(fwd.predecessors(node))
        acc = 0
        for p in preds:
            acc |= ancestors[p] | bits[p]
        ancestors[node] = acc
        if len(preds) > 1:
            masks[node] = acc
    return bits, masks


def meeting_point(fwd: "nx.DiGraph[str]", heads: list[str], order: Mapping[str, int],
                  ends: set[str]) -> str | None:
    """Where the branches meet: the first step (in topological order) that every branch can
    reach and that no path from the branches can go around to reach what lies after it.
    Branches that end before it (no successor, a route to null) simply die there at run time."""
    common: set[str] | None = None
    for head in heads:
        reach = nx.descendants(fwd, head) | {head}
        common = reach if common is None else common & reach
    for candidate in sorted(common or (), key=order.__getitem__):
        if candidate in ends:  # branches that all may stop are not meeting there
            continue
        after = nx.descendants(fwd, candidate)
        seen, todo = set(), [h for h in heads if h != candidate]
        while todo:
            node = todo.pop()
            if node in seen:
                continue
            seen.add(node)
            todo.extend(n for n in fwd.successors(node) if n != candidate)
        if not seen & after:
            return candidate
    return None
