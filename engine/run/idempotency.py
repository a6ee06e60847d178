"""Idempotency-Key semantics: a repeated key with the same request gets the first outcome; the
same key with another request is a client bug (IdempotencyConflict, HTTP 422).

A run request's key is stored with the run it created; a repeat is compared with that run as
stored. A resume stores its key twice in the transaction that wins the gate: alone, and with a
digest of its answer, so a repeat can tell the same answer from another one.
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping

import msgspec

from orch.definition.compile import CompiledGraph
from orch.errors import IdempotencyConflict
from orch.store.base import RunStore, stored_text


async def check_same_run_request(store: RunStore, key: str, run_id: str, graph: CompiledGraph, message: str,
                                 state: Mapping[str, Any]) -> None:
    """The run `key` created must have come from this request: same orchestration, message and
    state values. (Compared as stored: the state values as the schema converted them; defaults
    the request did not give may have changed since, and do not count.)"""
    run = await store.get_run(run_id)
    records = await store.step_records(run_id, first_only=True)
    stored = msgspec.json.decode(records[0].writes) if records and records[0].type == "input" else None
    given = {k: msgspec.to_builtins(graph.schema.check(k, v)) for k, v in state.items()}
    same = (run is not None and stored is not None and run.orchestration_id == graph.id
            and run.message == stored_text(message)
            and all(k in stored and stored[k] == v for k, v in given.items()))
    if not same:
        raise IdempotencyConflict(f"Idempotency-Key '{key}' was first used for a different request (run "
                                  f"'{run_id}'); use a new key for a new request")


class ResumeKey:
    """The keys one resume request stores, and whether an earlier request stored them."""

    def __init__(self, run_id: str, key: str, step_id: str | None, response: Any) -> None:
        self.run_id, self.key = run_id, key
        try:
            request = msgspec.json.encode([step_id, response], order="sorted")
        except (TypeError, ValueError):  # not JSON (a Python caller's object): compared as written
            request = repr([step_id, response]).encode()
        base = f"resume:{run_id}:{key}"
        self.keys = (base, f"{base}#{hashlib.sha256(request).hexdigest()[:32]}")

    async def repeated(self, store: RunStore) -> bool:
        """True when this very request already won the gate; IdempotencyConflict when the key
        won it with another answer."""
        found = await store.idempotent_runs(self.keys)
        if found.get(self.keys[0]) != self.run_id:
            return False
        if found.get(self.keys[1]) != self.run_id:
            raise IdempotencyConflict(f"Idempotency-Key '{self.key}' was first used for a different answer to "
                                      f"run '{self.run_id}'; use a new key for a new request")
        return True
