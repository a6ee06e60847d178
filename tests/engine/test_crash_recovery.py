"""Kill -9 a real engine process in the middle of a run, start another, and check that the run
completes with the same state as an uncrashed run and that no completed step ran twice."""

from __future__ import annotations

import collections
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("crash_worker.py")


def worker(db: Path, ledger: Path, mode: str, kind: str, block: str = "") -> subprocess.Popen[str]:
    env = {**os.environ, "CRASH_BLOCK": block}
    return subprocess.Popen([sys.executable, str(WORKER), str(db), str(ledger), mode, kind],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


def committed(db: Path) -> set[str]:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            found = {r[0] for r in conn.execute("SELECT step_id FROM step_records WHERE status = 'completed'")}
        conn.close()
        return found
    except sqlite3.OperationalError:
        return set()


def final_state(db: Path) -> tuple[str, dict]:
    import msgspec

    with sqlite3.connect(db) as conn:
        status, state = conn.execute("SELECT status, state FROM runs").fetchone()
    conn.close()
    decoded = msgspec.json.decode(state)
    # Branches finish in whatever order they finish; compare what they appended, not the order.
    decoded["trail"] = sorted(decoded["trail"])
    decoded.pop("merged", None)
    return status, decoded


def ledger_counts(ledger: Path) -> collections.Counter[str]:
    return collections.Counter(ledger.read_text().splitlines())


@pytest.mark.parametrize(("kind", "block", "done_before_kill"), [
    ("chain", "s10", {f"s{i}" for i in range(1, 10)}),
    ("fan", "b4,b5,b6,b7", {"b0", "b1", "b2", "b3"}),
    ("meet", "c", {"a"}),  # killed while `a`'s branch waits at `m` for `c`'s
])
def test_kill_mid_run_then_recover(tmp_path: Path, kind: str, block: str, done_before_kill: set[str]) -> None:
    reference_db, reference_ledger = tmp_path / "ref.db", tmp_path / "ref.ledger"
    reference = worker(reference_db, reference_ledger, "start", kind)
    reference.communicate(timeout=60)
    assert reference.returncode == 0
    expected_status, expected_state = final_state(reference_db)

    db, ledger = tmp_path / "crash.db", tmp_path / "crash.ledger"
    proc = worker(db, ledger, "start", kind, block)
    blocked = block.split(",")
    wait_for(lambda: ledger.exists() and all(f"start {b}" in ledger.read_text() for b in blocked))
    wait_for(lambda: done_before_kill <= committed(db))
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL

    (tmp_path / "crash.ledger.blocked").touch()  # the restarted steps no longer block
    again = worker(db, ledger, "recover", kind, block)
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    assert out.strip(), "the restarted engine found no run to continue"

    assert final_state(db) == (expected_status, expected_state) == ("completed", expected_state)
    counts = ledger_counts(ledger)
    ends = {line[4:]: n for line, n in counts.items() if line.startswith("end ")}
    assert set(ends.values()) == {1}, ends  # every step completed exactly once
    assert {line[6:] for line, n in counts.items() if line.startswith("start ") and n > 1} == set(blocked)
