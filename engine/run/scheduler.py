"""Which steps run next: pure bookkeeping over the compiled graph, no I/O, no clocks, no awaits.

A run's progress is a `Frontier` of tokens. A token stands at a step that is ready or running.
When a step with fan-out finishes, a `Scope` opens: one token per branch, all counted against
the join step. A branch that reaches the join arrives; a branch that ends elsewhere (no
successor, a route to null) dies. When every branch has arrived or died, the join becomes ready
(for a `parallel` step always; for a list `next_step_id` only if some branch arrived), so joins
never wait for dead branches. Tokens parked at human steps are `gates`.

Branches may also meet before the join, at any step with several forward predecessors (SPEC
§3.2 calls it a join too). A token that reaches such a step waits there while any other live
token — ready, running, parked at a gate, or waiting at an earlier meeting step — can still
reach it; then the tokens waiting there merge into one and the step runs once. With no other
branch about, the wait ends at once, so a step after an if/else diamond runs as usual.

The frontier is plain data and is stored with every checkpoint, so a restarted engine resumes
exactly the tokens that were ready or in flight.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import msgspec

from orch.definition.compile import CompiledGraph, CompiledStep
from orch.run.model import StepRecord


class Token(msgspec.Struct):
    id: int
    step_id: str
    scopes: tuple[int, ...] = ()
    then: tuple[str, ...] = ()  # queued steps of a multi-step parallel branch
    skips: tuple[str, ...] = ()  # steps the loop guard skipped on the way here, in a row


class Scope(msgspec.Struct):
    id: int
    join: str | None
    pending: int
    parent: tuple[int, ...]
    parallel: bool
    arrived: int = 0
    origin: str = ""  # the fan-out step that opened it


class Frontier(msgspec.Struct):
    tokens: dict[int, Token] = {}
    scopes: dict[int, Scope] = {}
    gates: list[Token] = []
    iterations: dict[str, int] = {}
    next_id: int = 1
    waiting: list[Token] = []  # tokens held where branches meet, until no other can arrive

    def make_token(self, step_id: str, scopes: tuple[int, ...], then: tuple[str, ...] = (),
                   skips: tuple[str, ...] = ()) -> Token:
        """A token with a fresh id, not yet ready (the caller puts it where it stands)."""
        tok = Token(self.next_id, step_id, scopes, then, skips)
        self.next_id += 1
        return tok

    def new_token(self, step_id: str, scopes: tuple[int, ...], then: tuple[str, ...] = (),
                  skips: tuple[str, ...] = ()) -> Token:
        tok = self.make_token(step_id, scopes, then, skips)
        self.tokens[tok.id] = tok
        return tok

    def open_scopes(self, scopes: tuple[int, ...]) -> tuple[int, ...]:
        """Those of `scopes` whose fan-out has not finished yet."""
        return tuple(s for s in scopes if s in self.scopes)


def start(graph: CompiledGraph) -> Frontier:
    f = Frontier()
    f.new_token(graph.entry, ())
    return f


def targets(step: CompiledStep, route: str | None) -> tuple[str, ...]:
    """Where a finished step goes, given the route its executor chose: where its kind routes
    it, else its next step (at most one: a step with several next steps has a fan-out)."""
    chosen = step.kind.route(step, route)
    return step.next[:1] if chosen is None else chosen


def advance(graph: CompiledGraph, f: Frontier, token: Token, route: str | None, *, skipped: bool = False) -> list[Token]:
    """Retire `token` after its step finished (or was skipped by the loop guard); return the new
    tokens that are now ready."""
    del f.tokens[token.id]
    step = graph.steps[token.step_id]
    new: list[Token] = []
    if token.then and (chosen := step.kind.route(step, route)) is not None and chosen != token.then[:1]:
        # A router inside a multi-step branch chose another way: the branch follows it.
        if not chosen:
            _end(graph, f, token.scopes, new)
        for target in chosen:
            _move(graph, f, token.scopes, target, (), new)
    elif token.then:
        _move(graph, f, token.scopes, token.then[0], token.then[1:], new)
    elif step.fanout is not None and not skipped:
        fo = step.fanout
        if not fo.branches:
            if fo.join:
                _move(graph, f, token.scopes, fo.join, (), new)
            else:
                _end(graph, f, token.scopes, new)
        else:
            scope = Scope(f.next_id, fo.join, len(fo.branches), token.scopes, fo.parallel, origin=step.spec.id)
            f.next_id += 1
            f.scopes[scope.id] = scope
            for branch in fo.branches:
                if branch[0] == fo.join and len(branch) == 1:
                    # A branch that is the join itself (next_step_id: [join, other]) has arrived.
                    _settle(graph, f, scope, arrived=True, new=new)
                else:
                    _move(graph, f, token.scopes + (scope.id,), branch[0], branch[1:], new)
    elif skipped:
        # A skip leads to the step's next_step_id. A run of skips that comes back to a step it
        # already skipped ends the branch (two exhausted steps would hand the token back and forth).
        chain = token.skips + (step.spec.id,)
        nexts = tuple(t for t in step.next if t not in chain)
        live = f.open_scopes(token.scopes)
        if len(nexts) > 1 and live:  # a skipped fan-out: its targets are branches of this scope
            f.scopes[live[-1]].pending += len(nexts) - 1
        if not nexts:
            _end(graph, f, token.scopes, new)
        for target in nexts:
            _move(graph, f, token.scopes, target, (), new, chain)
    else:
        nexts = targets(step, route)
        if not nexts:
            _end(graph, f, token.scopes, new)
        for target in nexts:
            _move(graph, f, token.scopes, target, (), new)
    while f.waiting and _release(graph, f, new):
        pass
    return new


def park(graph: CompiledGraph, f: Frontier, token: Token) -> list[Token]:
    """The token reached a human step: hold it until someone answers. When a token already
    waits there (a fan-out inside a loop came round again), the two merge and the gate asks
    once. Returns the tokens this sets free (an inner fan-out the merge completed, steps that
    were waiting on each other)."""
    del f.tokens[token.id]
    new: list[Token] = []
    other = next((t for t in f.gates if t.step_id == token.step_id), None)
    if other is None:
        f.gates.append(token)
    else:
        f.gates.remove(other)
        f.gates.append(_merge(graph, f, [other, token], new))
    # Steps stuck waiting on each other go now if no gate holds them (nothing else runs).
    while f.waiting and _release(graph, f, new):
        pass
    return new


def unpark(f: Frontier, step_id: str) -> Token | None:
    for i, tok in enumerate(f.gates):
        if tok.step_id == step_id:
            del f.gates[i]
            f.tokens[tok.id] = tok
            return tok
    return None


def _move(graph: CompiledGraph, f: Frontier, scopes: tuple[int, ...], target: str, then: tuple[str, ...],
          new: list[Token], skips: tuple[str, ...] = ()) -> None:
    scopes = f.open_scopes(scopes)
    for depth in range(len(scopes) - 1, -1, -1):
        scope = f.scopes[scopes[depth]]
        if scope.join == target:
            if depth == len(scopes) - 1:
                _settle(graph, f, scope, arrived=True, new=new)
                return
            # A branch of an inner fan-out jumps straight to an outer join. The outer branch
            # that holds the inner fan-out is not done until the inner fan-out is: record the
            # arrival now, and let the inner scope settle the outer branch (once) when it ends.
            scope.arrived += 1
            _settle(graph, f, f.scopes[scopes[-1]], arrived=False, new=new)
            return
    if not then:  # a way into a multi-step branch part way down: go on down its list
        then = graph.steps[target].queue
    if graph.steps[target].merge_mask:
        f.waiting.append(f.make_token(target, scopes, then, skips))
        return
    new.append(f.new_token(target, scopes, then, skips))


def _end(graph: CompiledGraph, f: Frontier, scopes: tuple[int, ...], new: list[Token]) -> None:
    live = f.open_scopes(scopes)
    if live:
        _settle(graph, f, f.scopes[live[-1]], arrived=False, new=new)


def _settle(graph: CompiledGraph, f: Frontier, scope: Scope, *, arrived: bool, new: list[Token]) -> None:
    if scope.id not in f.scopes:
        return
    scope.pending -= 1
    scope.arrived += arrived
    if scope.pending > 0:
        return
    del f.scopes[scope.id]
    if scope.join is not None and (scope.arrived or scope.parallel):
        _move(graph, f, scope.parent, scope.join, (), new)
    else:
        _end(graph, f, scope.parent, new)


def _release(graph: CompiledGraph, f: Frontier, new: list[Token]) -> bool:
    """Let waiting tokens go where no other live token can still arrive: earliest meeting step
    first, since a step released now may in turn hold back a later one. True if any went.

    Live means a token that is ready, running, parked at a gate or waiting at another meeting
    step, and the join of every open fan-out (its branches may end without an edge to it, and
    still the join runs when they are done; the join may be this very step) — except the
    fan-outs the waiting tokens themselves are in, which cannot finish before those tokens move
    on. If nothing runs any more and the waiting steps wait on each other (a fan-out whose
    branches run past its own join can do that), the earliest one not waiting for a gate goes."""
    steps = graph.steps
    live = 0
    for tok in (*f.tokens.values(), *f.gates, *f.waiting):
        live |= steps[tok.step_id].bit
    at: dict[str, list[Token]] = {}
    for tok in f.waiting:
        at.setdefault(tok.step_id, []).append(tok)
    order = sorted(at, key=lambda sid: steps[sid].bit)
    go = [sid for sid in order
          if not live & steps[sid].merge_mask and not _joins_reach(graph, f, set(f.scopes), at[sid])]
    if not go and not f.tokens:
        go = _unstick(graph, f, order, at)
    for step_id in go:
        f.waiting = [t for t in f.waiting if t.step_id != step_id]
        freed: list[Token] = []
        tok = _merge(graph, f, at[step_id], freed)
        f.tokens[tok.id] = tok
        new.append(tok)
        new.extend(freed)
    return bool(go)


def _joins_reach(graph: CompiledGraph, f: Frontier, scopes: set[int], waiting: list[Token]) -> bool:
    """Whether the join of one of these open fan-outs is the step the `waiting` tokens stand
    at or can reach it — leaving out the fan-outs those tokens are in themselves."""
    steps = graph.steps
    target = steps[waiting[0].step_id]
    reach = target.merge_mask | target.bit
    own = {s for t in waiting for s in t.scopes}
    for sid in scopes - own:
        join = f.scopes[sid].join if sid in f.scopes else None
        if join is not None and steps[join].bit & reach:
            return True
    return False


def _unstick(graph: CompiledGraph, f: Frontier, order: list[str], at: dict[str, list[Token]]) -> list[str]:
    """Nothing runs and every waiting step waits on another. A step waits for a gate's answer
    when a gate, or a step that itself waits for one, can reach it, or stands in an open fan-out
    whose join leads to it; the earliest waiting step that does not goes."""
    steps = graph.steps
    held = 0  # bits of gates and of the waiting steps held by them
    held_scopes: set[int] = set()  # fan-outs that cannot finish before a gate is answered
    for tok in f.gates:
        held |= steps[tok.step_id].bit
        held_scopes.update(tok.scopes)
    free = list(order)
    changed = True
    while changed:
        changed = False
        for step_id in list(free):
            if steps[step_id].merge_mask & held or _joins_reach(graph, f, held_scopes, at[step_id]):
                free.remove(step_id)
                held |= steps[step_id].bit
                held_scopes.update(s for t in at[step_id] for s in t.scopes)
                changed = True
    return free[:1]


def _merge(graph: CompiledGraph, f: Frontier, group: list[Token], freed: list[Token]) -> Token:
    """The one token the tokens of `group` (all at one step) go on as, not yet placed; tokens
    this sets free elsewhere (a fan-out it completed) go to `freed`."""
    if len(group) == 1:
        tok = group[0]
        tok.scopes = f.open_scopes(tok.scopes)
        return tok
    # Several branches arrived: one token goes on, in the scopes they all share; each arriving
    # branch ends in the scope it came from (which may complete an inner fan-out).
    paths = [f.open_scopes(t.scopes) for t in group]
    common: tuple[int, ...] = ()
    for level in zip(*paths):
        if any(x != level[0] for x in level):
            break
        common += (level[0],)
    if common:
        f.scopes[common[-1]].pending += 1
    skips = tuple(dict.fromkeys(s for t in group for s in t.skips))
    # A branch of a multi-step `parallel` branch arriving here goes on down its list.
    then = next((t.then for t in group if t.then), ())
    merged = f.make_token(group[0].step_id, common, then, skips)
    for path in paths:
        _end(graph, f, path, freed)
    return merged


def loop_guard(graph: CompiledGraph, f: Frontier, step_id: str) -> bool:
    """True when the step has already run max_iterations times and must be skipped."""
    return f.iterations.get(step_id, 0) >= graph.steps[step_id].spec.max_iterations


def count_iteration(f: Frontier, step_id: str) -> int:
    n = f.iterations.get(step_id, 0) + 1
    f.iterations[step_id] = n
    return n


class _Stored(msgspec.Struct):
    """What a checkpoint keeps of the frontier. Iteration counts are left out: they follow from
    the step records, and leaving them out keeps each checkpoint small however long the run."""

    tokens: dict[int, Token] = {}
    scopes: dict[int, Scope] = {}
    gates: list[Token] = []
    next_id: int = 1
    waiting: list[Token] = []


def encode(f: Frontier) -> bytes:
    return msgspec.json.encode(_Stored(f.tokens, f.scopes, f.gates, f.next_id, f.waiting))


def decode(data: bytes | str, records: Sequence[StepRecord] = ()) -> Frontier:
    """The frontier of a checkpoint, with iteration counts rebuilt from the run's step records
    (plus one for every gate that is waiting: its step started but has no record yet)."""
    s = msgspec.json.decode(data, type=_Stored)
    iterations: dict[str, int] = {}
    for r in records:
        if r.type != "input" and r.status != "skipped":
            iterations[r.step_id] = iterations.get(r.step_id, 0) + 1
    for tok in s.gates:
        iterations[tok.step_id] = iterations.get(tok.step_id, 0) + 1
    return Frontier(s.tokens, s.scopes, s.gates, iterations, s.next_id, s.waiting)
