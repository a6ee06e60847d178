"""The `orch` command: serve the API, run graphs with live progress, validate and draw graphs,
manage runs and API keys."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any, Sequence

import msgspec

from orch.errors import EngineError, InvalidAnswer, InvalidInput
from orch.events import (
    AgentTurn, Event, HumanInputRequired, LoopLimitReached, OrchestrationError, RoutingDecision, StepComplete,
    StepError, StepStart, ToolExecution, ToolResult,
)
from orch.server.cli.mcp import add_mcp_command, check_mcp_tools, serve_mcp
from orch.settings import Settings


def _value(text: str) -> Any:
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        return text


def _pairs(items: Sequence[str] | None, flag: str, *, raw: bool = False) -> dict[str, Any]:
    """KEY=VALUE arguments. VALUE is taken as JSON when it parses (42, true, [1, 2]) unless `raw`;
    gate answers are always raw text, which the gate's fields convert."""
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"orch: {flag} expects key=value, got '{item}'")
        out[key] = value if raw else _value(value)
    return out


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(database_url=getattr(args, "db", None), graphs_dir=getattr(args, "graphs", None))


# -- validate / graph ------------------------------------------------------------------------

def cmd_validate(args: argparse.Namespace) -> int:
    from orch.bootstrap import load_graphs
    from orch.tools import ToolRegistry

    settings = Settings.from_env()
    report = load_graphs(args.paths, set(ToolRegistry.with_builtins().names()), mcp_servers_file=settings.mcp_servers_file)
    if args.mcp:
        check_mcp_tools(report, settings)
    errors = [p for p in report.problems if p.severity == "error"]
    for p in report.problems:
        print(("error: " if p.severity == "error" else "warning: ") + str(p), file=sys.stderr if p.severity == "error" else sys.stdout)
    for oid, graph in sorted(report.graphs.items()):
        cycles = f", {len(graph.cycles)} cycle(s) guarded by max_iterations" if graph.cycles else ""
        warn = f", {len(graph.warnings)} warning(s)" if graph.warnings else ""
        print(f"ok: {oid} ({graph.file}): {len(graph.steps)} steps, {len(graph.edges)} edges{cycles}{warn}")
    if errors:
        print(f"{len(errors)} error(s)", file=sys.stderr)
        return 1
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    from orch.bootstrap import load_graphs
    from orch.definition.render import dot, mermaid
    from orch.definition.render_svg import render_svg
    from orch.tools import ToolRegistry

    path = Path(args.file)
    problem = _graph_file_problem(path)
    if problem:
        print(f"orch: {problem}", file=sys.stderr)
        return 2
    report = load_graphs(siblings(path), set(ToolRegistry.with_builtins().names()))
    in_file = [g for g in report.graphs.values() if g.file and Path(g.file).resolve() == path.resolve()]
    chosen = [g for g in (in_file or list(report.graphs.values())) if not args.orchestration or g.id == args.orchestration]
    failed = [p for p in report.problems if p.severity == "error" and p.file and Path(p.file).resolve() == path.resolve()]
    if failed or not chosen:
        for p in failed:
            print("error: " + str(p), file=sys.stderr)
        if not failed:
            print(f"orch: no orchestration found in {args.file}", file=sys.stderr)
        return 1
    for g in chosen:
        print(mermaid(g) if args.format == "mermaid" else dot(g) if args.format == "dot" else render_svg(g) + "\n",
              end="")
    return 0


def _graph_file_problem(path: Path) -> str | None:
    from orch.definition.loader import GRAPH_SUFFIXES

    if not path.is_file():
        return f"{path}: no such file"
    if path.suffix not in GRAPH_SUFFIXES:
        return f"{path}: not a graph file (expected {', '.join(GRAPH_SUFFIXES)})"
    return None


def siblings(path: Path) -> list[str | Path]:
    """A graph file and the graph files beside it (not below): agents and orchestrations defined
    next to it are visible to it, as in the server's graphs directory."""
    from orch.definition.loader import GRAPH_SUFFIXES

    return sorted(p for p in path.parent.iterdir() if p.is_file() and p.suffix in GRAPH_SUFFIXES)


# -- running ---------------------------------------------------------------------------------

