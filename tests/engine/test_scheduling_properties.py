"""Scheduling properties over random graph shapes, run on a real engine (SQLite).

A generator builds random acyclic graphs out of nested blocks (sequences, `parallel` blocks,
list fan-outs, if_else diamonds, if_else with one side ending, switches, and jumps from inside a
branch straight to an enclosing join), fixes every route through `state.flags`, and computes
which steps must run. The engine must run exactly those, each once, never start a join before
every branch it waits for is done, pause at a gate only after all other work finished, and
continue a run interrupted by a closed engine to the same final state.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from engine.steps import default_executors
from engine.steps.base import StepResult

# -- graph shapes ------------------------------------------------------------------------------


@dataclass(eq=False)
class Step:
    kind: str  # agent | print
    key: str = "own"  # where an agent writes: own key, `log` (append) or `count` (add)
    id: str = ""


@dataclass(eq=False)
class Gate:
    id: str = ""


@dataclass(eq=False)
class Seq:
    items: list[Any]


@dataclass(eq=False)
class Join:
    kind: str  # print | merge
    strategy: str = "list"
    id: str = ""


@dataclass(eq=False)
class Multi:
    """A parallel branch of several ids (run in that order), then an optional tail block."""

    steps: list[Any]
    tail: Any = None


@dataclass(eq=False)
class Par:
    branches: list[Any]  # blocks or Multi
    bare: list[bool]  # a one-id branch written as `id` rather than `[id]`
    join: Join | None  # None: the branches meet at whatever follows the block
    id: str = ""
    meet: str | None = ""  # the join's id (None: the branches never meet)


@dataclass(eq=False)
class Fan:
    head: Step  # its next_step_id is the list of branch heads
    branches: list[Any]  # blocks, or None: straight to the join
    join: Join | None
    meet: str | None = ""


@dataclass(eq=False)
class Diamond:
    value: bool
    yes: Any  # block, or None: straight to what follows
    no: Any
    id: str = ""


@dataclass(eq=False)
class IfEnd:
    value: bool
    ends_on: bool  # the side with no successor
    how: str  # end (an `end` step) | null (no target) | fallthrough (no target, next_step_id)
    other: Any
    id: str = ""
    end_id: str = ""


@dataclass(eq=False)
class Switch:
    value: str
    cases: dict[str, Any]  # value -> block, or None (the branch ends)
    default: Any
    id: str = ""


@dataclass(eq=False)
class Escape:
    """An if_else inside a fan-out branch whose one side jumps straight to an enclosing join."""

    value: bool
    on: bool  # the side that jumps
    level: int  # 0: the innermost enclosing join, 1: the one around it, ...
    other: Any  # block, or None: straight to what follows
    id: str = ""
    target: str | None = ""  # None: the fan-out it jumps to has nothing after it either


LEAF = st.builds(Step, st.sampled_from(["agent", "print"]), st.sampled_from(["own", "log", "count"]))
JOIN = st.builds(Join, st.sampled_from(["print", "merge"]), st.sampled_from(["list", "concat", "dict"]))


@st.composite
def blocks(draw: Any, depth: int, fans: int, after: bool = False) -> Any:
    """A block; `after`: something follows it (a step, or the join its branch runs to)."""
    kinds = ["step"]
    if depth > 0:
        kinds += ["seq", "par", "fan", "diamond", "ifend", "switch", "par", "fan", "seq"] + (
            ["escape", "escape"] if fans else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "step":
        return draw(LEAF)
    sub = blocks(depth - 1, fans, after)
    if kind == "seq":
        n = draw(st.integers(2, 3))
        return Seq([draw(blocks(depth - 1, fans, after or i < n - 1)) for i in range(n)])
    if kind in ("par", "fan"):  # a fan-out with no join step meets at what follows it, if anything
        join = draw(JOIN | st.none())
        inner = blocks(depth - 1, fans + 1, after or join is not None)
    if kind == "par":
        n = draw(st.integers(2, 4))
        branches = [
            Multi(draw(st.lists(LEAF, min_size=2, max_size=3)), draw(st.none() | inner))
            if draw(st.integers(0, 3)) == 3 else draw(inner)
            for _ in range(n)
        ]
        return Par(branches, draw(st.lists(st.booleans(), min_size=n, max_size=n)), join)
    if kind == "fan":
        n = draw(st.integers(2, 3))
        # At most one branch goes straight to the join (when there is one).
        direct = draw(st.integers(-1, n + 2)) if after or join is not None else -1
        branches = [None if i == direct else draw(inner) for i in range(n)]
        return Fan(draw(LEAF), branches, join)
    if kind == "diamond":
        empty = draw(st.sampled_from([None, "yes", "no"] + (["both"] if after else [])))
        yes = None if empty in ("yes", "both") else draw(sub)
        no = None if empty in ("no", "both") else draw(sub)
        return Diamond(draw(st.booleans()), yes, no)
    if kind == "ifend":
        return IfEnd(draw(st.booleans()), draw(st.booleans()), draw(st.sampled_from(["end", "null", "fallthrough"])),
                     draw(sub))
    if kind == "switch":
        labels = ["a", "b", "c"][: draw(st.integers(2, 3))]
        cases = {label: draw(st.none() | sub) if draw(st.integers(0, 3)) == 3 else draw(sub) for label in labels}
        return Switch(draw(st.sampled_from(labels + ["zz"])), cases, draw(sub))
    return Escape(draw(st.booleans()), draw(st.booleans()), draw(st.integers(0, fans - 1)),
                  draw(st.none() | sub) if after else draw(sub))


def assign_ids(root: Any) -> dict[str, int]:
    """Give every step an id, in the order a reader meets them; returns id -> position."""
    order: dict[str, int] = {}
    prefix = {"agent": "a", "print": "t"}

    def name(p: str) -> str:
        sid = f"{p}{len(order) + 1}"
        order[sid] = len(order)
        return sid

    def walk(n: Any) -> None:
        if n is None:
            return
        if isinstance(n, Step):
            n.id = name(prefix[n.kind])
        elif isinstance(n, Gate):
            n.id = name("h")
        elif isinstance(n, Seq):
            for it in n.items:
                walk(it)
        elif isinstance(n, Multi):
            for m in n.steps:
                walk(m)
            walk(n.tail)
        elif isinstance(n, (Par, Fan)):
            if isinstance(n, Par):
                n.id = name("p")
            else:
                walk(n.head)
            for b in n.branches:
                walk(b)
            if n.join is not None:
                n.join.id = name("j")
        elif isinstance(n, Diamond):
            n.id = name("i")
            walk(n.yes)
            walk(n.no)
        elif isinstance(n, IfEnd):
            n.id = name("i")
            if n.how == "end":
                n.end_id = name("e")
            walk(n.other)
        elif isinstance(n, Switch):
            n.id = name("s")
            for b in n.cases.values():
                walk(b)
            walk(n.default)
        elif isinstance(n, Escape):
            n.id = name("x")
            walk(n.other)

    walk(root)
    return order


def children(n: Any) -> list[Any]:
    if isinstance(n, Seq):
        return n.items
    if isinstance(n, Multi):
        return [*n.steps, n.tail]
    if isinstance(n, Par):
        return n.branches
    if isinstance(n, Fan):
        return [n.head, *n.branches]
    if isinstance(n, Diamond):
        return [n.yes, n.no]
    if isinstance(n, (IfEnd, Escape)):
        return [n.other]
    if isinstance(n, Switch):
        return [*n.cases.values(), n.default]
    return []


def nodes(n: Any) -> Iterator[Any]:
    if n is not None:
        yield n
        for c in children(n):
            yield from nodes(c)


def subtree_ids(n: Any) -> set[str]:
    ids: set[str] = set()
    for m in nodes(n):
        if isinstance(m, (Step, Gate, Par, Diamond, IfEnd, Switch, Escape)):
            ids.add(m.id)
        if isinstance(m, IfEnd) and m.end_id:
            ids.add(m.end_id)
        if isinstance(m, (Par, Fan)) and m.join is not None:
            ids.add(m.join.id)
    return ids


def first_id(n: Any) -> str:
    if isinstance(n, Seq):
        return first_id(n.items[0])
    return n.head.id if isinstance(n, Fan) else n.id


def fanouts(root: Any) -> list[Par | Fan]:
    return [m for m in nodes(root) if isinstance(m, (Par, Fan))]


# -- the YAML text -----------------------------------------------------------------------------

HEADER = """\
id: g
name: G
entry_step_id: {entry}
max_total_turns: 1000
state_schema:
  flags: {{type: dict, default: {{}}}}
  log: {{type: "list[str]", reducer: append, default: []}}
  count: {{type: int, reducer: add, default: 0}}
