"""A process the crash tests kill with SIGKILL: it runs a graph whose steps write a side-effect
ledger, and blocks in one chosen step (the first time only) so the test can kill it there.

    python crash_worker.py DB LEDGER start chain|fan|meet     start a run, drive it to its end
    python crash_worker.py DB LEDGER recover chain|fan|meet   continue runs left running
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from orch.definition.compile import compile_catalog  # noqa: E402
from orch.definition.loader import load_text  # noqa: E402
from orch.run.engine import Engine  # noqa: E402
from orch.services import build_services  # noqa: E402
from orch.settings import Settings  # noqa: E402
from orch.steps.base import StepResult  # noqa: E402
from orch.store.sql import SQLStore  # noqa: E402


def chain_graph(n: int = 20) -> str:
    steps = "\n".join(
        f"  - {{id: s{i}, type: agent, output_key: trail, next_step_id: {f's{i + 1}' if i < n else 'null'}}}"
        for i in range(1, n + 1)
    )
    return f"id: crash\nname: Crash\nstate_schema:\n  trail: {{type: 'list[str]', reducer: append}}\nsteps:\n{steps}\n"


def fan_graph(n: int = 8) -> str:
    branches = ", ".join(f"[b{i}]" for i in range(n))
    steps = "\n".join(f"  - {{id: b{i}, type: agent, output_key: trail, next_step_id: join}}" for i in range(n))
    return (f"id: crash\nname: Crash\nstate_schema:\n  trail: {{type: 'list[str]', reducer: append}}\nsteps:\n"
            f"  - {{id: fan, type: parallel, parallel_branches: [{branches}], next_step_id: join}}\n{steps}\n"
            "  - {id: join, type: merge, input_keys: [trail], merge_strategy: dict, output_key: merged, next_step_id: after}\n"
            "  - {id: after, type: agent, output_key: trail}\n")


def meet_graph() -> str:
    """`a` reaches `m` first and waits there for `c`, which may route to it too."""
    return ("id: crash\nname: Crash\nstate_schema:\n  trail: {type: 'list[str]', reducer: append}\nsteps:\n"
            "  - {id: fan, type: parallel, parallel_branches: [a, c], next_step_id: join}\n"
            "  - {id: a, type: agent, output_key: trail, next_step_id: m}\n"
            "  - {id: c, type: agent, output_key: trail, next_step_id: r}\n"
            "  - {id: r, type: if_else, if_condition: 'True', if_true_step_id: m, if_false_step_id: join}\n"
            "  - {id: m, type: agent, output_key: trail, next_step_id: join}\n"
            "  - {id: join, type: agent, output_key: trail}\n")


GRAPHS = {"chain": chain_graph, "fan": fan_graph, "meet": meet_graph}


async def main() -> None:
    db, ledger, mode, kind = sys.argv[1:5]
    block = set(os.environ.get("CRASH_BLOCK", "").split(",")) - {""}
    flag = Path(ledger + ".blocked")

    async def step(ctx: Any) -> StepResult:
        sid = ctx.step.spec.id
        with open(ledger, "a") as f:
            f.write(f"start {sid}\n")
        if sid in block and not flag.exists():
            await asyncio.sleep(60)  # the test kills the process while this step is in flight
        with open(ledger, "a") as f:
            f.write(f"end {sid}\n")
        return StepResult(output=f"{sid} done")

    settings = Settings(database_url=f"sqlite:///{db}", sandbox_root=str(Path(db).parent / "sandbox"))
    engine = Engine(SQLStore(settings.database_url), build_services(settings), executors={"agent": step})
    await engine.open()
    catalog = load_text(GRAPHS[kind](), "crash.yaml")
    graph = compile_catalog(catalog)["crash"].graph
    assert graph is not None
    await engine.add_graph(graph)
    if mode == "start":
        run_id = await engine.start("crash")
        print(run_id, flush=True)
        await engine.wait(run_id)
    else:
        for run_id in await engine.recover():
            print(run_id, flush=True)
            await engine.wait(run_id)
    await engine.close()


if __name__ == "__main__":
    asyncio.run(main())