class Progress:
    """Prints a run's events as they happen."""

    def __init__(self, out: Any = sys.stdout, verbose: bool = False) -> None:
        self.out, self.verbose = out, verbose

    def show(self, e: Event) -> None:
        def p(text: str) -> None:
            print(text, file=self.out, flush=True)

        if isinstance(e, StepStart):
            p(f"▶ {e.step_id} ({e.step_type})" + (f" #{e.iteration}" if e.iteration > 1 else ""))
        elif isinstance(e, StepComplete):
            mark = "✓" if e.status == "completed" else "✗"
            extra = f"  {e.turns} turn(s)  ${e.cost_usd:.6f}" if e.turns else ""
            p(f"{mark} {e.step_id} {e.status}{extra}  {e.duration_seconds:.3f}s")
            if e.output and self.verbose:
                p("    " + e.output.replace("\n", "\n    "))
        elif isinstance(e, AgentTurn):
            calls = ", ".join(c.get("name", "?") for c in e.tool_calls)
            p(f"    turn {e.turn}" + (f": calls {calls}" if calls else ": answered") + f"  ${e.cost_usd:.6f}")
        elif isinstance(e, ToolExecution):
            p(f"    tool {e.tool_name}({msgspec.json.encode(e.args).decode()})")
        elif isinstance(e, ToolResult):
            p(f"    → {e.preview[:120]}")
        elif isinstance(e, RoutingDecision):
            p(f"    route {e.decision!r} → {e.target_step_id or 'end'}" + (f" ({e.reasoning})" if e.reasoning else ""))
        elif isinstance(e, LoopLimitReached):
            p(f"↻ {e.step_id} reached max_iterations ({e.max_iterations}); going to {e.next_step_id or 'end'}")
        elif isinstance(e, StepError):
            p(f"  ! {e.step_id}: {e.error}" + (" (retrying)" if e.will_retry else ""))
        elif isinstance(e, HumanInputRequired):
            p(f"⏸ {e.step_id} waits for a person: {e.prompt}")
        elif isinstance(e, OrchestrationError):
            p(f"✗ run failed: {e.error}")


async def _follow(engine: Any, run_id: str, progress: Progress, sub: Any = None) -> Any:
    with sub or engine.hub.subscribe(run_id) as sub:
        if engine.is_active(run_id):
            async for event in sub:
                progress.show(event)
    return await engine.wait(run_id)


class NoAnswer(Exception):
    """Standard input ended before every question of a gate was answered."""


def _read(prompt: str) -> str:
    try:
        return input(prompt).strip()
    except EOFError:
        raise NoAnswer from None


def _ask(gate: Any, preset: dict[str, Any]) -> Any:
    """The gate's answer: fields given with --answer, the others asked on standard input (a
    terminal or a pipe). With --answer, fields left out stay unset."""
    if preset:
        return dict(preset)
    if not gate.fields:
        return _read(f"{gate.prompt}\n> ")
    if gate.agent_context and sys.stdin.isatty():
        print("--- context ---\n" + gate.agent_context[:2000] + "\n---------------")
    answers: dict[str, Any] = {}
    for f in gate.fields:
        answers[f["name"]] = _read(f"{f.get('label') or f['name']}{_options_hint(f)}: ")
    return answers


def _options_hint(field: dict[str, Any]) -> str:
    options = field.get("options")
    if not options:
        return ""
    return " [" + (options if isinstance(options, str) else ",".join(map(str, options))) + "]"


def describe_gate(run_id: str, gate: Any) -> str:
    lines = [f"paused at {gate.step_id}: {gate.prompt}"]
    for f in gate.fields:
        need = " (required)" if f.get("required") else ""
        lines.append(f"  {f['name']}: {f.get('type', 'text')}{_options_hint(f)}{need}")
    example = " ".join(f"--answer {f['name']}=..." for f in gate.fields) or "--answer text=..."
    lines.append(f"resume with: orch runs resume {run_id} {example}")
    return "\n".join(lines)


async def _drive_to_end(engine: Any, run_id: str, result: Any, answers: dict[str, Any],
                        progress: Progress) -> tuple[Any, bool]:
    """Answer gates until the run ends or no answer is available; (result, every answer was
    accepted)."""
    while result.status == "paused":
        gate = result.human_input_required
        try:
            answer = _ask(gate, answers)
        except NoAnswer:
            print(describe_gate(run_id, gate))
            return result, True
        sub = engine.hub.subscribe(run_id)
        try:
            await engine.resume(run_id, answer)
        except InvalidAnswer as exc:
            sub.close()
            print("invalid answer: " + "; ".join(f"{k}: {v}" for k, v in exc.field_errors.items()))
            if answers or not sys.stdin.isatty():
                print(describe_gate(run_id, gate))
                return result, False
            continue
        answers = {}
        result = await _follow(engine, run_id, progress, sub)
    return result, True


