"""Build a ready engine from settings: store, services, and the graphs of a directory."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from orch.definition.compile import CompiledGraph, compile_catalog
from orch.errors import Problem
from orch.definition.loader import Catalog, LoadedMcpServer, load_paths
from orch.mcp import McpPolicy, load_servers_file
from orch.mcp.verify import ToolNames, unverified
from orch.run.engine import Engine
from orch.sandbox import INSTALL_HINT, REFUSAL_CODE, TransformPolicy
from orch.services import build_services
from orch.settings import Settings
from orch.steps import spec_types
from orch.steps.base import Executor, StepKind
from orch.steps.transform import transform_users
from orch.store.sql import SQLStore


@dataclass
class LoadReport:
    """What loading a graphs directory produced: the graphs that serve, and what was left out."""

    graphs: dict[str, CompiledGraph] = field(default_factory=dict)
    rejected: dict[str, list[Problem]] = field(default_factory=dict)  # orchestration id → errors
    problems: list[Problem] = field(default_factory=list)  # file-level problems and warnings
    catalog: Catalog | None = None


def load_graphs(paths: list[str | Path], tool_names: set[str], *,
                kinds: Mapping[str, StepKind] | None = None, mcp_servers_file: str | None = None) -> LoadReport:
    """Load and compile graph files; `kinds` are the step kinds they may use (default: the
    built-ins); the servers of `mcp_servers_file` (the operator's) win over those of the files."""
    catalog = load_paths(paths, Catalog(step_types=spec_types(kinds)) if kinds is not None else None)
    if mcp_servers_file:
        servers, problems = load_servers_file(mcp_servers_file)
        catalog.problems.extend(problems)
        catalog.mcp_servers.update({s.name: LoadedMcpServer(s, mcp_servers_file) for s in servers})
    report = LoadReport(catalog=catalog, problems=list(catalog.problems))
    tools = ToolNames(tool_names, catalog.mcp_servers)
    for oid, result in compile_catalog(catalog, tools=tools, kinds=kinds).items():
        if result.graph is not None:
            report.graphs[oid] = result.graph
            report.problems.extend(result.problems)
        else:
            report.rejected[oid] = result.errors
            report.problems.extend(result.problems)
    report.problems.extend(unverified(report.graphs.values(), {n: s.spec for n, s in catalog.mcp_servers.items()}))
    return report


def refuse_transforms(report: LoadReport, policy: TransformPolicy) -> None:
    """When `policy` refuses transforms, move the orchestrations that run transform code, directly
    or through a sub-orchestration, from the graphs to the rejected: otherwise they would load
    and fail later."""
    if policy.mode != "refused":
        return
    for oid, steps in transform_users(report.graphs).items():
        graph = report.graphs.pop(oid)
        problems = [Problem(REFUSAL_CODE, policy.refusal() if child is None else
                            f"step {sid} runs orchestration '{child}', which has transform steps; {policy.refusal()}",
                            file=graph.file, step_id=sid, hint=INSTALL_HINT, orchestration_id=oid)
                    for sid, child in steps]
        report.rejected[oid] = problems
        report.problems.extend(problems)


def left_out_because(problems: list[Problem]) -> str:
    """How the banner and the log say why an orchestration was left out."""
    if problems and all(p.code == REFUSAL_CODE for p in problems):
        return "its transforms cannot run on this server"
    return "it does not validate"


async def build_engine(settings: Settings, *, graphs: list[str | Path] | None = None,
                       executors: Mapping[str, Executor] | None = None, kinds: Mapping[str, StepKind] | None = None,
                       recover: bool = True, local: bool = True) -> tuple[Engine, LoadReport]:
    """`local`: see `build_services`; a server with API keys passes False."""
    services = build_services(settings, local=local)
    store = SQLStore(settings.database_url, synchronous=settings.sqlite_synchronous)
    engine = Engine(store, services, executors=executors, kinds=kinds)
    await engine.open()
    paths = graphs if graphs is not None else [settings.graphs_dir]
    existing = [p for p in paths if Path(p).exists()]
    report = load_graphs(existing, set(services.tools.names()), kinds=engine.kinds,
                         mcp_servers_file=settings.mcp_servers_file)
    services.mcp.configure(McpPolicy.from_settings(settings))
    services.mcp.declare((s.spec for s in report.catalog.mcp_servers.values()) if report.catalog else ())
    refuse_transforms(report, services.transforms)
    for graph in report.graphs.values():
        await engine.add_graph(graph)
    if recover:
        await engine.recover()
    return engine, report
