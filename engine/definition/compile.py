"""Compile an orchestration: check it, build its networkx graph, validate it, and freeze the result.

This module and validate.py are the only networkx users; the frozen `CompiledGraph`
(compiled.py) holds plain tuples and mappings, so the run never touches networkx. Every
step-type decision goes through the step's kind, looked up in the table of kinds passed in
(orch.steps.standard_kinds() by default).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Container, Mapping

import msgspec
import networkx as nx

from orch.definition.compiled import CompiledGraph, CompiledStep, CompileResult, Edge, FanOut
from orch.definition.decode import broken_steps
from orch.definition.expressions import Expression, ExpressionError, compile_expression
from orch.definition.loader import Catalog, LoadedOrchestration, definition_version
from orch.definition.spec import Agent, Orchestration, StateField, StepBase
from orch.definition.state import StateSchema, TypeParseError, convert, parse_type
from orch.definition.topology import classify_back_edges, cycles_of, fan_out, forward_graph, merge_masks
from orch.definition.validate import Validator
from orch.errors import Problem
from orch.steps import standard_kinds
from orch.steps.base import Link, StepKind

__all__ = [
    "CompileResult", "CompiledGraph", "CompiledStep", "Edge", "FanOut", "compile_catalog", "compile_definition",
    "compile_orchestration",
]

_EXPRESSION_HINT = ("use state.<key>, literals, comparisons, and/or/not, arithmetic, in, and "
                    "len int float str bool list dict abs min max round")


def compile_catalog(catalog: Catalog, *, tools: Container[str] | None = None,
                    kinds: Mapping[str, StepKind] | None = None) -> dict[str, CompileResult]:
    kinds = standard_kinds() if kinds is None else kinds
    agents = {k: a.spec for k, a in catalog.agents.items()}
    return {
        oid: compile_orchestration(lo, agents, tools=tools, orchestrations=catalog.orchestrations, kinds=kinds)
        for oid, lo in catalog.orchestrations.items()
    }


def compile_definition(orch: Orchestration, agents: Mapping[str, Agent], **kw: Any) -> CompileResult:
    """Compile an orchestration that was not loaded from a file (posted, or stored with a run)."""
    version = orch.version or definition_version(msgspec.to_builtins(orch))
    return compile_orchestration(LoadedOrchestration(orch, None, version), agents, **kw)  # type: ignore[arg-type]


def compile_orchestration(
    loaded: LoadedOrchestration,
    agents: Mapping[str, Agent],
    *,
    tools: Container[str] | None = None,
    orchestrations: Container[str] = (),
    extra_broken: frozenset[str] = frozenset(),
    kinds: Mapping[str, StepKind] | None = None,
) -> CompileResult:
    """Build the graph, run every check, and freeze it when there are no errors."""
    c = _Compilation(loaded, agents, standard_kinds() if kinds is None else kinds,
                     set(broken_steps(loaded.problems)) | set(extra_broken))
    c.problems.extend(loaded.problems)
    schema = c.state_schema()
    c.index_steps()
    c.compile_expressions()
    g = c.build_graph()
    back_edges, order = classify_back_edges(g, c.entry if c.entry in c.steps else None)
    for u, v in g.edges:
        g[u][v]["back"] = (u, v) in back_edges
        g[u][v]["keys"] = c.writes[u]
    fwd = forward_graph(g, back_edges) if any(c.kinds[sid].fans_out(s) for sid, s in c.steps.items()) else None
    topo = list(nx.topological_sort(fwd)) if fwd is not None else []
    cycles = cycles_of(g, order)
    fanouts = c.fanouts(fwd, topo)
    Validator(
        orch=c.orch, file=c.file, steps=c.steps, kinds=c.kinds, graph=g, schema=schema, entry=c.entry,
        agents=agents, tools=tools, orchestrations=orchestrations, reads=c.reads, writes=c.writes,
        fanouts=fanouts, loop_owner=c.loop_owner, back_edges=back_edges, cycles=cycles, problems=c.problems,
        partial=bool(c.broken), forward=fwd,
    ).run()
    if any(p.severity == "error" for p in c.problems):
        return CompileResult(None, c.problems)
    return CompileResult(c.freeze(g, schema, fwd, topo, fanouts, cycles), c.problems)


@dataclass
class _Compilation:
    """The working state of one compilation; each method is one phase."""

    loaded: LoadedOrchestration
    agents: Mapping[str, Agent]
    table: Mapping[str, StepKind]
    broken: set[str]  # steps that failed to decode: references to them are already reported
    problems: list[Problem] = field(default_factory=list)
    steps: dict[str, StepBase] = field(default_factory=dict)
    kinds: dict[str, StepKind] = field(default_factory=dict)  # step id → the kind that runs it
    reads: dict[str, set[str]] = field(default_factory=dict)
    writes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    expressions: dict[str, Expression] = field(default_factory=dict)
    routes: dict[str, dict[str, str | None]] = field(default_factory=dict)
    loop_owner: dict[str, str] = field(default_factory=dict)
    queues: dict[str, tuple[str, ...]] = field(default_factory=dict)  # multi-step branches: what follows

    @property
    def orch(self) -> Orchestration:
        return self.loaded.spec

    @property
    def file(self) -> str | None:
        return self.loaded.file

    @property
    def entry(self) -> str:
        return self.orch.entry or ""

    def problem(self, code: str, message: str, step_id: str | None = None, hint: str | None = None) -> None:
        self.problems.append(Problem(code, message, file=self.file, step_id=step_id, hint=hint,
                                     orchestration_id=self.orch.id))

    def state_schema(self) -> StateSchema:
        """The schema of the keys whose type parses; a bad type or default is a problem."""
        good: dict[str, StateField] = {}
        for key, f in self.orch.state_schema.items():
            try:
                spec_type = parse_type(f.type)
                good[key] = f
            except TypeParseError as exc:
                self.problem("bad-type", f"state_schema.{key}: {exc}", None, "e.g. str, int, list[str] or dict[str, int]")
                continue
            if f.default is not msgspec.UNSET and f.default is not None:
                try:
                    convert(f.default, spec_type)
                except msgspec.ValidationError:
                    self.problem("bad-default", f"state_schema.{key}: default {f.default!r} does not fit type "
                                 f"{spec_type.text}", None, f"give a {spec_type.text} default or change the type")
        return StateSchema(good)

    def index_steps(self) -> None:
        """Steps by id, each with its kind (decided here, from its type and agent) and the keys it
        reads and writes."""
        for s in self.orch.steps:
            if s.id in self.steps:
                self.problem("duplicate-step", f"step id '{s.id}' is used more than once", s.id, "give each step its own id")
            elif s.type not in self.table:
                self.problem("unknown-step-type", f"unknown step type '{s.type}'", s.id,
                             "one of: " + ", ".join(n for n, k in self.table.items() if k.in_files))
                self.broken.add(s.id)
            else:
                self.steps[s.id] = s
                kind = self.table[s.type]
                other = kind.runs_as(s, self.agents) if kind.runs_as is not None else None
                self.kinds[s.id] = self.table[other] if other is not None and other in self.table else kind
        if self.entry and self.entry not in self.steps and self.entry not in self.broken:
            self.problem("unknown-entry", f"entry_step_id '{self.entry}' is not a step", None,
                         _suggest(self.entry, self.steps))
        if not self.steps and not self.broken:
            self.problem("no-steps", "the orchestration has no steps", None, "add at least one step under `steps:`")
        for sid, spec in self.steps.items():
            self.writes[sid] = self.kinds[sid].writes(spec)

    def compile_expressions(self) -> None:
        for sid, s in self.steps.items():
            field_name = self.kinds[sid].expression_field
            source = getattr(s, field_name) if field_name else None
            if source:
                try:
                    self.expressions[sid] = compile_expression(source)
                except ExpressionError as exc:
                    self.problem("bad-expression", f"{field_name}: {exc.message}", sid, _EXPRESSION_HINT)
        for sid, s in self.steps.items():
            self.reads[sid] = self.kinds[sid].reads(s, self.expressions.get(sid))

    def build_graph(self) -> "nx.DiGraph[str]":
        """Every step a node; the edges its kind adds (routes, branches, body), then `next` edges."""
        g: nx.DiGraph[str] = nx.DiGraph()
        in_branch: set[str] = set()  # steps of multi-step branches, but the last: the branch leads on
        for sid, s in self.steps.items():
            g.add_node(sid)
            kind = self.kinds[sid]
            if kind.body is not None:
                for b in kind.body(s).steps:
                    self.loop_owner.setdefault(b, sid)
            for branch in kind.branches(s) if kind.branches is not None else ():
                in_branch.update(branch[:-1])
                for i, member in enumerate(branch[:-1]):
                    self.queues.setdefault(member, branch[i + 1:])
        for sid, s in self.steps.items():
            kind = self.kinds[sid]
            if kind.routes is not None:
                self.routes[sid] = dict(kind.routes(s))
            for link in kind.links(s, self.steps):
                self._link(g, link)
            if kind.terminal or sid in self.loop_owner or sid in in_branch:
                self._check_next(s)  # these never go to their next_step_id
            elif self.routes.get(sid):
                # Routers go where they route; next_step_id is where the loop guard sends them.
                self._check_next(s)
                for t in s.next_ids:
                    if t in self.steps and not g.has_edge(sid, t):
                        g.add_edge(sid, t, kind="next")
            else:
                for t in s.next_ids:
                    self._link(g, Link(sid, t, "next", "next_step_id"))
        return g

    def _link(self, g: "nx.DiGraph[str]", link: Link) -> None:
        src, dst = link.source, link.target
        if dst is None or dst == "":
            return
        if dst not in self.steps:
            if dst not in self.broken:
                self.problem("unknown-step", f"{link.field} points to '{dst}', which is not a step", src,
                             _suggest(dst, self.steps))
            return
        if g.has_edge(src, dst):  # two labels to one target: keep both visible
            g[src][dst]["kind"] += "|" + link.edge
        else:
            g.add_edge(src, dst, kind=link.edge)

    def _check_next(self, s: StepBase) -> None:
        for t in s.next_ids:
            if t not in self.steps and t not in self.broken:
                self.problem("unknown-step", f"next_step_id points to '{t}', which is not a step", s.id,
                             _suggest(t, self.steps))

    def fanouts(self, fwd: "nx.DiGraph[str] | None", topo: list[str]) -> dict[str, FanOut]:
        """Where branches start and meet: a kind's own branches join at its next step; several
        next steps join where their paths meet."""
        if fwd is None:
            return {}
        order = {n: i for i, n in enumerate(topo)}
        ends = {sid for sid, kind in self.kinds.items() if kind.terminal}
        result: dict[str, FanOut] = {}
        for sid, s in self.steps.items():
            kind = self.kinds[sid]
            if kind.branches is not None:
                known = (tuple(x for x in branch if x in self.steps) for branch in kind.branches(s))
                join = s.next_ids[0] if s.next_ids and s.next_ids[0] in self.steps else None
                result[sid] = FanOut(sid, tuple(b for b in known if b), join, True)
            elif kind.fans_out(s):
                result[sid] = fan_out(fwd, order, sid, tuple(t for t in s.next_ids if t in self.steps), ends)
        return result

    def freeze(self, g: "nx.DiGraph[str]", schema: StateSchema, fwd: "nx.DiGraph[str] | None", topo: list[str],
               fanouts: Mapping[str, FanOut], cycles: tuple[tuple[str, ...], ...]) -> CompiledGraph:
        bits, masks = merge_masks(fwd, topo) if fwd is not None else ({}, {})
        on_cycle = {sid for c in cycles for sid in c}
        steps = {
            sid: CompiledStep(
                spec=s, type=s.type, kind=self.kinds[sid], writes=self.writes[sid], reads=frozenset(self.reads[sid]),
                next=s.next_ids, routes=MappingProxyType(self.routes.get(sid, {})),
                expression=self.expressions.get(sid), fanout=fanouts.get(sid), loop_owner=self.loop_owner.get(sid),
                on_cycle=sid in on_cycle, bit=bits.get(sid, 0), merge_mask=masks.get(sid, 0),
                queue=tuple(x for x in self.queues.get(sid, ()) if x in self.steps),
            )
            for sid, s in self.steps.items()
        }
        edges = tuple(Edge(u, v, d["kind"], d["keys"], d["back"]) for u, v, d in g.edges(data=True))
        used_agents = {s.agent_id: self.agents[s.agent_id] for s in self.steps.values()
                       if s.agent_id and s.agent_id in self.agents}
        return CompiledGraph(
            orchestration=self.orch, file=self.file, version=self.loaded.version, entry=self.entry,
            steps=MappingProxyType(steps), edges=edges, schema=schema, agents=MappingProxyType(used_agents),
            cycles=cycles, warnings=tuple(p for p in self.problems if p.severity == "warning"),
        )


def _suggest(name: str, known: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"did you mean '{close[0]}'?" if close else "known steps: " + ", ".join(list(known)[:8])