async def _print_frontier(engine: Any, run_id: str) -> None:
    """What an unfinished run stands at: steps in flight, and steps waiting for other branches."""
    from orch.run import scheduler

    run = await engine.store.get_run(run_id)
    if run is None or not run.frontier:
        return
    frontier = scheduler.decode(run.frontier)
    if frontier.tokens:
        print("\nin flight: " + ", ".join(sorted({t.step_id for t in frontier.tokens.values()})))
    if frontier.waiting:
        print("\nwaiting for other branches to arrive: " + ", ".join(sorted({t.step_id for t in frontier.waiting})))


def _print_result(result: Any) -> None:
    print(f"\nrun {result.run_id}: {result.status}")
    if result.step_history:
        for h in result.step_history:
            print(f"  {h.step_id:<28} {h.type:<12} {h.status:<10} turns={h.turns:<3} cost=${h.cost_usd:.6f}")
    if isinstance(result.response, str):
        print("\n" + result.response)
    if result.total_cost_usd is not msgspec.UNSET:
        print(f"\ntotal cost: ${result.total_cost_usd:.6f}")


async def _run(args: argparse.Namespace) -> int:
    from orch.bootstrap import build_engine

    path = Path(args.file)
    problem = _graph_file_problem(path)
    if problem:
        print(f"orch: {problem}", file=sys.stderr)
        return 2
    answers = _pairs(args.answer, "--answer", raw=True)  # checked before anything runs
    settings = _settings(args)
    engine, report = await build_engine(settings, graphs=siblings(path), recover=False)
    try:
        mine = [g for g in report.graphs.values() if g.file and Path(g.file).resolve() == path.resolve()]
        if args.orchestration:
            mine = [g for g in report.graphs.values() if g.id == args.orchestration]
        if not mine:
            for p in report.problems:
                if p.severity == "error":
                    print("error: " + str(p), file=sys.stderr)
            print(f"orch: no runnable orchestration in {args.file}", file=sys.stderr)
            return 1
        graph = mine[0]
        transforms = engine.services.transforms
        if transforms.mode != "isolated" and any(s.type == "transform" for s in graph.steps.values()):
            print(f"orch: {transforms.summary}", file=sys.stderr)
        progress = Progress(verbose=args.verbose)
        print(f"running {graph.id} ({graph.orchestration.name}) on {settings.database_url}")
        # A text key takes the text as typed; other values are read as JSON where they parse.
        state = {key: text if graph.schema.type_of(key).kind == "str" else _value(text)
                 for key, text in _pairs(args.state, "--state", raw=True).items()}
        try:
            run_id = await engine.start(graph.id, args.message or "", state)
        except InvalidInput as exc:
            print(f"orch: {exc.message}", file=sys.stderr)
            return 2
        print(f"run id: {run_id}")
        result = await _follow(engine, run_id, progress)
        result, accepted = await _drive_to_end(engine, run_id, result, answers, progress)
        _print_result(result)
        return 0 if accepted and result.status in ("completed", "paused") else 1
    finally:
        await engine.close()


async def _runs(args: argparse.Namespace) -> int:
    from orch.bootstrap import build_engine

    settings = _settings(args)
    engine, _ = await build_engine(settings, recover=args.action == "recover")
    try:
        if args.action == "list":
            runs = await engine.store.list_runs(orchestration_id=args.orchestration, status=args.status, limit=args.limit)
            for r in runs:
                print(f"{r.id:<60} {r.orchestration_id:<28} {r.status:<10} ${r.cost_usd:.6f}")
            return 0
        if args.action == "recover":
            for task in list(engine._tasks.values()):
                await asyncio.shield(task)
            print("recovered runs finished")
            return 0
        if not args.run_id:
            print("orch: a run id is required", file=sys.stderr)
            return 2
        if args.action == "show":
            shown = await engine.result(args.run_id)
            _print_result(shown)
            if shown.status in ("running", "paused"):
                await _print_frontier(engine, args.run_id)
            if shown.status == "paused":
                print("\n" + describe_gate(args.run_id, shown.human_input_required))
            return 0
        if args.action == "cancel":
            _print_result(await engine.cancel(args.run_id))
            return 0
        result = await engine.result(args.run_id)
        if result.status != "paused":
            print(f"orch: run '{args.run_id}' is {result.status}, not paused", file=sys.stderr)
            return 1
        result, accepted = await _drive_to_end(engine, args.run_id, result, _pairs(args.answer, "--answer", raw=True),
                                               Progress())
        _print_result(result)
        return 0 if accepted else 1
    except EngineError as exc:
        print(f"orch: {exc.message} (database: {settings.database_url})", file=sys.stderr)
        return 1
    finally:
        await engine.close()


