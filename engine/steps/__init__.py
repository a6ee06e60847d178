"""Step kinds, one module each, and the one place their table is built.

The table is passed in to whatever needs it (the compiler, the validator through it, the
engine); nothing registers itself on import. To add a step type, write a module with its
`StepKind` (docs/step-kinds.md) and put it in a table: here for every engine, or in a copy of
`standard_kinds()` passed to `compile_catalog(kinds=...)` and `Engine(kinds=...)`.
"""

from __future__ import annotations

from orch.steps import (
    agent, end, evaluator, extract_json, human, if_else, llm, loop, merge, parallel, print as print_step, subflow,
    switch, tool, transform,
)
from orch.steps.base import Executor, StepKind, spec_types

__all__ = ["Executor", "StepKind", "default_executors", "spec_types", "standard_kinds"]


def standard_kinds() -> dict[str, StepKind]:
    """Every built-in step kind by name, in the order the file format lists the types."""
    kinds = (
        agent.KIND, llm.KIND, tool.KIND, evaluator.KIND, parallel.KIND, merge.KIND, loop.KIND, human.KIND,
        transform.KIND, extract_json.KIND, if_else.KIND, switch.KIND, print_step.KIND, end.KIND, subflow.KIND,
    )
    return {kind.name: kind for kind in kinds}


def default_executors() -> dict[str, Executor]:
    """The executor of every built-in kind by name (the base that `Engine(executors=...)` overrides)."""
    return {name: kind.executor for name, kind in standard_kinds().items()}
