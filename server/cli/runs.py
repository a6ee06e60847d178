"""`orch runs list|show|resume|cancel|recover`: runs in the database, by id or unique prefix."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
from typing import Any

import msgspec
from rich.text import Text

from orch.errors import EngineError, NotPaused, RunNotFound
from orch.events import decode_event
from orch.run.results import iso
from orch.server.cli.common import (
    COMPLETED, FAILED, NOT_FOUND, CliError, add_db, command, console, exit_code, open_engine, print_json,
    resolve_run, settings_of, where,
)
from orch.server.cli.progress import Progress, print_result
from orch.server.cli.running import describe_gate, drive_to_end, pairs

_STATUSES = ["running", "paused", "completed", "failed", "cancelled"]


def when(ts: float | None) -> str | None:
    return iso(ts) if ts else None


def local_time(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


async def runs(args: argparse.Namespace) -> int:
    loaded = settings_of(args)
    continues = args.action in ("resume", "recover")
    engine, _ = await open_engine(loaded, recover=args.action == "recover", runs_code=continues)
    try:
        if args.action == "list":
            return await list_runs(engine, args)
        if args.action == "recover":
            for task in list(engine._tasks.values()):
                await asyncio.shield(task)
            print("recovered runs finished")
            return COMPLETED
        if not args.run_id:
            raise CliError(f"runs {args.action} needs a run id (or the start of one)", 2)
        run_id = await resolve_run(engine.store, args.run_id)
        if args.action == "show":
            return await show(engine, run_id, args)
        if args.action == "cancel":
            try:
                result = await engine.cancel(run_id)
            except NotPaused as exc:
                raise CliError(exc.message) from None
            print_json(result) if args.json else print_result(result)
            return COMPLETED
        result = await engine.result(run_id)
        if result.status != "paused":
            raise CliError(f"run '{run_id}' is {result.status}, not paused")
        progress = None if args.json else Progress()
        result, accepted = await drive_to_end(engine, run_id, result, pairs(args.answer, "--answer", raw=True),
                                              progress, interactive=not args.json)
        print_json(result) if args.json else print_result(result)
        return exit_code(result.status) if accepted else FAILED
    except RunNotFound as exc:
        raise CliError(exc.message, NOT_FOUND) from None
    except EngineError as exc:
        raise CliError(f"{exc.message} (database: {where(loaded)})") from None
    finally:
        await engine.close()


async def list_runs(engine: Any, args: argparse.Namespace) -> int:
    found = await engine.store.list_runs(orchestration_id=args.orchestration, status=args.status, limit=args.limit)
    if args.json:
        print_json([{"run_id": r.id, "orchestration_id": r.orchestration_id, "status": str(r.status),
                     "cost_usd": round(r.cost_usd, 8), "created_at": when(r.created_at),
                     "updated_at": when(r.updated_at), "finished_at": when(r.finished_at),
                     "parent_run_id": r.parent_run_id} for r in found])
        return COMPLETED
    out = console()
    for r in found:
        out.print(Text.assemble(f"{r.id:<60} {r.orchestration_id:<28} ", (f"{r.status:<10}", _style(str(r.status))),
                                f" ${r.cost_usd:.6f}  {local_time(r.created_at)}"))
    return COMPLETED


def _style(status: str) -> str:
    return {"completed": "green", "failed": "red", "cancelled": "red", "paused": "yellow", "running": "cyan"}.get(
        status, "")


async def show(engine: Any, run_id: str, args: argparse.Namespace) -> int:
    from orch.run import scheduler

    run = await engine.get_run(run_id)
    result = await engine.result(run_id)
    in_flight: list[str] = []
    waiting: list[str] = []
    if run.status in ("running", "paused") and run.frontier:
        frontier = scheduler.decode(run.frontier)
        in_flight = sorted({t.step_id for t in frontier.tokens.values()})
        waiting = sorted({t.step_id for t in frontier.waiting})
    gate = result.human_input_required if run.status == "paused" else None
    events = [msgspec.json.decode(body) for _, body in await engine.store.events(run_id)] if args.events else None
    if args.json:
        body: dict[str, Any] = {
            "run": {"run_id": run.id, "orchestration_id": run.orchestration_id, "version": run.version,
                    "status": str(run.status), "created_at": when(run.created_at), "updated_at": when(run.updated_at),
                    "finished_at": when(run.finished_at), "cost_usd": round(run.cost_usd, 8), "turns": run.turns,
                    "error": run.error, "parent_run_id": run.parent_run_id},
            "steps": result.step_history or [],
            "state": result.shared_state if result.shared_state is not msgspec.UNSET else {},
            "response": result.response if isinstance(result.response, str) else None,
            "pending_gate": gate, "in_flight": in_flight, "waiting": waiting,
        }
        if events is not None:
            body["events"] = events
        print_json(body)
        return COMPLETED
    out = console()
    out.print(Text.assemble(f"run {run.id}: ", (str(run.status), _style(str(run.status)))))
    rows = [("orchestration", f"{run.orchestration_id} (version {run.version})"),
            ("created", when(run.created_at)), ("updated", when(run.updated_at)),
            ("finished", when(run.finished_at) or "-"), ("cost", f"${run.cost_usd:.6f} in {run.turns} turn(s)")]
    if run.error:
        rows.append(("error", run.error))
    if run.parent_run_id:
        rows.append(("parent", f"{run.parent_run_id} (step {run.parent_step_id})"))
    for label, value in rows:
        out.print(f"  {label:<14} {value}")
    if result.step_history:
        out.print("\nsteps:")
        for h in result.step_history:
            out.print(Text.assemble(f"  {h.step_id:<28} {h.type:<12} ", (f"{h.status:<10}", _style(h.status)),
                                    f" turns={h.turns:<3} cost=${h.cost_usd:.6f}  {h.started_at}  "
                                    f"{h.duration_seconds:.3f}s" + (f"  {h.error}" if h.error else "")))
    if isinstance(result.shared_state, dict) and result.shared_state:
        out.print("\nstate:")
        for key, value in result.shared_state.items():
            text = msgspec.json.encode(value).decode()
            out.print(f"  {key}: {text if len(text) <= 200 else text[:199] + '…'}")
    if isinstance(result.response, str) and result.response:
        out.print("\nresponse:\n  " + result.response.replace("\n", "\n  "))
    if in_flight:
        out.print("\nin flight: " + ", ".join(in_flight))
    if waiting:
        out.print("\nwaiting for other branches to arrive: " + ", ".join(waiting))
    if gate is not None:
        out.print("\n" + describe_gate(run.id, gate))
    if events is not None:
        out.print("\nevents:")
        for e in events:
            out.print("  " + event_line(e))
    return COMPLETED


def event_line(e: dict[str, Any]) -> str:
    """One stored event: its number, time, type, step and what it says, briefly."""
    detail = {"step_start": lambda: e.get("step_type", ""), "step_complete": lambda: e.get("status", ""),
              "step_error": lambda: e.get("error", ""), "tool_execution": lambda: e.get("tool_name", ""),
              "tool_result": lambda: e.get("tool_name", ""), "routing_decision": lambda: e.get("decision", ""),
              "human_input_required": lambda: e.get("prompt", ""), "orchestration_error": lambda: e.get("error", ""),
              "done": lambda: e.get("status", ""), "run_start": lambda: e.get("orchestration_id", "")}
    text = str(detail.get(e.get("type", ""), lambda: "")())
    ts = dt.datetime.fromtimestamp(float(e.get("ts", 0))).strftime("%H:%M:%S.%f")[:-3]
    return f"{e.get('seq', 0):>5}  {ts}  {e.get('type', ''):<22} {e.get('step_id', '') or '':<24} {text[:100]}".rstrip()


def register(sub: Any) -> None:
    p = command(sub, "runs", "list, show, resume, cancel or recover runs (ids may be shortened to a unique prefix)",
                "orch runs list --status paused --json\n"
                "orch runs show run_orch-research --events\n"
                "orch runs resume run_orch-research --answer decision=approve")
    p.add_argument("action", choices=["list", "show", "resume", "cancel", "recover"])
    p.add_argument("run_id", nargs="?", help="a run id, or the start of one that no other run shares")
    p.add_argument("--status", choices=_STATUSES)
    p.add_argument("--orchestration")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--answer", action="append", metavar="FIELD=VALUE")
    p.add_argument("--events", action="store_true", help="show: the run's stored events too")
    p.add_argument("--json", action="store_true", help="print JSON (docs/operations.md has the shapes)")
    p.add_argument("--graphs", help="graphs directory (setting graphs_dir)")
    add_db(p)
    p.set_defaults(func=lambda a: asyncio.run(runs(a)))
