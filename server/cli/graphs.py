"""`orch validate` and `orch graph`: check graph files as one set, draw one."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from orch.config import Loaded, check_tool_modules
from orch.server.cli.common import COMPLETED, FAILED, NOT_FOUND, USAGE, CliError, add_config, command, print_json, settings_of


def tool_names(loaded: Loaded) -> set[str]:
    """The built-in tools and those of the configured tool modules (a module that does not load
    is a settings error)."""
    from orch.tools import ToolRegistry

    check_tool_modules(loaded)
    registry = ToolRegistry.with_builtins()
    for module in loaded.settings.tool_modules:
        registry.load_module(module)
    registry.close()
    return set(registry.names())


def cmd_validate(args: argparse.Namespace) -> int:
    from orch.bootstrap import load_graphs

    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        raise CliError(f"{missing[0]}: no such file or directory", NOT_FOUND)
    loaded = settings_of(args)
    report = load_graphs(args.paths, tool_names(loaded), mcp_servers_file=loaded.settings.mcp_servers_file)
    if args.mcp:
        from orch.server.cli.mcp import check_mcp_tools

        check_mcp_tools(report, loaded.settings)
    errors = [p for p in report.problems if p.severity == "error"]
    if args.json:
        print_json({
            "ok": not errors, "errors": len(errors), "warnings": len(report.problems) - len(errors),
            "orchestrations": [{"id": oid, "file": g.file, "steps": len(g.steps), "edges": len(g.edges),
                                "cycles": len(g.cycles), "warnings": len(g.warnings)}
                               for oid, g in sorted(report.graphs.items())],
            "problems": [{"severity": p.severity, "code": p.code, "message": p.message, "file": p.file,
                          "orchestration_id": p.orchestration_id, "step_id": p.step_id, "path": p.path,
                          "hint": p.hint, "text": str(p)} for p in report.problems],
        })
        return FAILED if errors else COMPLETED
    for p in report.problems:
        print(("error: " if p.severity == "error" else "warning: ") + str(p),
              file=sys.stderr if p.severity == "error" else sys.stdout)
    for oid, graph in sorted(report.graphs.items()):
        cycles = f", {len(graph.cycles)} cycle(s) guarded by max_iterations" if graph.cycles else ""
        warn = f", {len(graph.warnings)} warning(s)" if graph.warnings else ""
        print(f"ok: {oid} ({graph.file}): {len(graph.steps)} steps, {len(graph.edges)} edges{cycles}{warn}")
    if errors:
        print(f"{len(errors)} error(s)", file=sys.stderr)
        return FAILED
    return COMPLETED


def cmd_graph(args: argparse.Namespace) -> int:
    from orch.bootstrap import load_graphs
    from orch.definition.render import dot, mermaid
    from orch.definition.render_svg import render_svg

    path = graph_file(args.file)
    report = load_graphs(siblings(path), tool_names(settings_of(args)))
    in_file = [g for g in report.graphs.values() if g.file and Path(g.file).resolve() == path.resolve()]
    chosen = [g for g in (in_file or list(report.graphs.values())) if not args.orchestration or g.id == args.orchestration]
    failed = [p for p in report.problems if p.severity == "error" and p.file and Path(p.file).resolve() == path.resolve()]
    if failed or not chosen:
        for p in failed:
            print("error: " + str(p), file=sys.stderr)
        if not failed:
            print(f"orch: no orchestration found in {args.file}", file=sys.stderr)
        return FAILED
    for g in chosen:
        print(mermaid(g) if args.format == "mermaid" else dot(g) if args.format == "dot" else render_svg(g) + "\n",
              end="")
    return COMPLETED


def graph_file(name: str) -> Path:
    """The graph file named on the command line, or CliError (4: not there, 2: not a graph)."""
    from orch.definition.loader import GRAPH_SUFFIXES

    path = Path(name)
    if not path.is_file():
        raise CliError(f"{path}: no such file", NOT_FOUND)
    if path.suffix not in GRAPH_SUFFIXES:
        raise CliError(f"{path}: not a graph file (expected {', '.join(GRAPH_SUFFIXES)})", USAGE)
    return path


def siblings(path: Path) -> list[str | Path]:
    """A graph file and the graph files beside it (not below): agents and orchestrations defined
    next to it are visible to it, as in the server's graphs directory."""
    from orch.definition.loader import GRAPH_SUFFIXES

    return sorted(p for p in path.parent.iterdir() if p.is_file() and p.suffix in GRAPH_SUFFIXES)


def register(sub: Any) -> None:
    p = command(sub, "validate", "validate graph files or directories as one set",
                "orch validate graphs/ --json | jq '.problems[].text'")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--json", action="store_true", help="print the report as JSON (docs/operations.md)")
    p.add_argument("--mcp", action="store_true", help="ask the MCP servers the graphs use for their tools")
    add_config(p)
    p.set_defaults(func=cmd_validate)

    p = command(sub, "graph", "print a graph as Mermaid, dot or SVG",
                "orch graph graphs/research_report.yaml --format svg > research.svg")
    p.add_argument("file")
    p.add_argument("--format", choices=["mermaid", "dot", "svg"], default="mermaid")
    p.add_argument("--orchestration", help="which orchestration, when the file holds several")
    add_config(p)
    p.set_defaults(func=cmd_graph)
