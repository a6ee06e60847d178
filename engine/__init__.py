"""orch: durable, typed AI orchestrations.

Everything a user needs is importable from here::

    import orch

    report = orch.load(["graphs/"])                # files → compiled graphs (and what was rejected)
    engine, report = await orch.open_engine(orch.Settings(), graphs=["graphs/"])
    result = await engine.run("orch-research-report", "Synapse AI platform")

The modules below this package are organised in floors, each importing only the ones beneath
it (docs/architecture.md): `definition` (file format → compiled graph), `steps`, `run`,
`store`, with `providers`, `tools` and `events` beside them; `orch.server` is the HTTP API and
`orch.server.cli` the `orch` command.
"""

from __future__ import annotations

from pathlib import Path

from orch.bootstrap import LoadReport, build_engine as open_engine, load_graphs as _load_graphs
from orch.definition.compile import CompiledGraph, CompileResult, compile_catalog as compile
from orch.definition.loader import Catalog, load_paths, load_text
from orch.errors import (
    CostLimitExceeded, DefinitionError, EngineError, GateTimeout, IdempotencyConflict, InvalidAnswer, InvalidInput,
    NotPaused, Problem, ProviderError, RunError, RunFenced, RunNotFound, RunStateError, RunTimeout, StateWriteError,
    StepFailed, StepTimeout, ToolError, TurnLimitExceeded,
)
from orch.observe.watch import observe_engine
from orch.run.engine import Engine
from orch.run.model import Checkpoint, Gate, Run, RunStatus, StepRecord
from orch.run.results import HistoryEntry, HumanInput, RunResult
from orch.sandbox import TransformPolicy, run_transform, transform_policy
from orch.settings import Settings
from orch.steps.base import StepContext, StepKind, StepResult
from orch.store.base import RunStore
from orch.store.memory import MemoryStore
from orch.store.sql import SQLStore


def load(paths: list[str | Path], *, tools: set[str] | None = None) -> LoadReport:
    """Load and compile graph files (files or folders, as one set): what serves and what not."""
    from orch.tools import ToolRegistry

    names = tools if tools is not None else set(ToolRegistry.with_builtins().names())
    return _load_graphs(list(paths), names)


__all__ = [
    "Catalog", "CompileResult", "CompiledGraph", "CostLimitExceeded", "DefinitionError", "Engine", "EngineError",
    "GateTimeout", "HistoryEntry", "HumanInput", "IdempotencyConflict", "InvalidAnswer", "InvalidInput", "LoadReport",
    "StepResult",
    "NotPaused", "Problem", "ProviderError", "RunError", "RunNotFound", "RunResult", "RunStateError", "RunTimeout",
    "Settings", "StateWriteError", "StepFailed", "StepTimeout", "ToolError", "TurnLimitExceeded", "compile", "load",
    "load_paths", "load_text", "observe_engine", "open_engine",
    "Checkpoint", "Gate", "MemoryStore", "Run", "RunFenced", "RunStatus", "RunStore", "SQLStore", "StepContext",
    "StepKind", "StepRecord", "TransformPolicy", "run_transform", "transform_policy",
]
