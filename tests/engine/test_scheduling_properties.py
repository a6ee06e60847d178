"""Scheduling properties over random graphs (SPEC §3.2, §3.3, §3.5).

Graphs are built from nested blocks — sequences, `parallel` steps, list fan-outs, if/else
diamonds whose branches may end early — with crossings between the branches of one fan-out (an
if/else or a second `next_step_id` that jumps into a later branch), so branches meet at steps
that another path can go around. Every router reads a flag fixed when the run starts, so which
steps must run follows from the graph alone: those reachable along the chosen routes. The
engine must run each of them exactly once and nothing else — also when a gate holds one branch,
and when the engine is closed mid-run and another one recovers the run.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from orch.steps.base import StepResult
from tests.conftest import open_engine, pg_schema_url

EXAMPLES = int(os.environ.get("ORCH_PROPERTY_EXAMPLES", "40"))
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 40,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

Exit = tuple[dict[str, Any], str]  # a step and the field that must point at what follows it


@dataclass
class Graph:
    steps: list[dict[str, Any]] = field(default_factory=list)
    flags: dict[str, bool] = field(default_factory=dict)
    delays: dict[str, int] = field(default_factory=dict)
    gates: list[str] = field(default_factory=list)
    queued: dict[str, str] = field(default_factory=dict)  # multi-step branch: step → the next one
    n: int = 0

    def add(self, prefix: str, **fields: Any) -> dict[str, Any]:
        self.n += 1
        step = {"id": f"{prefix}{self.n}", **fields}
        self.steps.append(step)
        return step

    def __repr__(self) -> str:
        return f"Graph(flags={self.flags}, delays={self.delays}, text={self.text()})"

    def text(self) -> str:
        schema = {"trail": {"type": "list[str]", "reducer": "append"},
                  "answers": {"type": "list", "reducer": "append"}}
        schema.update({f: {"type": "bool", "default": False} for f in self.flags})
        return json.dumps({"id": "prop", "name": "Property", "max_total_turns": 1000,
                           "state_schema": schema, "steps": self.steps})

    def targets(self, step: dict[str, Any], routed: bool) -> list[str]:
        """Where a step can go (routed: where it goes, given the flags)."""
        out: list[str] = []
        if step["type"] == "if_else":
            flag = step["if_condition"].removeprefix("state.")
            if routed:
                return [step["if_true_step_id"] if self.flags[flag] else step["if_false_step_id"]]
            return [step["if_true_step_id"], step["if_false_step_id"]]
        if step["id"] in self.queued:
            return [self.queued[step["id"]]]
        if step["type"] == "parallel":
            out += [b[0] if isinstance(b, list) else b for b in step["parallel_branches"]]
        nxt = step.get("next_step_id")
        out += nxt if isinstance(nxt, list) else [nxt] if nxt else []
        return out

    def reach(self, starts: list[str], routed: bool) -> set[str]:
        by_id = {s["id"]: s for s in self.steps}
        seen: set[str] = set()
        todo = list(starts)
        while todo:
            sid = todo.pop()
            if sid not in seen:
                seen.add(sid)
                todo += self.targets(by_id[sid], routed)
        return seen

    def reach_avoiding(self, starts: list[str], avoid: str) -> set[str]:
        by_id = {s["id"]: s for s in self.steps}
        seen: set[str] = set()
        todo = [s for s in starts if s != avoid]
        while todo:
            sid = todo.pop()
            if sid not in seen:
                seen.add(sid)
                todo += [t for t in self.targets(by_id[sid], routed=False) if t != avoid]
        return seen

    def must_run(self) -> set[str]:
        return self.reach([self.steps[0]["id"]], routed=True)

    def downstream(self, sid: str) -> set[str]:
        by_id = {s["id"]: s for s in self.steps}
        return self.reach(self.targets(by_id[sid], routed=False), routed=False)


@st.composite
def graphs(draw: st.DrawFn, gates: int = 0) -> Graph:
    g = Graph()
    budget = {"gates": gates}

    def leaf() -> tuple[str, list[Exit], list[str], list[dict[str, Any]]]:
        if budget["gates"] and draw(st.integers(0, 3)) == 0:
            budget["gates"] -= 1
            step = g.add("g", type="human", output_key="answers",
                         human_fields=[{"name": "ok", "type": "boolean"}])
            g.gates.append(step["id"])
            return step["id"], [(step, "next_step_id")], [step["id"]], []
        step = g.add("s", type="agent", output_key="trail")
        g.delays[step["id"]] = draw(st.sampled_from([0, 0, 1, 3]))
        return step["id"], [(step, "next_step_id")], [step["id"]], [step]

    def if_else(depth: int) -> tuple[str, list[Exit], list[str], list[dict[str, Any]]]:
        flag = f"f{len(g.flags)}"
        g.flags[flag] = draw(st.booleans())
        router = g.add("r", type="if_else", if_condition=f"state.{flag}")
        head, exits, nodes, sources = sequence(depth + 1)
        router["if_true_step_id"] = head
        if draw(st.booleans()):
            other, more, nodes2, sources2 = sequence(depth + 1)
            router["if_false_step_id"] = other
            exits, nodes, sources = exits + more, nodes + nodes2, sources + sources2
        else:  # this way the branch ends early
            router["if_false_step_id"] = g.add("e", type="end")["id"]
        return router["id"], exits, [router["id"], *nodes], sources

    def fan_out(depth: int) -> tuple[str, list[Exit], list[str], list[dict[str, Any]]]:
        parallel = draw(st.booleans())
        opener = g.add("p", type="parallel") if parallel else g.add("f", type="agent", output_key="trail")
        branches = [queue() if parallel and draw(st.integers(0, 3)) == 0 else sequence(depth + 1)
                    for _ in range(draw(st.integers(2, 3)))]
        join = g.add("j", type="agent", output_key="trail")
        if parallel:
            opener["parallel_branches"] = [b[0] for b in branches]
            opener["next_step_id"] = join["id"]
        else:
            opener["next_step_id"] = [b[0] for b in branches]
        for _, exits, _, _ in branches:
            link(exits, join["id"])
        for i, (_, _, _, sources) in enumerate(branches):
            for _, _, nodes, _ in branches[i + 1:]:
                if not sources or not draw(st.booleans()):
                    continue
                source = draw(st.sampled_from(sources))
                target = draw(st.sampled_from(nodes))
                if source["type"] != "agent" or not isinstance(source.get("next_step_id"), str):
                    continue  # already a crossing
                if draw(st.booleans()):  # an if/else that may jump into the later branch
                    flag = f"f{len(g.flags)}"
                    g.flags[flag] = draw(st.booleans())
                    source.update(type="if_else", if_condition=f"state.{flag}", if_true_step_id=target,
                                  if_false_step_id=source.pop("next_step_id"))
                    del source["output_key"]
                else:  # a second successor: the branch splits, one part goes over
                    source["next_step_id"] = [source["next_step_id"], target]
        return opener["id"], [(join, "next_step_id")], [opener["id"], join["id"]], [join]

    def queue() -> tuple[Any, list[Exit], list[str], list[dict[str, Any]]]:
        """A multi-step branch: its steps run in list order, then the last one's successor."""
        steps = [g.add("q", type="agent", output_key="trail") for _ in range(draw(st.integers(2, 3)))]
        for step, after in zip(steps, steps[1:]):
            g.queued[step["id"]] = after["id"]
        ids = [s["id"] for s in steps]
        return ids, [(steps[-1], "next_step_id")], ids, []

    def sequence(depth: int) -> tuple[str, list[Exit], list[str], list[dict[str, Any]]]:
        kinds = ["leaf", "leaf"] + (["if"] if depth < 3 else []) + (["fan"] if depth < 2 else [])
        parts = []
        for _ in range(draw(st.integers(1, 3))):
            kind = draw(st.sampled_from(kinds))
            parts.append(leaf() if kind == "leaf" else if_else(depth) if kind == "if" else fan_out(depth))
        for (_, exits, _, _), (head, _, _, _) in zip(parts, parts[1:]):
            link(exits, head)
        return (parts[0][0], parts[-1][1], [n for p in parts for n in p[2]], [s for p in parts for s in p[3]])

    def link(exits: list[Exit], target: str) -> None:
        for step, name in exits:
            step[name] = target

    sequence(0)
    return g


