"""What isolation costs a transform: one trivial transform, run again and again in each mode.

    python benchmarks/bench_transform.py [--runs 20] [--quick]

Each run is the whole of `run_transform`: a fresh interpreter, the job in, the result out, and
(isolated) bubblewrap's namespaces set up and torn down, every process gone before it returns.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Literal

from orch import Settings, run_transform, transform_policy

CODE = "result = sum(state['numbers'])"
STATE = {"numbers": list(range(100))}


Mode = Literal["unisolated", "isolated"]


async def timings(mode: Mode, runs: int) -> list[float] | None:
    policy = transform_policy(Settings(transform_isolation=mode), local=True)
    if policy.mode != mode or policy.sandbox is None:
        print(f"{mode}: not available here: {policy.summary}")
        return None
    await run_transform(CODE, STATE, sandbox=policy.sandbox)  # warm the page cache
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        assert await run_transform(CODE, STATE, sandbox=policy.sandbox) == 4950
        out.append(time.perf_counter() - started)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 3 transforms in each mode")
    args = parser.parse_args()
    if args.quick:
        args.runs = 3
    modes: tuple[Mode, ...] = ("unisolated", "isolated")
    measured = {mode: asyncio.run(timings(mode, args.runs)) for mode in modes}
    results = {mode: times for mode, times in measured.items() if times is not None}
    print(f"{'mode':<12} {'median':>8} {'mean':>8} {'min':>8} {'max':>8}   ({args.runs} runs, ms)")
    for mode, times in results.items():
        ms = [t * 1000 for t in times]
        print(f"{mode:<12} {statistics.median(ms):8.1f} {statistics.mean(ms):8.1f} {min(ms):8.1f} {max(ms):8.1f}")
    if len(results) == 2:
        extra = statistics.median(results["isolated"]) - statistics.median(results["unisolated"])
        print(f"isolation adds {extra * 1000:.1f} ms per transform (median)")


if __name__ == "__main__":
    main()
