"""A store in this process's memory (engine.store.base.RunStore): for unit tests and for
embedding the engine where nothing needs to survive the process.

Each operation completes without awaiting anything in between, so on one event loop every
operation is atomic, as a transaction is; records are copied in and out, so a caller never
holds the store's own objects.
"""

from __future__ import annotations

import copy
import time
from collections import Counter
from typing import Callable, Iterable, Sequence

import msgspec

from orch.errors import RunFenced
from orch.events import stamp
from orch.run.model import Checkpoint, Run, RunEnding, RunStatus, StepRecord
from orch.store.base import ApiKey, stored_text

_OPTIONAL = ("status", "gates", "gate_deadline", "response", "error", "finished_at")
_state = msgspec.json.Decoder(dict)


def _stored_record(record: StepRecord) -> StepRecord:
    copied = copy.copy(record)
    if copied.error is not None:
        copied.error = stored_text(copied.error)
    return copied


class MemoryStore:
    def __init__(self) -> None:
        self._runs: dict[str, Run] = {}
        self._steps: dict[str, list[StepRecord]] = {}
        self._events: dict[str, dict[int, bytes]] = {}
        self._definitions: dict[str, str] = {}
        self._idempotency: dict[str, str] = {}
        self._api_keys: dict[str, tuple[str, str, float]] = {}

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    # -- writes ---------------------------------------------------------------------------

    async def checkpoint(self, cp: Checkpoint) -> None:
        run = self._runs.get(cp.run_id)
        if run is None or run.epoch != cp.epoch:
            raise RunFenced(cp.run_id)
        run.frontier, run.cost_usd, run.turns = cp.frontier, cp.cost_usd, cp.turns
        run.steps_done, run.last_seq, run.updated_at, run.active_seconds = (
            cp.steps_done, cp.last_seq, cp.updated_at, cp.active_seconds)
        for name in _OPTIONAL:
            value = getattr(cp, name)
            if value is not msgspec.UNSET:
                setattr(run, name, stored_text(value) if isinstance(value, str) else copy.deepcopy(value))
        if cp.state is not msgspec.UNSET:
            run.state = _state.decode(cp.state) if cp.state is not None else None
        self._steps[cp.run_id].extend(_stored_record(s) for s in cp.steps)
        self._events[cp.run_id].update(cp.events)

    async def create_run(self, run: Run, steps: Sequence[StepRecord], events: Sequence[tuple[int, bytes]],
                         idempotency_key: str | None = None) -> str:
        if idempotency_key is not None:
            if idempotency_key in self._idempotency:
                return self._idempotency[idempotency_key]
            self._idempotency[idempotency_key] = run.id
        self._runs[run.id] = msgspec.structs.replace(copy.deepcopy(run), message=stored_text(run.message))
        self._steps[run.id] = [_stored_record(s) for s in steps]
        self._events[run.id] = dict(events)
        return run.id

    async def claim_paused(self, run_id: str, owner: str, lease_seconds: float,
                           idempotency_keys: Sequence[str] = ()) -> int | None:
        run = self._runs.get(run_id)
        if run is None or run.status != RunStatus.PAUSED:
            return None
        now = time.time()
        run.status, run.owner, run.lease_until, run.updated_at = RunStatus.RUNNING, owner, now + lease_seconds, now
        run.epoch += 1
        for key in idempotency_keys:
            self._idempotency.setdefault(key, run_id)
        return run.epoch

    async def claim_orphans(self, owner: str, lease_seconds: float,
                            owner_is_dead: Callable[[str | None], bool] | None = None) -> list[tuple[str, int]]:
        now = time.time()
        claimed = []
        for run in self._runs.values():
            if run.status != RunStatus.RUNNING:
                continue
            lapsed = run.lease_until is None or run.lease_until < now
            if lapsed or (owner_is_dead is not None and run.owner != owner and owner_is_dead(run.owner)):
                run.epoch += 1
                run.owner, run.lease_until = owner, now + lease_seconds
                claimed.append((run.id, run.epoch))
        return claimed

    async def renew_leases(self, owner: str, run_ids: Iterable[str], lease_seconds: float) -> None:
        until = time.time() + lease_seconds
        for run_id in run_ids:
            run = self._runs.get(run_id)
            if run is not None and run.owner == owner:
                run.lease_until = until

    async def release_leases(self, owner: str) -> None:
        for run in self._runs.values():
            if run.owner == owner and run.status == RunStatus.RUNNING:
                run.lease_until = None

    async def end_run(self, run_id: str, ending: RunEnding) -> bool:
        run = self._runs.get(run_id)
        now = time.time()
        if run is None or run.status not in ending.expect:
            return False
        if ending.deadline_passed and (run.gate_deadline is None or run.gate_deadline > now):
            return False
        gap = ending.live_gap if run.status == RunStatus.RUNNING else 0
        run.status, run.error, run.response = ending.status, stored_text(ending.message), stored_text(ending.message)
        run.finished_at = run.updated_at = now
        run.state = None
        run.epoch += 1
        first = run.last_seq + gap + 1
        run.last_seq += gap + len(ending.events)
        self._events[run_id].update(stamp(ending.events, run_id, first, now))
        return True

    async def save_definition(self, version: str, orchestration_id: str, body: str) -> None:
        self._definitions.setdefault(version, body)

    async def add_api_key(self, key_id: str, name: str, key_hash: str) -> None:
        self._api_keys[key_id] = (name, key_hash, time.time())

    async def revoke_api_key(self, key_id: str) -> bool:
        return self._api_keys.pop(key_id, None) is not None

    # -- reads ----------------------------------------------------------------------------

    async def get_run(self, run_id: str) -> Run | None:
        run = self._runs.get(run_id)
        return copy.deepcopy(run) if run is not None else None

    async def list_runs(self, *, orchestration_id: str | None = None, status: RunStatus | str | None = None,
                        limit: int = 50, before: tuple[float, str] | None = None) -> list[Run]:
        found = [r for r in self._runs.values()
                 if (not orchestration_id or r.orchestration_id == orchestration_id)
                 and (not status or r.status == status)
                 and (before is None or (r.created_at, r.id) < before)]
        found.sort(key=lambda r: (r.created_at, r.id), reverse=True)
        return [msgspec.structs.replace(copy.deepcopy(r), frontier=b"", state=None) for r in found[:limit]]

    async def runs_with_status(self, status: RunStatus) -> list[Run]:
        return [copy.deepcopy(r) for r in self._runs.values() if r.status == status]

    async def step_records(self, run_id: str, *, first_only: bool = False) -> list[StepRecord]:
        records = self._steps.get(run_id, [])
        return [copy.copy(s) for s in (records[:1] if first_only else records)]

    async def events(self, run_id: str, after: int = 0) -> list[tuple[int, bytes]]:
        return sorted((s, b) for s, b in self._events.get(run_id, {}).items() if s > after)

    async def get_definition(self, version: str) -> str | None:
        return self._definitions.get(version)

    async def idempotent_runs(self, keys: Sequence[str]) -> dict[str, str]:
        return {k: self._idempotency[k] for k in keys if k in self._idempotency}

    async def api_key_hashes(self) -> list[str]:
        return [h for _, h, _ in self._api_keys.values()]

    async def api_keys(self) -> list[ApiKey]:
        keys = [ApiKey(id=k, name=name, created_at=at) for k, (name, _, at) in self._api_keys.items()]
        return sorted(keys, key=lambda k: (k.created_at, k.id))

    async def run_counts(self) -> dict[str, int]:
        return dict(Counter(str(r.status) for r in self._runs.values()))

    async def run_ids_with_prefix(self, prefix: str, limit: int = 2) -> list[str]:
        return sorted(r for r in self._runs if r.startswith(prefix))[:limit]

    async def count(self, table: str) -> int:
        sizes = {"runs": len(self._runs), "step_records": sum(map(len, self._steps.values())),
                 "events": sum(map(len, self._events.values()))}
        return sizes[table]