steps:
"""
_PLAIN = re.compile(r"[a-z][a-z_]*[0-9]*")


def fmt(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v if _PLAIN.fullmatch(v) and v not in ("null", "true", "false") else json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(fmt(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {fmt(x)}" for k, x in v.items()) + "}"
    return json.dumps(v)


class Builder:
    """Turns a block tree into step definitions; each block continues at `cont` (None: the
    branch ends there)."""

    def __init__(self) -> None:
        self.steps: dict[str, dict[str, Any]] = {}

    def add(self, sid: str, **fields: Any) -> str:
        self.steps[sid] = {"id": sid, **{k: v for k, v in fields.items() if v is not None}}
        return sid

    def leaf(self, n: Step | Gate, cont: str | None) -> str:
        if isinstance(n, Gate):
            return self.add(n.id, type="human", output_key=f"o_{n.id}", next_step_id=cont)
        if n.kind == "print":
            return self.add(n.id, type="print", print_content=f"text {n.id}", output_key=f"o_{n.id}",
                            next_step_id=cont)
        return self.add(n.id, type="agent", output_key={"own": f"o_{n.id}"}.get(n.key, n.key), next_step_id=cont)

    def build(self, n: Any, cont: str | None, joins: tuple[str | None, ...]) -> str | None:
        if n is None:
            return cont
        if isinstance(n, (Step, Gate)):
            return self.leaf(n, cont)
        if isinstance(n, Seq):
            for it in reversed(n.items):
                cont = self.build(it, cont, joins)
            return cont
        if isinstance(n, (Par, Fan)):
            j = n.join
            meet = n.meet = j.id if j is not None else cont
            heads: list[Any] = []
            for i, b in enumerate(n.branches):
                if isinstance(b, Multi):
                    after = self.build(b.tail, meet, joins + (meet,))
                    for m in b.steps[:-1]:
                        self.leaf(m, None)
                    self.leaf(b.steps[-1], after)
                    heads.append([m.id for m in b.steps])
                else:
                    head = self.build(b, meet, joins + (meet,))
                    heads.append(head if isinstance(n, Fan) or n.bare[i] else [head])
            firsts = [h[0] if isinstance(h, list) else h for h in heads]
            if j is not None and j.kind == "merge":
                keys = [self.steps[h]["output_key"] for h in firsts if h in self.steps
                        and self.steps[h].get("output_key", "").startswith("o_")]
                self.add(j.id, type="merge", input_keys=["flags", *keys], merge_strategy=j.strategy,
                         output_key=f"o_{j.id}", next_step_id=cont)
            elif j is not None:
                self.add(j.id, type="print", print_content=f"joined {j.id}", output_key=f"o_{j.id}",
                         next_step_id=cont)
            if isinstance(n, Par):
                return self.add(n.id, type="parallel", parallel_branches=heads, next_step_id=meet)
            self.leaf(n.head, None)
            self.steps[n.head.id]["next_step_id"] = heads
            return n.head.id
        if isinstance(n, Diamond):
            yes, no = self.build(n.yes, cont, joins), self.build(n.no, cont, joins)
            return self.add(n.id, type="if_else", if_condition=f"state.flags.{n.id}", if_true_step_id=yes,
                            if_false_step_id=no, output_key=f"o_{n.id}")
        if isinstance(n, IfEnd):
            other = self.build(n.other, cont, joins)
            end = self.add(n.end_id, type="end") if n.how == "end" else None
            sides = {n.ends_on: end, not n.ends_on: other}
            return self.add(n.id, type="if_else", if_condition=f"state.flags.{n.id}", if_true_step_id=sides[True],
                            if_false_step_id=sides[False], output_key=f"o_{n.id}",
                            next_step_id=cont if n.how == "fallthrough" else None)
        if isinstance(n, Switch):
            cases = {k: (self.build(b, cont, joins) if b is not None else None) for k, b in n.cases.items()}
            default = self.build(n.default, cont, joins)
            return self.add(n.id, type="switch", switch_expression=f"state.flags.{n.id}", switch_cases=cases,
                            switch_default_step_id=default, output_key=f"o_{n.id}")
        assert isinstance(n, Escape)
        n.target = joins[-1 - n.level]
        other = self.build(n.other, cont, joins)
        sides = {n.on: n.target, not n.on: other}
        return self.add(n.id, type="if_else", if_condition=f"state.flags.{n.id}", if_true_step_id=sides[True],
                        if_false_step_id=sides[False], output_key=f"o_{n.id}")


def flags_of(root: Any) -> dict[str, Any]:
    """The initial `state.flags`: the route every router takes."""
    return {m.id: m.value for m in nodes(root) if isinstance(m, (Diamond, IfEnd, Switch, Escape))}


@dataclass
class Graph:
    root: Any
    order: dict[str, float]
    yaml: str = ""
    flags: dict[str, Any] = field(default_factory=dict)


def render_graph(root: Any, order: dict[str, float]) -> Graph:
    b = Builder()
    entry = b.build(root, None, ())
    lines = [HEADER.format(entry=entry)]
    for sid in sorted(b.steps, key=order.__getitem__):
        lines.append("  - {" + ", ".join(f"{k}: {fmt(v)}" for k, v in b.steps[sid].items()) + "}\n")
    return Graph(root, order, "".join(lines), flags_of(root))


# -- what must run -----------------------------------------------------------------------------

CONT, DEAD, BLOCKED = "cont", "dead", "blocked"


def expected(n: Any, blocked: frozenset[str] = frozenset(), parked: list[str] | None = None,
             ) -> tuple[set[str], str, frozenset[str]]:
    """(steps that run, how the block ends, enclosing joins it reached by jumping), with the
    gates in `blocked` unanswered; the gates where the run then waits are added to `parked`."""
    none: frozenset[str] = frozenset()
    if n is None:
        return set(), CONT, none
    if isinstance(n, Step):
        return {n.id}, CONT, none
    if isinstance(n, Gate):
        if n.id in blocked:
            if parked is not None:
                parked.append(n.id)
            return set(), BLOCKED, none
        return {n.id}, CONT, none
    if isinstance(n, (Seq, Multi)):
        ran: set[str] = set()
        jumps: set[str] = set()
        for it in (n.items if isinstance(n, Seq) else [*n.steps, n.tail]):
            r, how, j = expected(it, blocked, parked)
            ran |= r
            jumps |= j
            if how != CONT:
                return ran, how, frozenset(jumps)
        return ran, CONT, frozenset(jumps)
    if isinstance(n, (Par, Fan)):
        ran = {n.id if isinstance(n, Par) else n.head.id}
        jumps = set()
        arrived = waiting = False
        for b in n.branches:
            r, how, j = expected(b, blocked, parked)
            ran |= r
            waiting |= how == BLOCKED
            arrived |= how == CONT or n.meet in j
            jumps |= j - {n.meet}
        if waiting:
            return ran, BLOCKED, frozenset(jumps)
        if isinstance(n, Par) or arrived:
            return ran | ({n.join.id} if n.join is not None else set()), CONT, frozenset(jumps)
        return ran, DEAD, frozenset(jumps)
    if isinstance(n, Diamond):
        r, how, j = expected(n.yes if n.value else n.no, blocked, parked)
        return {n.id} | r, how, j
    if isinstance(n, IfEnd):
        if n.value == n.ends_on:
            if n.how == "end":
                return {n.id, n.end_id}, DEAD, none
            return {n.id}, (CONT if n.how == "fallthrough" else DEAD), none
        r, how, j = expected(n.other, blocked, parked)
        return {n.id} | r, how, j
    if isinstance(n, Switch):
        if n.value in n.cases and n.cases[n.value] is None:
            return {n.id}, DEAD, none
        r, how, j = expected(n.cases.get(n.value, n.default), blocked, parked)
        return {n.id} | r, how, j
    assert isinstance(n, Escape)
    if n.value == n.on:
        return {n.id}, DEAD, frozenset({n.target} if n.target else ())
    r, how, j = expected(n.other, blocked, parked)
    return {n.id} | r, how, j


# -- running -----------------------------------------------------------------------------------


class Recorder:
    """Executors for every step type used here that log each execution's start and finish.
    Agents answer deterministically; every step may first sleep a little (drawn per example).
    With `block_after`, every execution after that many waits forever."""

    def __init__(self, sleeps: list[float], block_after: int | None = None) -> None:
        self.sleeps = sleeps
        self.block_after = block_after
        self.calls = 0
        self.events: list[tuple[str, str]] = []
        self.stuck = asyncio.Event()

    def started(self) -> list[str]:
        return [sid for what, sid in self.events if what == "start"]

    def index(self, what: str, sid: str) -> int:
        return self.events.index((what, sid))

    def executors(self) -> dict[str, Any]:
        base = default_executors()

        async def agent(ctx: Any) -> StepResult:
            spec = ctx.step.spec
            return StepResult(output={"count": 1, "log": spec.id}.get(spec.output_key, f"out {spec.id}"))

        base["agent"] = agent
        return {t: self.wrap(base[t]) for t in ("agent", "print", "merge", "parallel", "if_else", "switch", "end",
                                                "human")}

    def wrap(self, inner: Any) -> Any:
        async def run(ctx: Any) -> StepResult:
            sid = ctx.step.spec.id
            self.calls += 1
            if self.block_after is not None and self.calls > self.block_after:
                self.stuck.set()
                await asyncio.Event().wait()
            self.events.append(("start", sid))
            delay = self.sleeps[int(sid[1:]) % len(self.sleeps)]
            if delay:
                await asyncio.sleep(delay)
            result = await inner(ctx)
            self.events.append(("end", sid))
            return result

        return run


async def open_engine(url: str, sandbox: Path, graph_yaml: str, executors: dict[str, Any]) -> Any:
    """An engine built the way the `make_engine` fixture builds one, owned by one example (the
    fixture would close it again at teardown)."""
    from engine.compile import compile_catalog
    from engine.loader import Catalog, load_text
    from engine.runtime import Engine
    from engine.services import build_services
    from engine.settings import Settings
    from engine.store.sql import SQLStore

    services = build_services(Settings(database_url=url, sandbox_root=str(sandbox)))
    engine = Engine(SQLStore(url), services, executors=executors)
    await engine.open()
    catalog = Catalog()
    load_text(graph_yaml, "inline.yaml", catalog)
    assert not catalog.errors, [str(p) for p in catalog.errors]
    for result in compile_catalog(catalog, tools=set(services.tools.names())).values():
        assert result.graph is not None, [str(p) for p in result.problems]
        await engine.add_graph(result.graph)
    return engine


class Engines:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.open: list[Any] = []

    async def __aenter__(self) -> "Engines":
        self.root.mkdir(parents=True)
        return self

    async def make(self, db: str, graph: Graph, rec: Recorder) -> Any:
        engine = await open_engine(f"sqlite:///{self.root / db}", self.root / "sandbox", graph.yaml, rec.executors())
        self.open.append(engine)
        return engine

    async def close(self, engine: Any) -> None:
        self.open.remove(engine)
        await engine.close()

    async def __aexit__(self, *exc: Any) -> None:
        for engine in self.open:
            await engine.close()


def history(result: Any) -> list[str]:
    assert all(h.status == "completed" for h in result.step_history), [(h.step_id, h.status, h.error)
                                                                        for h in result.step_history]
    return [h.step_id for h in result.step_history]


def joins_wait_for_their_branches(graph: Graph, rec: Recorder | None, order: list[str]) -> None:
    """No join starts before every step of its branches that ran has finished (executor log),
    and none completes before them (step_history order)."""
    for fo in fanouts(graph.root):
        j = fo.meet
        if j not in order:
            continue
        inside = [sid for b in fo.branches for sid in subtree_ids(b) if sid in order]
        for sid in inside:
            assert order.index(sid) < order.index(j), f"join {j} completed before {sid}: {order}"
            if rec is not None and ("end", sid) in rec.events:
                assert rec.index("end", sid) < rec.index("start", j), f"join {j} started before {sid} finished"


def normal(state: dict[str, Any]) -> dict[str, Any]:
    out = dict(state)
    out["log"] = sorted(out.get("log") or [])
    return out


# -- strategies ----------------------------------------------------------------------------------


@st.composite
def graphs(draw: Any) -> Graph:
    root = draw(blocks(3, 0))
    return render_graph(root, assign_ids(root))


def gate_slots(n: Any, out: list[tuple[str, Any, Any]]) -> None:
    """Every place a gate can go: before a block, or among the members of a multi-step branch."""
    if isinstance(n, Seq):
        for i, it in enumerate(n.items):
            out.append(("item", n.items, i))
            gate_slots(it, out)
    elif isinstance(n, Multi):
        out.extend(("member", n.steps, i) for i in range(len(n.steps) + 1))
        if n.tail is not None:
            out.append(("attr", n, "tail"))
            gate_slots(n.tail, out)
    elif isinstance(n, (Par, Fan)):
        for i, b in enumerate(n.branches):
            if isinstance(b, Multi):
                gate_slots(b, out)
            elif b is not None:
                out.append(("item", n.branches, i))
                gate_slots(b, out)
    elif isinstance(n, (Diamond, IfEnd, Escape)):
        for a in ("yes", "no") if isinstance(n, Diamond) else ("other",):
            if getattr(n, a) is not None:
                out.append(("attr", n, a))
                gate_slots(getattr(n, a), out)
    elif isinstance(n, Switch):
        for k, b in n.cases.items():
            if b is not None:
                out.append(("item", n.cases, k))
                gate_slots(b, out)
        out.append(("attr", n, "default"))
        gate_slots(n.default, out)


@st.composite
def gated_graphs(draw: Any) -> tuple[Graph, Graph]:
    """The same graph without and with one or two human gates (`h0`, `h1`), each placed before
    a random block or among the members of a multi-step branch."""
    root = Seq([draw(blocks(3, 0))])
    order: dict[str, float] = dict(assign_ids(root))
    gated = copy.deepcopy(root)
    for i in range(draw(st.integers(1, 2))):
        slots: list[tuple[str, Any, Any]] = []
        gate_slots(gated, slots)
        how, holder, key = slots[draw(st.integers(0, len(slots) - 1))]
        gate = Gate(f"h{i}")
        if how == "member":
            holder.insert(key, gate)
            place = order[holder[key + 1].id] - 0.3 if key + 1 < len(holder) else order[holder[key - 1].id] + 0.3
        else:
            child = holder[key] if how == "item" else getattr(holder, key)
            place = order[first_id(child)] - 0.3
            if how == "item":
                holder[key] = Seq([gate, child])
            else:
                setattr(holder, key, Seq([gate, child]))
        order[gate.id] = place
    return render_graph(root, order), render_graph(gated, order)


SLEEPS = st.lists(st.sampled_from([0.0, 0.0, 0.001, 0.003]), min_size=7, max_size=7)
SETTINGS = settings(max_examples=70, deadline=None, database=None, phases=[
    Phase.explicit, Phase.generate, Phase.shrink], suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])


# -- the properties ------------------------------------------------------------------------------


@SETTINGS
@given(graph=graphs(), sleeps=SLEEPS)
def test_random_acyclic_graphs_run_exactly_the_chosen_steps_once(tmp_path: Path, graph: Graph,
                                                                  sleeps: list[float]) -> None:
    note(graph.yaml + f"flags: {graph.flags}\nsleeps: {sleeps}")

    async def body() -> None:
        async with Engines(tmp_path / uuid.uuid4().hex) as engines:
            rec = Recorder(sleeps)
            engine = await engines.make("a.db", graph, rec)
            result = await asyncio.wait_for(engine.run("g", state={"flags": graph.flags}), 20)
            assert result.status == "completed", result.response
            order = history(result)
            want, _, _ = expected(graph.root)
            assert sorted(order) == sorted(want), f"ran {sorted(order)}, expected {sorted(want)}"
            assert sorted(rec.started()) == sorted(want)
            joins_wait_for_their_branches(graph, rec, order)

    asyncio.run(body())


async def answer_gates(engines: Engines, engine: Any, graph: Graph, result: Any, sleeps: list[float],
                       picks: list[int], elsewhere: bool, db: str) -> tuple[Any, Any]:
    """Answer the run's gates one at a time until it stops pausing. At every pause the run waits
    at exactly the gates the model says it reached, and everything else that could run has run.
    Returns the final result and the engine that drove it."""
    gates = frozenset(sid for sid in graph.order if sid.startswith("h"))
    answered: set[str] = set()
    while True:
        parked: list[str] = []
        before, how, _ = expected(graph.root, gates - answered, parked)
        if how != BLOCKED:
            return result, engine
        assert result.status == "paused", (result.status, result.response, f"expected to wait at {parked}")
        row = await engine.store.get_run(result.run_id)
        assert sorted(json.loads(row["gate"])) == sorted(parked)
        assert result.human_input_required.step_id in parked
        at_pause = history(result)
        assert sorted(at_pause) == sorted(before), f"at the pause ran {sorted(at_pause)}, expected {sorted(before)}"
        if elsewhere:  # a paused run survives its engine and resumes on another one
            await engines.close(engine)
            engine = await engines.make(db, graph, Recorder(sleeps))
        pick = sorted(parked)[picks[len(answered)] % len(parked)]
        await engine.resume(result.run_id, "ok", step_id=pick)
        answered.add(pick)
        result = await asyncio.wait_for(engine.wait(result.run_id), 20)


PICKS = st.lists(st.integers(0, 1), min_size=2, max_size=2)


@SETTINGS
@given(pair=gated_graphs(), sleeps=SLEEPS, picks=PICKS, elsewhere=st.booleans())
def test_gates_pause_only_their_own_downstream_and_resuming_finishes_the_same_steps(
        tmp_path: Path, pair: tuple[Graph, Graph], sleeps: list[float], picks: list[int], elsewhere: bool) -> None:
    plain, gated = pair
    gates = frozenset(sid for sid in gated.order if sid.startswith("h"))
    note(gated.yaml + f"flags: {gated.flags}\nsleeps: {sleeps}\nanswer picks: {picks}\n"
         f"resumed on another engine: {elsewhere}")

    async def body() -> None:
        async with Engines(tmp_path / uuid.uuid4().hex) as engines:
            free = await (await engines.make("free.db", plain, Recorder(sleeps))).run("g", state={"flags": plain.flags})
            assert free.status == "completed", free.response
            free_ran = history(free)

            engine = await engines.make("gated.db", gated, Recorder(sleeps))
            result = await asyncio.wait_for(engine.run("g", state={"flags": gated.flags}), 20)
            result, _ = await answer_gates(engines, engine, gated, result, sleeps, picks, elsewhere, "gated.db")
            assert result.status == "completed", (result.status, result.response)
            order = history(result)
            want, _, _ = expected(gated.root)
            assert sorted(order) == sorted(want), f"ran {sorted(order)}, expected {sorted(want)}"
            assert sorted(set(order) - gates) == sorted(free_ran)
            joins_wait_for_their_branches(gated, None, order)

    asyncio.run(body())


async def cut_and_recover(engines: Engines, graph: Graph, sleeps: list[float], k: int,
                          linger: float) -> tuple[str, Any, list[str], Recorder]:
    """Start the run on an engine whose executions after the k-th never finish, close that
    engine once it is stuck (or the run stopped), and recover the run on a second engine over
    the same database. Returns the run id, the second engine, the steps whose completion was
    committed before the close, and the second engine's recorder."""
    first = Recorder(sleeps, block_after=k)
    engine = await engines.make("cut.db", graph, first)
    run_id = await engine.start("g", state={"flags": graph.flags})
    waiting = asyncio.ensure_future(engine.wait(run_id))
    stuck = asyncio.ensure_future(first.stuck.wait())
    await asyncio.wait([waiting, stuck], timeout=20, return_when=asyncio.FIRST_COMPLETED)
    if stuck.done() and linger:
        await asyncio.sleep(linger)
    await engines.close(engine)
    for fut in (waiting, stuck):
        fut.cancel()
    await asyncio.gather(waiting, stuck, return_exceptions=True)

    second = Recorder(sleeps)
    engine2 = await engines.make("cut.db", graph, second)
    done_before = [r["step_id"] for r in await engine2.store.step_records(run_id) if r["status"] == "completed"]
    left_running = (await engine2.store.get_run(run_id))["status"] == "running"
    recovered = await engine2.recover()
    assert (run_id in recovered) == left_running, (recovered, left_running)
    return run_id, engine2, done_before, second


