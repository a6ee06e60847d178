"""The graphs an engine runs: the current one of each orchestration by id, and every version a
run was started with (runs are pinned to the definition they started with; a version not in
memory is read back from the store and compiled again)."""

from __future__ import annotations

from typing import Mapping

import msgspec

from orch.definition.compile import compile_definition
from orch.definition.compiled import CompiledGraph
from orch.definition.loader import decode_orchestration
from orch.definition.spec import Agent
from orch.errors import DefinitionError, RunNotFound
from orch.steps import spec_types
from orch.steps.base import StepKind
from orch.store.base import RunStore

_json = msgspec.json.Encoder()


class GraphRegistry:
    def __init__(self, store: RunStore, kinds: Mapping[str, StepKind]) -> None:
        self.store = store
        self.kinds = kinds
        self.current: dict[str, CompiledGraph] = {}  # by orchestration id
        self._versions: dict[str, CompiledGraph] = {}

    async def add(self, graph: CompiledGraph) -> None:
        """Serve `graph` under its id, and store its definition under its version."""
        self.current[graph.id] = graph
        self._versions[graph.version] = graph
        body = {"orchestration": msgspec.to_builtins(graph.orchestration),
                "agents": [msgspec.to_builtins(a) for a in graph.agents.values()]}
        await self.store.save_definition(graph.version, graph.id, _json.encode(body).decode())

    async def version(self, version: str) -> CompiledGraph:
        graph = self._versions.get(version)
        if graph is not None:
            return graph
        body = await self.store.get_definition(version)
        if body is None:
            raise RunNotFound(f"definition version {version} is not stored")
        doc = msgspec.json.decode(body)
        orch, problems = decode_orchestration(doc["orchestration"], f"<stored {version}>",
                                              step_types=spec_types(self.kinds))
        agents = {a["id"]: msgspec.convert(a, Agent) for a in doc.get("agents", [])}
        if orch is None or any(p.severity == "error" for p in problems):  # e.g. a step kind this engine lacks
            raise DefinitionError(problems)
        result = compile_definition(msgspec.structs.replace(orch, version=version), agents,
                                    orchestrations=set(self.current), kinds=self.kinds)
        if result.graph is None:
            raise DefinitionError(result.problems)
        self._versions[version] = result.graph
        return result.graph