def agent_executor(g: Graph, calls: Counter[str]) -> Any:
    async def run(ctx: Any) -> StepResult:
        sid = ctx.step.spec.id
        calls[sid] += 1
        if g.delays.get(sid):
            await asyncio.sleep(g.delays[sid] / 1000)
        return StepResult(output=sid)

    return run


def ran(result: Any) -> Counter[str]:
    return Counter(h.step_id for h in result.step_history if h.status == "completed")


async def _answer_all(engine: Any, result: Any) -> Any:
    while result.status == "paused":
        await engine.resume(result.run_id, {"ok": "yes"})
        result = await engine.wait(result.run_id)
    return result


def _scenario(g: Graph, body: Any) -> None:
    note(repr(g))
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(asyncio.wait_for(body(Path(tmp)), 60))


@PROPERTY
@given(graphs())
def test_every_chosen_step_runs_exactly_once(g: Graph) -> None:
    async def body(tmp: Path) -> None:
        calls: Counter[str] = Counter()
        engine = await open_engine(f"sqlite:///{tmp / 'p.db'}", g.text(), sandbox=tmp,
                                   executors={"agent": agent_executor(g, calls)})
        try:
            result = await engine.run("prop", "", g.flags)
        finally:
            await engine.close()
        must = g.must_run()
        assert result.status == "completed", result.response
        assert ran(result) == Counter(must)
        assert sorted(result.shared_state.get("trail", [])) == sorted(
            s["id"] for s in g.steps if s["id"] in must and s.get("output_key") == "trail")
        assert all(n == 1 for n in calls.values()), calls

    _scenario(g, body)