@SETTINGS
@given(graph=graphs(), sleeps=SLEEPS, k=st.integers(0, 60), linger=st.sampled_from([0.0, 0.001, 0.004]))
def test_a_run_whose_engine_closed_mid_run_recovers_to_the_same_state(
        tmp_path: Path, graph: Graph, sleeps: list[float], k: int, linger: float) -> None:
    want, _, _ = expected(graph.root)
    k %= len(want)  # the engine is closed before the run can finish
    note(graph.yaml + f"flags: {graph.flags}\nsleeps: {sleeps}\nblock after {k} executions, linger {linger}")

    async def body() -> None:
        async with Engines(tmp_path / uuid.uuid4().hex) as engines:
            whole = await (await engines.make("whole.db", graph, Recorder(sleeps))).run("g", state={"flags": graph.flags})
            assert whole.status == "completed", whole.response

            run_id, engine2, done_before, second = await cut_and_recover(engines, graph, sleeps, k, linger)
            result = await asyncio.wait_for(engine2.wait(run_id), 20)
            assert result.status == "completed", (result.status, result.response)
            order = history(result)
            assert sorted(order) == sorted(want), f"ran {sorted(order)}, expected {sorted(want)}"
            again = set(done_before) & set(second.started())
            assert not again, f"completed before the close, ran again after recovery: {sorted(again)}"
            assert sorted(done_before + second.started()) == sorted(want)
            assert normal(result.shared_state) == normal(whole.shared_state)

    asyncio.run(body())


