"""A run's events as lines on the terminal, each naming its step (parallel branches interleave),
coloured only when the output is a terminal."""

from __future__ import annotations

from typing import Any, TextIO

import msgspec
from rich.text import Text

from orch.events import (
    AgentTurn, Event, HumanInputRequired, LoopLimitReached, OrchestrationError, RoutingDecision, StepComplete,
    StepError, StepStart, ToolExecution, ToolResult,
)
from orch.server.cli.common import console

_json = msgspec.json.Encoder()


class Progress:
    """Prints a run's events as they happen."""

    def __init__(self, out: TextIO | None = None, verbose: bool = False) -> None:
        self.console, self.verbose = console(out), verbose

    def line(self, *parts: str | tuple[str, str]) -> None:
        self.console.print(Text.assemble(*parts))

    def show(self, e: Event) -> None:
        if isinstance(e, StepStart):
            again = f" #{e.iteration}" if e.iteration > 1 else ""
            self.line(("▶ ", "cyan"), (e.step_id, "bold"), f" ({e.step_type}){again}")
        elif isinstance(e, StepComplete):
            ok = e.status == "completed"
            extra = f"  {e.turns} turn(s)  ${e.cost_usd:.6f}" if e.turns else ""
            self.line(("✓ " if ok else "✗ ", "green" if ok else "red"), (e.step_id, "bold"),
                      f" {e.status}{extra}  {e.duration_seconds:.3f}s")
            if e.output and self.verbose:
                self.line(f"    {e.step_id}: " + e.output.replace("\n", f"\n    {e.step_id}: "))
        elif isinstance(e, AgentTurn):
            calls = ", ".join(c.get("name", "?") for c in e.tool_calls)
            self.step(e.step_id, f"turn {e.turn}" + (f": calls {calls}" if calls else ": answered") + f"  ${e.cost_usd:.6f}")
        elif isinstance(e, ToolExecution):
            self.step(e.step_id, f"tool {e.tool_name}({_json.encode(e.args).decode()})")
        elif isinstance(e, ToolResult):
            self.step(e.step_id, f"→ {e.preview[:120]}", "red" if e.error else "")
        elif isinstance(e, RoutingDecision):
            self.step(e.step_id, f"route {e.decision!r} → {e.target_step_id or 'end'}"
                      + (f" ({e.reasoning})" if e.reasoning else ""))
        elif isinstance(e, LoopLimitReached):
            self.line(("↻ ", "yellow"), (e.step_id, "bold"),
                      f" reached max_iterations ({e.max_iterations}); going to {e.next_step_id or 'end'}")
        elif isinstance(e, StepError):
            self.step(e.step_id, f"! {e.error}" + (" (retrying)" if e.will_retry else ""), "red")
        elif isinstance(e, HumanInputRequired):
            self.line(("⏸ ", "yellow"), (e.step_id, "bold"), f" waits for a person: {e.prompt}")
        elif isinstance(e, OrchestrationError):
            self.line(("✗ run failed: ", "red"), e.error)

    def step(self, step_id: str, text: str, style: str = "") -> None:
        self.line("    ", (step_id, "bold"), ": ", (text, style))


def print_result(result: Any, out: TextIO | None = None) -> None:
    c = console(out)
    c.print(Text.assemble(f"\nrun {result.run_id}: ", (result.status, _STATUS_STYLE.get(result.status, ""))))
    if result.step_history:
        for h in result.step_history:
            c.print(f"  {h.step_id:<28} {h.type:<12} {h.status:<10} turns={h.turns:<3} cost=${h.cost_usd:.6f}")
    if isinstance(result.response, str):
        c.print("\n" + result.response)
    if result.total_cost_usd is not msgspec.UNSET:
        c.print(f"\ntotal cost: ${result.total_cost_usd:.6f}")


_STATUS_STYLE = {"completed": "green", "failed": "red", "cancelled": "red", "paused": "yellow"}