@PROPERTY
@given(graphs(gates=1))
def test_a_gate_holds_only_what_lies_after_it(g: Graph) -> None:
    async def body(tmp: Path) -> None:
        engine = await open_engine(f"sqlite:///{tmp / 'p.db'}", g.text(), sandbox=tmp,
                                   executors={"agent": agent_executor(g, Counter())})
        try:
            first = await engine.run("prop", "", g.flags)
            must = g.must_run()
            gate = next((s for s in g.gates if s in must), None)
            if gate is None:
                assert first.status == "completed"
            else:
                assert (first.status, first.human_input_required.step_id) == ("paused", gate)
                held = g.downstream(gate) | {gate}
                done_before = set(ran(first))
                assert not done_before & held
                # Everything else that must run has run, except the joins of fan-outs whose
                # branches lead to the gate (they wait for its branch) and what follows them.
                waits: set[str] = set()
                for step in engine.graphs["prop"].steps.values():
                    fo = step.fanout
                    if fo is not None and fo.join and gate in g.reach_avoiding([b[0] for b in fo.branches], fo.join):
                        waits |= {fo.join} | g.downstream(fo.join)
                assert must - held - done_before <= waits
            final = await _answer_all(engine, first)
        finally:
            await engine.close()
        assert final.status == "completed", final.response
        assert ran(final) == Counter(must)

    _scenario(g, body)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
@PROPERTY
@given(g=graphs(gates=1), stop_at=st.integers(1, 12))
def test_a_run_recovered_by_another_engine_ends_as_an_uninterrupted_one(backend: str, g: Graph, stop_at: int) -> None:
    async def body(tmp: Path) -> None:
        url = f"sqlite:///{tmp / 'p.db'}" if backend == "sqlite" else pg_url
        stopped = asyncio.Event()
        calls = 0

        async def stops(ctx: Any) -> StepResult:
            nonlocal calls
            calls += 1
            if calls == stop_at:
                stopped.set()
                await asyncio.Event().wait()  # in flight when the engine closes
            return StepResult(output=ctx.step.spec.id)

        first = await open_engine(url, g.text(), sandbox=tmp, executors={"agent": stops})
        try:
            run_id = await first.start("prop", "", g.flags)
            waiting = asyncio.ensure_future(first.wait(run_id))
            await asyncio.wait([waiting, asyncio.ensure_future(stopped.wait())],
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            await first.close()
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        second = await open_engine(url, g.text(), sandbox=tmp, executors={"agent": agent_executor(g, Counter())})
        try:
            await second.recover()
            final = await _answer_all(second, await second.wait(run_id))
        finally:
            await second.close()
        assert final.status == "completed", final.response
        assert ran(final) == Counter(g.must_run())
        assert sorted(final.shared_state.get("trail", [])) == sorted(
            s["id"] for s in g.steps if s["id"] in g.must_run() and s.get("output_key") == "trail")

    if backend == "sqlite":
        _scenario(g, body)
        return
    pg_url, drop = pg_schema_url()  # a fresh schema per example
    try:
        _scenario(g, body)
    finally:
        drop()
