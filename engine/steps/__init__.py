"""Step executors, one table built here and handed to the engine (tests may override entries)."""

from __future__ import annotations

from orch.steps.base import Executor


def default_executors() -> dict[str, Executor]:
    from orch.steps.agent import run_agent
    from orch.steps.control import run_end, run_if_else, run_parallel, run_switch
    from orch.steps.data import run_extract_json, run_merge, run_print, run_transform_step
    from orch.steps.human import run_human
    from orch.steps.llm import run_evaluator, run_llm
    from orch.steps.loop import run_loop
    from orch.steps.subflow import run_subflow
    from orch.steps.tool import run_tool

    return {
        "agent": run_agent, "llm": run_llm, "tool": run_tool, "evaluator": run_evaluator,
        "parallel": run_parallel, "merge": run_merge, "loop": run_loop, "human": run_human,
        "transform": run_transform_step, "extract_json": run_extract_json, "if_else": run_if_else,
        "switch": run_switch, "print": run_print, "end": run_end, "subflow": run_subflow,
    }
