"""The engine's exceptions.

    EngineError
    ├── DefinitionError        a graph file or posted definition is wrong; carries every Problem
    │   ├── ExpressionError        an if_else/switch expression is rejected, or fails when evaluated
    │   └── TypeParseError         a state_schema type string does not parse
    ├── RunError               something went wrong while a run executed
    │   ├── StepFailed             a step raised; names the step
    │   ├── StateWriteError        a value does not fit a state key's declared type
    │   ├── StepTimeout            a step overran its timeout_seconds
    │   ├── CostLimitExceeded      the run spent more than max_total_cost_usd
    │   ├── TurnLimitExceeded      more step executions than max_total_turns
    │   ├── RunTimeout             the run overran timeout_minutes
    │   ├── GateTimeout            nobody answered a gate within human_timeout_seconds
    │   ├── ProviderError          an LLM vendor call failed (provider, model, status)
    │   └── ToolError              a tool is unknown or raised
    └── RunStateError          an action does not fit the run as it is now
        ├── RunNotFound            no such run / orchestration                      (HTTP 404)
        ├── NotPaused              the run's status does not allow the action       (HTTP 409)
        ├── RunFenced              a write under an epoch the run moved past         (HTTP 409)
        ├── InvalidAnswer          a gate answer fails its fields; per-field errors (HTTP 422)
        └── InvalidInput           a run's initial state does not fit its schema    (HTTP 422)

The HTTP mapping lives in server/; here every error only carries structured fields and a stable
`code`.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Severity = Literal["error", "warning"]


class Problem(msgspec.Struct, frozen=True, omit_defaults=True):
    """One finding of the loader or validator."""

    code: str
    message: str
    file: str | None = None
    step_id: str | None = None
    path: str | None = None  # JSON path of the offending value, e.g. $.steps[3].output_key
    hint: str | None = None
    severity: Severity = "error"
    orchestration_id: str | None = None

    def __str__(self) -> str:
        where = self.file or "<definition>"
        if self.path:
            where += f": {self.path}"
            if self.step_id and ".steps[" in self.path:
                where += f" (step {self.step_id})"
        elif self.step_id:
            where += f": step {self.step_id}"
        elif self.orchestration_id:
            where += f": {self.orchestration_id}"
        text = f"{where}: {self.message} [{self.code}]"
        if self.hint:
            text += f"; {self.hint}"
        return text


class EngineError(Exception):
    code = "engine_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class DefinitionError(EngineError):
    code = "invalid_definition"

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        errors = [p for p in problems if p.severity == "error"]
        super().__init__("\n".join(str(p) for p in errors or problems))


class ExpressionError(DefinitionError):
    """An expression was rejected when compiled or failed when evaluated. The compiler turns it
    into a `bad-expression` Problem; a step whose expression fails at run time fails."""

    code = "bad_expression"

    def __init__(self, message: str) -> None:
        EngineError.__init__(self, message)
        self.problems = [Problem("bad-expression", message)]


class TypeParseError(DefinitionError, ValueError):
    """A state_schema type string does not parse; the message says what was expected."""

    code = "bad_type"

    def __init__(self, message: str) -> None:
        EngineError.__init__(self, message)
        self.problems = [Problem("bad-type", message)]


class RunError(EngineError):
    code = "run_error"

    def __init__(self, message: str, *, step_id: str | None = None) -> None:
        super().__init__(message)
        self.step_id = step_id


class StepFailed(RunError):
    code = "step_failed"


class StateWriteError(RunError):
    code = "state_type"

    def __init__(self, *, step_id: str | None, key: str, expected: str, got: str, detail: str = "") -> None:
        where = f"step {step_id}: " if step_id else ""
        msg = f"{where}state key '{key}' expects {expected}, got {got}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg, step_id=step_id)
        self.key = key
        self.expected = expected
        self.got = got


class StepTimeout(RunError):
    code = "step_timeout"


class CostLimitExceeded(RunError):
    code = "cost_limit"


class TurnLimitExceeded(RunError):
    code = "turn_limit"


class RunTimeout(RunError):
    code = "run_timeout"


class GateTimeout(RunError):
    code = "gate_timeout"


class ProviderError(RunError):
    code = "provider_error"

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        model: str,
        status: int | None = None,
        retryable: bool = False,
        step_id: str | None = None,
    ) -> None:
        status_text = f" (HTTP {status})" if status is not None else ""
        super().__init__(f"{provider} {model}{status_text}: {message}", step_id=step_id)
        self.provider = provider
        self.model = model
        self.status = status
        self.retryable = retryable


class ToolError(RunError):
    code = "tool_error"

    def __init__(self, message: str, *, tool: str, retryable: bool = True, step_id: str | None = None) -> None:
        super().__init__(message, step_id=step_id)
        self.tool = tool
        self.retryable = retryable


class RunStateError(EngineError):
    code = "run_state"


class RunNotFound(RunStateError):
    code = "not_found"


class NotPaused(RunStateError):
    code = "not_paused"


class RunFenced(RunStateError):
    """A write under an epoch the run has moved past: another owner claimed the run, or it was
    ended from outside its driver. Nothing was written."""

    code = "fenced"

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run '{run_id}' was taken over or ended elsewhere; this write was refused")
        self.run_id = run_id


class InvalidAnswer(RunStateError):
    code = "invalid_answer"

    def __init__(self, field_errors: dict[str, str]) -> None:
        self.field_errors = field_errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in field_errors.items()))


class InvalidInput(RunStateError):
    code = "invalid_input"


class IdempotencyConflict(RunStateError):
    """An idempotency key came back with a different request than the one it was first used for."""

    code = "idempotency_conflict"
