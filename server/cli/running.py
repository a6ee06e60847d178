"""`orch run`: run a graph file here, with live progress, asking its gates' questions at the
prompt (or reading them from a pipe, or taking them from --answer)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any, Sequence

import msgspec

from orch.errors import InvalidAnswer, InvalidInput
from orch.server.cli.common import (
    FAILED, PAUSED, USAGE, CliError, add_db, command, console, exit_code, open_engine, print_json, settings_of, where,
)
from orch.server.cli.graphs import graph_file, siblings
from orch.server.cli.progress import Progress, print_result


def json_value(text: str) -> Any:
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        return text


def pairs(items: Sequence[str] | None, flag: str, *, raw: bool = False) -> dict[str, Any]:
    """KEY=VALUE arguments. VALUE is taken as JSON when it parses (42, true, [1, 2]) unless `raw`;
    gate answers are always raw text, which the gate's fields convert."""
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"{flag} expects key=value, got '{item}'", USAGE)
        out[key] = value if raw else json_value(value)
    return out


async def follow(engine: Any, run_id: str, progress: Progress | None, sub: Any = None) -> Any:
    with sub or engine.hub.subscribe(run_id) as sub:
        if engine.is_active(run_id):
            async for event in sub:
                if progress is not None:
                    progress.show(event)
    return await engine.wait(run_id)


class NoAnswer(Exception):
    """Standard input ended before every question of a gate was answered (or must not be read)."""


def _read(prompt: str) -> str:
    try:
        return input(prompt).strip()
    except EOFError:
        raise NoAnswer from None


def ask(gate: Any, preset: dict[str, Any], *, interactive: bool = True) -> Any:
    """The gate's answer: fields given with --answer, the others asked on standard input (a
    terminal or a pipe). With --answer, fields left out stay unset."""
    if preset:
        return dict(preset)
    if not interactive:
        raise NoAnswer
    if not gate.fields:
        return _read(f"{gate.prompt}\n> ")
    if gate.agent_context and sys.stdin.isatty():
        print("--- context ---\n" + gate.agent_context[:2000] + "\n---------------")
    answers: dict[str, Any] = {}
    for f in gate.fields:
        answers[f["name"]] = _read(f"{f.get('label') or f['name']}{options_hint(f)}: ")
    return answers


def options_hint(field: dict[str, Any]) -> str:
    options = field.get("options")
    if not options:
        return ""
    return " [" + (options if isinstance(options, str) else ",".join(map(str, options))) + "]"


def describe_gate(run_id: str, gate: Any) -> str:
    lines = [f"paused at {gate.step_id}: {gate.prompt}"]
    for f in gate.fields:
        need = " (required)" if f.get("required") else ""
        lines.append(f"  {f['name']}: {f.get('type', 'text')}{options_hint(f)}{need}")
    example = " ".join(f"--answer {f['name']}=..." for f in gate.fields) or "--answer text=..."
    lines.append(f"resume with: orch runs resume {run_id} {example}")
    return "\n".join(lines)


async def drive_to_end(engine: Any, run_id: str, result: Any, answers: dict[str, Any], progress: Progress | None,
                       *, interactive: bool = True) -> tuple[Any, bool]:
    """Answer gates until the run ends or no answer is available; (result, every answer was
    accepted)."""
    def say(text: str) -> None:  # where the progress goes, else to standard error
        print(text, file=progress.console.file if progress is not None else sys.stderr, flush=True)

    while result.status == "paused":
        gate = result.human_input_required
        try:
            answer = ask(gate, answers, interactive=interactive)
        except NoAnswer:
            say(describe_gate(run_id, gate))
            return result, True
        sub = engine.hub.subscribe(run_id)
        try:
            await engine.resume(run_id, answer)
        except InvalidAnswer as exc:
            sub.close()
            say("invalid answer: " + "; ".join(f"{k}: {v}" for k, v in exc.field_errors.items()))
            if answers or not sys.stdin.isatty() or not interactive:
                say(describe_gate(run_id, gate))
                return result, False
            continue
        answers = {}
        result = await follow(engine, run_id, progress, sub)
    return result, True


async def run_file(args: argparse.Namespace) -> int:
    path = graph_file(args.file)
    answers = pairs(args.answer, "--answer", raw=True)  # checked before anything runs
    loaded = settings_of(args)
    engine, report = await open_engine(loaded, graphs=siblings(path))
    try:
        mine = [g for g in report.graphs.values() if g.file and Path(g.file).resolve() == path.resolve()]
        if args.orchestration:
            mine = [g for g in report.graphs.values() if g.id == args.orchestration]
        if not mine:
            for p in report.problems:
                if p.severity == "error":
                    print("error: " + str(p), file=sys.stderr)
            print(f"orch: no runnable orchestration in {args.file}", file=sys.stderr)
            return FAILED
        graph = mine[0]
        transforms = engine.services.transforms
        if transforms.mode != "isolated" and any(s.type == "transform" for s in graph.steps.values()):
            print(f"orch: {transforms.summary}", file=sys.stderr)
        # With --json standard output holds the result alone; progress goes to a terminal only.
        show = not args.json or sys.stderr.isatty()
        progress = Progress(sys.stderr if args.json else None, verbose=args.verbose) if show else None
        if progress is not None:
            progress.console.print(f"running {graph.id} ({graph.orchestration.name}) on {where(loaded)}")
        # A text key takes the text as typed; other values are read as JSON where they parse.
        state = {key: text if graph.schema.type_of(key).kind == "str" else json_value(text)
                 for key, text in pairs(args.state, "--state", raw=True).items()}
        try:
            run_id = await engine.start(graph.id, args.message or "", state)
        except InvalidInput as exc:
            raise CliError(exc.message, USAGE) from None
        args.started_run = run_id
        if progress is not None:
            progress.console.print(f"run id: {run_id}")
        result = await follow(engine, run_id, progress)
        result, accepted = await drive_to_end(engine, run_id, result, answers, progress, interactive=not args.json)
        if args.json:
            print_json(result)
        else:
            print_result(result)
        return exit_code(result.status) if accepted else FAILED
    finally:
        await engine.close()


def register(sub: Any) -> None:
    p = command(sub, "run", "run a graph file with live progress; answers gates at the prompt",
                'orch run graphs/research_report.yaml -m "tides" --answer decision=approve --answer notes=ok\n'
                "exit status: 0 completed, 1 failed or cancelled, 3 paused at a gate")
    p.add_argument("file")
    p.add_argument("--message", "-m", default="")
    p.add_argument("--state", action="append", metavar="KEY=VALUE",
                   help="initial state; VALUE is JSON when it parses (42, true, [1]) unless the key is text")
    p.add_argument("--answer", action="append", metavar="FIELD=VALUE",
                   help="answer gate fields without asking (otherwise they are read from standard input)")
    p.add_argument("--orchestration", help="which orchestration, when the file holds several")
    p.add_argument("--verbose", "-v", action="store_true", help="print step outputs")
    p.add_argument("--json", action="store_true",
                   help="print only the result, as the API's run response (JSON); gates are not asked")
    add_db(p)
    p.set_defaults(func=lambda a: asyncio.run(run_file(a)))


__all__ = ["console", "describe_gate", "drive_to_end", "follow", "pairs", "register"]
