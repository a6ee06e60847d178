"""The contract every store keeps (`RunStore`): what the engine needs to persist runs, claim and
fence them, and read them back as typed records (engine.run.model).

Guarantees, checked for every implementation by tests/engine/store/test_conformance.py:
- `checkpoint` is one transaction: the run's progress, its step records and its events land
  together or not at all; it raises `RunFenced` when the run's epoch moved on (another owner,
  or an ending from outside), changing nothing.
- Every change of status is a compare-and-set: `claim_paused` (paused → running), `end_run`
  (live → final), `claim_orphans` (running with a lapsed lease); of concurrent callers exactly
  one wins, and each win bumps the epoch.
- Event numbers (`seq`) are per run, contiguous and never reused; `end_run` numbers the events
  it appends after the run's last stored one (plus `live_gap` for a running run).
- An idempotency key maps to the first run it was used for, forever.
- Text (a run's message, response and error, a step's error) is kept as `stored_text` has it.
"""

from __future__ import annotations

from typing import Callable, Iterable, Protocol, Sequence

import msgspec

from orch.run.model import Checkpoint, Run, RunEnding, RunStatus, StepRecord


def stored_text(value: str) -> str:
    """A string as a text column keeps it: PostgreSQL text cannot hold NUL, so it becomes U+FFFD
    (in every store alike). JSON values escape NUL and keep it exactly."""
    return value.replace("\x00", "\ufffd")


class ApiKey(msgspec.Struct, frozen=True):
    """A stored API key as listed: never its hash."""

    id: str
    name: str
    created_at: float


class RunStore(Protocol):
    """Persistence of runs, their step records and events, definitions, idempotency keys and
    API keys."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    # -- writes ---------------------------------------------------------------------------

    async def checkpoint(self, cp: Checkpoint) -> None:
        """Commit one checkpoint, or raise RunFenced."""

    async def create_run(self, run: Run, steps: Sequence[StepRecord], events: Sequence[tuple[int, bytes]],
                         idempotency_key: str | None = None) -> str:
        """Insert a run with its first records and events; with an idempotency key already used,
        insert nothing and return that key's run id."""

    async def claim_paused(self, run_id: str, owner: str, lease_seconds: float,
                           idempotency_keys: Sequence[str] = ()) -> int | None:
        """Paused → running for `owner`; the new epoch, or None if the run was not paused. The
        winner stores `idempotency_keys` (→ run_id) in the same transaction."""

    async def claim_orphans(self, owner: str, lease_seconds: float,
                            owner_is_dead: Callable[[str | None], bool] | None = None) -> list[tuple[str, int]]:
        """Take over running runs whose lease lapsed (or was released), or whose owner
        `owner_is_dead` says is gone; (run id, new epoch)."""

    async def renew_leases(self, owner: str, run_ids: Iterable[str], lease_seconds: float) -> None: ...

    async def release_leases(self, owner: str) -> None:
        """Give up `owner`'s running runs at once (a graceful stop)."""

    async def end_run(self, run_id: str, ending: RunEnding) -> bool:
        """Compare-and-set the run to a final status from outside its driver; True if this call
        made the change. The stored state is dropped (it is rebuilt from the step records)."""

    async def save_definition(self, version: str, orchestration_id: str, body: str) -> None: ...

    async def add_api_key(self, key_id: str, name: str, key_hash: str) -> None: ...

    async def revoke_api_key(self, key_id: str) -> bool:
        """Delete a stored key; False when no key has that id."""

    # -- reads ----------------------------------------------------------------------------

    async def get_run(self, run_id: str) -> Run | None: ...

    async def list_runs(self, *, orchestration_id: str | None = None, status: RunStatus | str | None = None,
                        limit: int = 50, before: tuple[float, str] | None = None) -> list[Run]:
        """Newest first (created_at, then id), without state and frontier."""

    async def runs_with_status(self, status: RunStatus) -> list[Run]: ...

    async def step_records(self, run_id: str, *, first_only: bool = False) -> list[StepRecord]: ...

    async def events(self, run_id: str, after: int = 0) -> list[tuple[int, bytes]]: ...

    async def get_definition(self, version: str) -> str | None: ...

    async def idempotent_runs(self, keys: Sequence[str]) -> dict[str, str]:
        """The run each of these keys was first used for, for those that were."""

    async def api_key_hashes(self) -> list[str]: ...

    async def api_keys(self) -> list[ApiKey]:
        """The stored keys, oldest first (then by id)."""

    async def run_counts(self) -> dict[str, int]:
        """How many runs have each status (statuses no run has are left out)."""

    async def run_ids_with_prefix(self, prefix: str, limit: int = 2) -> list[str]:
        """Ids of runs that start with `prefix` (taken literally), in order, at most `limit`."""

    async def count(self, table: str) -> int:
        """Rows in `runs`, `step_records` or `events` (for tests and benchmarks)."""

    async def ping(self) -> None:
        """Raise if the store cannot be reached."""
