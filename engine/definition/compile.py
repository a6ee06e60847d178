"""Compile an orchestration into a networkx DiGraph, validate it, and freeze the result.

This is the only module that uses networkx. The frozen `CompiledGraph` holds plain tuples and
dicts, so the runtime never touches networkx: it reads successors, fan-outs and joins from it.

Edge kinds: `next`, `route:<label>`, `true`, `false`, `case:<value>`, `default`, `branch`
(parallel step to a branch head, and from one step of a multi-step branch to the next), `body`
(loop step to its body steps). Each edge carries `keys`: the state keys its source writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Container, Mapping

import msgspec
import networkx as nx

from orch.errors import DefinitionError, Problem
from orch.definition.expressions import Expression, ExpressionError, compile_expression
from orch.definition.loader import Catalog, LoadedOrchestration, broken_steps, definition_version
from orch.definition.spec import Agent, Orchestration, StepBase
from orch.definition.state import StateSchema, TypeParseError, convert, parse_type
from orch.definition.templates import template_keys



@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str
    kind: str
    keys: tuple[str, ...] = ()
    back: bool = False


@dataclass(frozen=True, slots=True)
class FanOut:
    """Where concurrent branches start and where they meet again (None: they never do)."""

    step_id: str
    branches: tuple[tuple[str, ...], ...]  # each branch: head first, then queued steps
    join: str | None
    parallel: bool  # a `parallel` step: its join runs even if every branch ended early


@dataclass(frozen=True, slots=True)
class CompiledStep:
    spec: StepBase
    type: str
    writes: tuple[str, ...]
    reads: frozenset[str]
    next: tuple[str, ...]
    routes: Mapping[str, str | None]  # evaluator labels, switch cases, "true"/"false"
    expression: Expression | None = None
    fanout: FanOut | None = None
    loop_owner: str | None = None  # set on loop body steps
    on_cycle: bool = False
    # Where branches may meet (SPEC §3.2): `bit` is this step's place in the forward graph, and
    # `merge_mask` (set on steps with several forward predecessors, when the graph fans out) holds
    # the bits of every step that can reach it. A token that arrives here waits while a live
    # token stands on any of those steps.
    bit: int = 0
    merge_mask: int = 0
    queue: tuple[str, ...] = ()  # the steps after this one in its multi-step parallel branch


@dataclass(frozen=True)
class CompiledGraph:
    orchestration: Orchestration
    file: str | None
    version: str
    entry: str
    steps: Mapping[str, CompiledStep]
    edges: tuple[Edge, ...]
    schema: StateSchema
    agents: Mapping[str, Agent]
    cycles: tuple[tuple[str, ...], ...]
    warnings: tuple[Problem, ...] = ()

    @property
    def id(self) -> str:
        return self.orchestration.id

    def to_networkx(self) -> "nx.DiGraph[str]":
        g: nx.DiGraph[str] = nx.DiGraph()
        for sid, cs in self.steps.items():
            g.add_node(sid, type=cs.type, name=cs.spec.label)
        for e in self.edges:
            g.add_edge(e.source, e.target, kind=e.kind, keys=e.keys, back=e.back)
        return g


@dataclass
class CompileResult:
    graph: CompiledGraph | None
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]


def compile_catalog(catalog: Catalog, *, tools: Container[str] | None = None) -> dict[str, CompileResult]:
    return {
        oid: compile_orchestration(
            lo, agents={k: a.spec for k, a in catalog.agents.items()}, tools=tools,
            orchestrations=catalog.orchestrations,
        )
        for oid, lo in catalog.orchestrations.items()
    }


def compile_or_raise(orch: LoadedOrchestration, agents: Mapping[str, Agent], **kw: Any) -> CompiledGraph:
    result = compile_orchestration(orch, agents, **kw)
    if result.graph is None:
        raise DefinitionError(result.problems)
    return result.graph


def compile_orchestration(
    loaded: LoadedOrchestration,
    agents: Mapping[str, Agent],
    *,
    tools: Container[str] | None = None,
    orchestrations: Container[str] = (),
    extra_broken: frozenset[str] = frozenset(),
) -> CompileResult:
    """Build the graph, run every check, and freeze it when there are no errors."""
    from orch.definition.validate import Validator  # validate.py reads the structures defined here

    orch, file = loaded.spec, loaded.file
    problems: list[Problem] = []

    def problem(code: str, message: str, step_id: str | None = None, hint: str | None = None,
                severity: str = "error") -> None:
        problems.append(Problem(code, message, file=file, step_id=step_id, hint=hint,
                                severity=severity, orchestration_id=orch.id))  # type: ignore[arg-type]

    problems.extend(loaded.problems)
    broken = set(broken_steps(loaded.problems)) | set(extra_broken)
    good_fields = {}
    for key, f in orch.state_schema.items():
        try:
            spec_type = parse_type(f.type)
            good_fields[key] = f
        except TypeParseError as exc:
            problem("bad-type", f"state_schema.{key}: {exc}", None, "e.g. str, int, list[str] or dict[str, int]")
            continue
        if f.default is not msgspec.UNSET and f.default is not None:
            try:
                convert(f.default, spec_type)
            except msgspec.ValidationError:
                problem("bad-default", f"state_schema.{key}: default {f.default!r} does not fit type {spec_type.text}", None,
                        f"give a {spec_type.text} default or change the type")
    schema = StateSchema(good_fields)

    steps: dict[str, StepBase] = {}
    s: StepBase
    for s in orch.steps:
        if s.id in steps:
            problem("duplicate-step", f"step id '{s.id}' is used more than once", s.id, "give each step its own id")
        else:
            steps[s.id] = s
    entry = orch.entry or ""
    if entry and entry not in steps and entry not in broken:
        problem("unknown-entry", f"entry_step_id '{entry}' is not a step", None, _suggest(entry, steps))
    if not steps and not broken:
        problem("no-steps", "the orchestration has no steps", None, "add at least one step under `steps:`")

    expressions: dict[str, Expression] = {}
    for s in steps.values():
        source = s.if_condition if s.type == "if_else" else s.switch_expression if s.type == "switch" else None
        if source:
            try:
                expressions[s.id] = compile_expression(source)
            except ExpressionError as exc:
                field_name = "if_condition" if s.type == "if_else" else "switch_expression"
                problem("bad-expression", f"{field_name}: {exc.message}", s.id,
                        "use state.<key>, literals, comparisons, and/or/not, arithmetic, in, and "
                        "len int float str bool list dict abs min max round")

    g: nx.DiGraph[str] = nx.DiGraph()
    loop_owner: dict[str, str] = {}
    multi_branch_members: set[str] = set()
    queues: dict[str, tuple[str, ...]] = {}
    for s in steps.values():
        g.add_node(s.id)
        if s.type == "loop":
            for b in s.loop_step_ids:
                loop_owner.setdefault(b, s.id)
        if s.type == "parallel":
            for br in s.parallel_branches:
                ids = [br] if isinstance(br, str) else list(br)
                multi_branch_members.update(ids[:-1])
                for i, sid in enumerate(ids[:-1]):
                    queues.setdefault(sid, tuple(ids[i + 1:]))

    def link(src: str, dst: str | None, kind: str, field_name: str) -> None:
        if dst is None or dst == "":
            return
        if dst not in steps:
            if dst in broken:  # the step is there but did not decode: already reported
                return
            problem("unknown-step", f"{field_name} points to '{dst}', which is not a step", src, _suggest(dst, steps))
            return
        if g.has_edge(src, dst):  # two labels to one target: keep both visible
            g[src][dst]["kind"] += "|" + kind
        else:
            g.add_edge(src, dst, kind=kind)

    routes: dict[str, dict[str, str | None]] = {}
    for s in steps.values():
        if s.type == "evaluator":
            routes[s.id] = dict(s.route_map)
            for label, target in s.route_map.items():
                link(s.id, target, f"route:{label}", f"route_map.{label}")
        elif s.type == "if_else":
            routes[s.id] = {"true": s.if_true_step_id, "false": s.if_false_step_id}
            link(s.id, s.if_true_step_id, "true", "if_true_step_id")
            link(s.id, s.if_false_step_id, "false", "if_false_step_id")
        elif s.type == "switch":
            routes[s.id] = dict(s.switch_cases)
            for value, target in s.switch_cases.items():
                link(s.id, target, f"case:{value}", f"switch_cases.{value}")
            link(s.id, s.switch_default_step_id, "default", "switch_default_step_id")
        elif s.type == "parallel":
            for i, br in enumerate(s.parallel_branches):
                ids = [br] if isinstance(br, str) else list(br)
                prev = s.id
                for sid in ids:
                    link(prev, sid, "branch", f"parallel_branches[{i}]")
                    prev = sid if sid in steps else prev
        elif s.type == "loop":
            for sid in s.loop_step_ids:
                link(s.id, sid, "body", "loop_step_ids")
        if s.type in ("end",) or s.id in loop_owner or s.id in multi_branch_members:
            for t in s.next_ids:
                if t not in steps and t not in broken:
                    problem("unknown-step", f"next_step_id points to '{t}', which is not a step", s.id, _suggest(t, steps))
            continue
        if s.type in ("evaluator", "if_else", "switch") and routes[s.id]:
            # Routers go where they route; next_step_id is where the loop guard sends them.
            for t in s.next_ids:
                if t not in steps and t not in broken:
                    problem("unknown-step", f"next_step_id points to '{t}', which is not a step", s.id, _suggest(t, steps))
            for t in s.next_ids:
                if t in steps and not g.has_edge(s.id, t):
                    g.add_edge(s.id, t, kind="next")
            continue
        for t in s.next_ids:
            link(s.id, t, "next", "next_step_id")

    back_edges, order = _classify_back_edges(g, entry if entry in steps else None, loop_owner)
    for u, v in g.edges:
        g[u][v]["back"] = (u, v) in back_edges
        g[u][v]["keys"] = _writes(steps[u])

    fwd = forward_graph(g, back_edges) if any(_fans(s) for s in steps.values()) else None
    topo = list(nx.topological_sort(fwd)) if fwd is not None else []
    fanouts = _fanouts(fwd, topo, steps) if fwd is not None else {}
    bits, merge_masks = _merge_masks(fwd, topo) if fwd is not None else ({}, {})
    cycles = tuple(sorted(
        (tuple(sorted(c, key=order.__getitem__)) for c in nx.strongly_connected_components(g)
         if len(c) > 1 or g.has_edge(next(iter(c)), next(iter(c)))),
        key=lambda c: order[c[0]],
    ))  # each cycle listed in the order a walk from the entry meets its steps
    on_cycle = {sid for c in cycles for sid in c}

    validator = Validator(
        orch=orch, file=file, steps=steps, graph=g, schema=schema, entry=entry, agents=agents,
        tools=tools, orchestrations=orchestrations, expressions=expressions, fanouts=fanouts,
        loop_owner=loop_owner, back_edges=back_edges, cycles=cycles, problems=problems,
        partial=bool(broken), forward=fwd,
    )
    validator.run()

    if any(p.severity == "error" for p in problems):
        return CompileResult(None, problems)

    compiled_steps = {
        sid: CompiledStep(
            spec=s, type=s.type, writes=_writes(s), reads=frozenset(validator.reads[sid]),
            next=s.next_ids, routes=MappingProxyType(routes.get(sid, {})),
            expression=expressions.get(sid), fanout=fanouts.get(sid), loop_owner=loop_owner.get(sid),
            on_cycle=sid in on_cycle, bit=bits.get(sid, 0), merge_mask=merge_masks.get(sid, 0),
            queue=tuple(x for x in queues.get(sid, ()) if x in steps),
        )
        for sid, s in steps.items()
    }
    edges = tuple(
        Edge(u, v, d["kind"], d["keys"], d["back"]) for u, v, d in g.edges(data=True)
    )
    used_agents = {s.agent_id: agents[s.agent_id] for s in steps.values() if s.agent_id and s.agent_id in agents}
    graph = CompiledGraph(
        orchestration=orch, file=file, version=loaded.version, entry=entry,
        steps=MappingProxyType(compiled_steps), edges=edges, schema=schema,
        agents=MappingProxyType(used_agents), cycles=cycles,
        warnings=tuple(p for p in problems if p.severity == "warning"),
    )
    return CompileResult(graph, problems)


def compile_definition(orch: Orchestration, agents: Mapping[str, Agent], **kw: Any) -> CompileResult:
    import msgspec

    loaded = LoadedOrchestration(orch, None, orch.version or definition_version(msgspec.to_builtins(orch)))  # type: ignore[arg-type]
    return compile_orchestration(loaded, agents, **kw)


def _writes(s: StepBase) -> tuple[str, ...]:
    if s.type in ("parallel", "end"):
        return ()
    keys = [s.output_key] if s.output_key else []
    if s.type == "human":
        if not s.output_key:
            keys = ["human_response"]
        elif s.output_key != "human_response":
            keys.append("human_response")
    return tuple(keys)


def step_reads(s: StepBase, expression: Expression | None) -> set[str]:
    reads = set(s.input_keys)
    for text in (s.prompt_template, s.print_content, s.human_prompt, s.evaluator_prompt):
        if text:
            reads |= template_keys(text)
    if s.tool_args:
        for v in s.tool_args.values():
            if isinstance(v, str):
                reads |= template_keys(v)
    if expression is not None:
        reads |= expression.state_keys
    if s.loop_over:
        reads.add(s.loop_over)
    return reads


def _classify_back_edges(
    g: "nx.DiGraph[str]", entry: str | None, loop_owner: Mapping[str, str]
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


def _fans(s: StepBase) -> bool:
    return s.type == "parallel" or (len(s.next_ids) > 1 and s.type not in ("evaluator", "if_else", "switch"))


def forward_graph(g: "nx.DiGraph[str]", back: set[tuple[str, str]]) -> "nx.DiGraph[str]":
    """The graph without back edges and loop bodies: acyclic, what branches flow along."""
    fwd: nx.DiGraph[str] = nx.DiGraph()
    fwd.add_nodes_from(g.nodes)
    fwd.add_edges_from((u, v) for u, v, d in g.edges(data=True) if (u, v) not in back and d.get("kind") != "body")
    return fwd


def _fanouts(fwd: "nx.DiGraph[str]", topo: list[str], steps: Mapping[str, StepBase]) -> dict[str, FanOut]:
    result: dict[str, FanOut] = {}
    order = {n: i for i, n in enumerate(topo)}
    ends = {sid for sid, st in steps.items() if st.type == "end"}
    for s in steps.values():
        if s.type == "parallel":
            branches = tuple(
                tuple(x for x in ([br] if isinstance(br, str) else br) if x in steps)
                for br in s.parallel_branches
            )
            branches = tuple(b for b in branches if b)
            join = s.next_ids[0] if s.next_ids and s.next_ids[0] in steps else None
            result[s.id] = FanOut(s.id, branches, join, True)
        elif _fans(s):
            heads = tuple((t,) for t in s.next_ids if t in steps)
            result[s.id] = FanOut(s.id, heads, _meeting_point(fwd, [h[0] for h in heads], order, ends), False)
    return result


def _merge_masks(fwd: "nx.DiGraph[str]", topo: list[str]) -> tuple[dict[str, int], dict[str, int]]:
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


def _meeting_point(fwd: "nx.DiGraph[str]", heads: list[str], order: Mapping[str, int],
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


def _suggest(name: str, known: Mapping[str, Any]) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(known), n=1)
    return f"did you mean '{close[0]}'?" if close else "known steps: " + ", ".join(list(known)[:8])