async def _keys(args: argparse.Namespace) -> int:
    import hashlib
    import secrets

    from orch.store.sql import SQLStore

    settings = _settings(args)
    store = SQLStore(settings.database_url)
    await store.open()
    try:
        key = "orch_" + secrets.token_urlsafe(32)
        await store.add_api_key(secrets.token_hex(8), args.name or "", hashlib.sha256(key.encode()).hexdigest())
        print(key)
        print("store it now: only its hash is kept", file=sys.stderr)
        return 0
    finally:
        await store.close()


def cmd_serve(args: argparse.Namespace) -> int:
    from orch.sandbox import IsolationUnavailable
    from orch.server.auth import NoApiKeyConfigured
    from orch.server.main import serve

    settings = _settings(args)
    host = args.host or ("127.0.0.1" if args.local else "0.0.0.0")
    keys = [k for k in (args.api_key or []) if k]
    try:
        serve(settings, host=host, port=args.port, workers=args.workers, api_keys=keys,
              allow_unauthenticated=args.local)
    except (NoApiKeyConfigured, IsolationUnavailable, ValueError) as exc:
        print(f"orch: {exc}", file=sys.stderr)
        return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orch", description="Durable, typed AI orchestrations.")
    sub = parser.add_subparsers(dest="command", required=True)

    def db(p: argparse.ArgumentParser) -> None:
        p.add_argument("--db", help="database URL (default: ORCH_DATABASE_URL or sqlite:///orch-data/orch.db)")

    p = sub.add_parser("serve", help="serve the HTTP API")
    p.add_argument("--host")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--graphs", help="graphs directory (default: ORCH_GRAPHS_DIR or graphs)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--api-key", action="append", help="accept this API key (also ORCH_API_KEYS)")
    p.add_argument("--local", action="store_true", help="no API keys: bind 127.0.0.1 and accept every request")
    db(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("validate", help="validate graph files or directories as one set")
    p.add_argument("paths", nargs="+")
    p.add_argument("--mcp", action="store_true", help="ask the MCP servers the graphs use for their tools")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("graph", help="print a graph as Mermaid, dot or SVG")
    p.add_argument("file")
    p.add_argument("--format", choices=["mermaid", "dot", "svg"], default="mermaid")
    p.add_argument("--orchestration", help="which orchestration, when the file holds several")
    p.set_defaults(func=cmd_graph)

    p = sub.add_parser("run", help="run a graph file with live progress; answers gates at the prompt")
    p.add_argument("file")
    p.add_argument("--message", "-m", default="")
    p.add_argument("--state", action="append", metavar="KEY=VALUE",
                   help="initial state; VALUE is JSON when it parses (42, true, [1]) unless the key is text")
    p.add_argument("--answer", action="append", metavar="FIELD=VALUE",
                   help="answer gate fields without asking (otherwise they are read from standard input)")
    p.add_argument("--orchestration", help="which orchestration, when the file holds several")
    p.add_argument("--verbose", "-v", action="store_true", help="print step outputs")
    db(p)
    p.set_defaults(func=lambda a: asyncio.run(_run(a)))

    p = sub.add_parser("runs", help="list, show, resume, cancel or recover runs")
    p.add_argument("action", choices=["list", "show", "resume", "cancel", "recover"])
    p.add_argument("run_id", nargs="?")
    p.add_argument("--status", choices=["running", "paused", "completed", "failed", "cancelled"])
    p.add_argument("--orchestration")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--answer", action="append", metavar="FIELD=VALUE")
    p.add_argument("--graphs")
    db(p)
    p.set_defaults(func=lambda a: asyncio.run(_runs(a)))

    add_mcp_command(sub, db, lambda a: asyncio.run(serve_mcp(_settings(a))))
    p = sub.add_parser("keys", help="create an API key (printed once, stored hashed)")
    p.add_argument("action", choices=["create"])
    p.add_argument("--name")
    db(p)
    p.set_defaults(func=lambda a: asyncio.run(_keys(a)))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from orch.sandbox import IsolationUnavailable
    from orch.settings import SettingsError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (SettingsError, IsolationUnavailable) as exc:
        print(f"orch: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