@SETTINGS
@given(pair=gated_graphs(), sleeps=SLEEPS, k=st.integers(0, 60), linger=st.sampled_from([0.0, 0.001, 0.004]),
       picks=PICKS)
def test_a_gated_run_whose_engine_closed_mid_run_pauses_at_the_same_gates_and_ends_the_same(
        tmp_path: Path, pair: tuple[Graph, Graph], sleeps: list[float], k: int, linger: float,
        picks: list[int]) -> None:
    _, gated = pair
    gates = frozenset(sid for sid in gated.order if sid.startswith("h"))
    want, _, _ = expected(gated.root)
    k %= len(want)
    note(gated.yaml + f"flags: {gated.flags}\nsleeps: {sleeps}\nblock after {k} executions, linger {linger}\n"
         f"answer picks: {picks}")

    async def body() -> None:
        async with Engines(tmp_path / uuid.uuid4().hex) as engines:
            engine = await engines.make("whole.db", gated, Recorder(sleeps))
            whole = await engine.run("g", state={"flags": gated.flags})
            whole, _ = await answer_gates(engines, engine, gated, whole, sleeps, picks, False, "whole.db")
            assert whole.status == "completed", whole.response

            run_id, engine2, done_before, second = await cut_and_recover(engines, gated, sleeps, k, linger)
            result = await asyncio.wait_for(engine2.wait(run_id), 20)
            result, _ = await answer_gates(engines, engine2, gated, result, sleeps, picks, False, "cut.db")
            assert result.status == "completed", (result.status, result.response)
            order = history(result)
            assert sorted(order) == sorted(want), f"ran {sorted(order)}, expected {sorted(want)}"
            again = set(done_before) & set(second.started())
            assert not again, f"completed before the close, ran again after recovery: {sorted(again)}"
            rerun = [sid for sid in second.started() if sid not in gates]
            assert len(rerun) == len(set(rerun)), f"ran twice after recovery: {rerun}"
            assert (set(done_before) | set(rerun)) - gates == want - gates
            assert normal(result.shared_state) == normal(whole.shared_state)

    asyncio.run(body())
