"""What request handlers share: the engine, what loading the graphs produced, and stream settings.
Built by the app's lifespan once the engine is open; handlers receive it as the `ctx` dependency."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from litestar.datastructures import State
from litestar.di import NamedDependency

from orch.bootstrap import LoadReport
from orch.run.engine import Engine
from orch.settings import Settings
from orch.server.feed import RunFeed


@dataclass
class ServerContext:
    settings: Settings
    engine: Engine
    report: LoadReport
    sse_ping_seconds: float = 15.0

    def feed(self, run_id: str, *, after: int = 0) -> RunFeed:
        return RunFeed(self.engine, run_id, after=after, idle_seconds=self.sse_ping_seconds)


Ctx: TypeAlias = NamedDependency[ServerContext]  # what handlers declare as `ctx`


def server_context(state: State) -> ServerContext:
    return state.ctx  # type: ignore[no-any-return]
