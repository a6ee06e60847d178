"""Where does this engine's time go: per step of the durable 5-step chain, and per resume of a
human gate? Public API only.

    PYTHONPATH=. python benchmarks/profile_runtime.py [--quick] [--case chain|gate|both]
        [--runs N] [--top N] [--sort tottime|cumulative] [--timer cpu|wall] [--concurrent] [--dump DIR]

Part 1, wall clock, no profiler: the median of each phase a caller sees (`Engine.run`;
`Engine.start`, `wait`, `resume`, `wait` for the gate), the marginal cost of one step (a
25-step chain against the 5-step one, ÷ 20: what a step costs without the run's own start and
result), and beside them the floors of this machine: one `INSERT` + `COMMIT` through bare
`sqlite3` (WAL, synchronous=NORMAL), an `asyncio.to_thread` round trip, a task created and
awaited.

Part 2, cProfile, one profile per thread: the event loop's thread (profiled only around the
measured calls), and every other thread the engine starts (the store's writer and readers),
each profiled from its first call after measuring began until it ends (warm-up excluded;
closing the engine included, a few calls). Each phase runs on an engine of its own so that
no thread mixes two phases: the chain; the gate up to its pause; the resumes, on a second
engine opened on the first one's database, resuming the runs it left paused. Times are µs
per run, per step, or per resume under the profiler, which slows the code down by the factor
printed with each phase (profiled ÷ unprofiled wall time) and inflates many small calls more
than few large ones. With --concurrent, the chain's runs are started all at once.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from report import table, where
from workloads import GATE_ANSWER, chain_yaml, gate_yaml, open_ours, ours_check

import orch

CHAIN, LONG = 5, 25
GRAPHS = {"chain5": chain_yaml("chain5", CHAIN), f"chain{LONG}": chain_yaml(f"chain{LONG}", LONG),
          "gate": gate_yaml("gate")}


# -- part 1: wall clock and CPU time, no profiler ---------------------------------------------

Clock = tuple[float, float]  # wall seconds (perf_counter), CPU seconds of the whole process


def now() -> Clock:
    return time.perf_counter(), time.process_time()


def since(a: Clock, b: Clock) -> Clock:
    return b[0] - a[0], b[1] - a[1]


def medians(samples: dict[str, list[Clock]]) -> dict[str, Clock]:
    return {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in samples.items()}


async def chain_phases(engine: orch.Engine, runs: int, warm: int) -> dict[str, Clock]:
    """Medians: Engine.run of the 5- and the 25-step chain, Engine.start and Engine.wait of the
    5-step one, and the marginal cost of a step."""
    samples: dict[str, list[Clock]] = {"run": [], "start": [], "wait": [], "long": []}
    for i in range(warm + runs):
        t0 = now()
        run_id = await engine.start("chain5")
        t1 = now()
        result = await engine.wait(run_id)
        t2 = now()
        ours_check(CHAIN)(result)
        long = await engine.run(f"chain{LONG}")
        t3 = now()
        ours_check(LONG)(long)
        if i >= warm:
            samples["run"].append(since(t0, t2))
            samples["start"].append(since(t0, t1))
            samples["wait"].append(since(t1, t2))
            samples["long"].append(since(t2, t3))
    out = medians(samples)
    out["step"] = ((out["long"][0] - out["run"][0]) / (LONG - CHAIN), (out["long"][1] - out["run"][1]) / (LONG - CHAIN))
    return out


async def gate_once(engine: orch.Engine) -> dict[str, Clock]:
    t0 = now()
    run_id = await engine.start("gate")
    t1 = now()
    paused = await engine.wait(run_id)
    t2 = now()
    await engine.resume(run_id, GATE_ANSWER)
    t3 = now()
    done = await engine.wait(run_id)
    t4 = now()
    assert paused.status == "paused", paused
    ours_check(2, answer=GATE_ANSWER)(done)
    return {"start": since(t0, t1), "wait → paused": since(t1, t2), "resume": since(t2, t3),
            "wait → completed": since(t3, t4), "round trip": since(t0, t4)}


async def gate_phases(engine: orch.Engine, runs: int, warm: int) -> dict[str, Clock]:
    samples: dict[str, list[Clock]] = {}
    for i in range(warm + runs):
        phases = await gate_once(engine)
        if i >= warm:
            for k, v in phases.items():
                samples.setdefault(k, []).append(v)
    return medians(samples)


def sqlite_commit_floor(path: str, n: int) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v BLOB)")
    samples = []
    for i in range(n):
        t = time.perf_counter()
        conn.execute("BEGIN")
        conn.execute("INSERT INTO t VALUES (?, ?)", (f"k{i}", b"x" * 200))
        conn.execute("COMMIT")
        samples.append(time.perf_counter() - t)
    conn.close()
    return statistics.median(samples)


async def loop_floors(n: int) -> dict[str, float]:
    async def nothing() -> None:
        return None

    hops, tasks = [], []
    for _ in range(n):
        t = time.perf_counter()
        await asyncio.to_thread(lambda: None)
        hops.append(time.perf_counter() - t)
        t = time.perf_counter()
        await asyncio.get_running_loop().create_task(nothing())
        tasks.append(time.perf_counter() - t)
    return {"to_thread": statistics.median(hops), "task": statistics.median(tasks)}


# -- part 2: cProfile per thread -------------------------------------------------------------

def profiler(cpu: bool) -> cProfile.Profile:
    """cProfile timing each call by the wall clock, or by the CPU time of the calling thread
    (what a machine shared with other work does not inflate: a thread waiting for a core or
    for another thread costs no CPU time)."""
    return cProfile.Profile(time.thread_time) if cpu else cProfile.Profile()


@dataclass
class ThreadProfiles:
    """cProfile for the threads started after `install()`: each thread's profiler starts at
    its first call once `recording` is set, and runs until the thread ends."""

    cpu: bool
    recording: bool = False
    profiles: dict[str, cProfile.Profile] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def install(self) -> None:
        threading.setprofile(self.hook)

    def uninstall(self) -> None:
        threading.setprofile(None)  # type: ignore[arg-type]

    def hook(self, frame: Any, event: str, arg: Any) -> None:
        if not self.recording:
            return
        sys.setprofile(None)
        prof = profiler(self.cpu)
        thread = threading.current_thread()
        with self.lock:
            self.profiles[f"{thread.name} ({thread.ident})"] = prof
        prof.enable()


@dataclass
class Phase:
    title: str
    unit: str  # what the figures are per: "run", "resume"
    units: int
    steps_per_unit: int  # for a per-step column (0: none)
    spent: Clock  # wall and CPU seconds of the profiled calls
    unprofiled: Clock  # wall and CPU seconds per unit without the profiler (part 1)
    cpu: bool  # the profiles time calls by CPU time, else by the wall clock
    loop: cProfile.Profile
    threads: dict[str, cProfile.Profile]


async def profile_chain(tmp: str, runs: int, warm: int, concurrent: bool, unprofiled: Clock, cpu: bool) -> Phase:
    threads = ThreadProfiles(cpu)
    threads.install()
    loop_prof = profiler(cpu)
    try:
        engine = await open_ours(os.path.join(tmp, "prof-chain.db"), {"chain5": GRAPHS["chain5"]})
        check = ours_check(CHAIN)
        try:
            for _ in range(warm):
                check(await engine.run("chain5"))
            threads.recording = True
            loop_prof.enable()
            t = now()
            if concurrent:
                for result in await asyncio.gather(*(engine.run("chain5") for _ in range(runs))):
                    check(result)
            else:
                for _ in range(runs):
                    check(await engine.run("chain5"))
            spent = since(t, now())
            loop_prof.disable()
        finally:
            await engine.close()
    finally:
        threads.uninstall()
    how = f"{runs} runs started at once" if concurrent else f"{runs} runs one after another"
    return Phase(f"5-step chain, durable: Engine.run, {how}", "run", runs, CHAIN, spent, unprofiled, cpu, loop_prof,
                 threads.profiles)


async def profile_gate_start(db: str, runs: int, warm: int, unprofiled: Clock,
                             cpu: bool) -> tuple[Phase, list[str]]:
    """start + wait until paused, `runs` times; returns the paused runs' ids too."""
    threads = ThreadProfiles(cpu)
    threads.install()
    loop_prof = profiler(cpu)
    paused: list[str] = []
    try:
        engine = await open_ours(db, {"gate": GRAPHS["gate"]})
        try:
            for _ in range(warm):
                await gate_once(engine)
            threads.recording = True
            loop_prof.enable()
            t = now()
            for _ in range(runs):
                run_id = await engine.start("gate")
                result = await engine.wait(run_id)
                paused.append(run_id)
                assert result.status == "paused", result
            spent = since(t, now())
            loop_prof.disable()
        finally:
            await engine.close()
    finally:
        threads.uninstall()
    return Phase("gate, start → paused: Engine.start + Engine.wait", "run", runs, 0, spent, unprofiled, cpu,
                 loop_prof, threads.profiles), paused


async def profile_gate_resume(db: str, paused: list[str], warm: int, unprofiled: Clock, cpu: bool) -> Phase:
    """resume + wait until completed, on a second engine, for the runs the first left paused
    (the first `warm` of them unprofiled)."""
    threads = ThreadProfiles(cpu)
    threads.install()
    loop_prof = profiler(cpu)
    try:
        engine = await open_ours(db, {"gate": GRAPHS["gate"]})
        check = ours_check(2, answer=GATE_ANSWER)
        try:
            for run_id in paused[:warm]:
                await engine.resume(run_id, GATE_ANSWER)
                check(await engine.wait(run_id))
            measured = paused[warm:]
            threads.recording = True
            loop_prof.enable()
            t = now()
            for run_id in measured:
                await engine.resume(run_id, GATE_ANSWER)
                check(await engine.wait(run_id))
            spent = since(t, now())
            loop_prof.disable()
        finally:
            await engine.close()
    finally:
        threads.uninstall()
    return Phase("gate, resume → completed: Engine.resume + Engine.wait", "resume", len(measured), 0, spent,
                 unprofiled, cpu, loop_prof, threads.profiles)


# -- the report -----------------------------------------------------------------------------

def function_name(key: tuple[str, int, str]) -> str:
    file, line, name = key
    if file == "~":  # a built-in: "<method 'execute' of 'sqlite3.Cursor' objects>"
        return name
    return f"{where(file)}:{line}({name})"


# Built-ins whose own time is a thread waiting, not working: the event loop's poll for I/O and
# for callbacks from other threads, a pool thread waiting for work, a lock or a sleep.
WAITS = ("<method 'poll' of 'select.epoll' objects>", "<method 'get' of '_queue.SimpleQueue' objects>",
         "<method 'acquire' of '_thread.lock' objects>", "<built-in method time.sleep>")


def area(key: tuple[str, int, str]) -> str:
    """What a function belongs to: this engine's folder, a package, the stdlib, or C code."""
    file, _, name = key
    if file == "~" and name in WAITS:
        return "waiting"
    if file == "~":
        for what in ("sqlite3", "msgspec", "_asyncio", "select", "_thread", "_queue"):
            if what in name:
                return f"{what} (C)"
        return "built-ins (C)"
    shown = where(file)
    if shown.startswith("engine/"):
        parts = shown.split("/")
        return "/".join(parts[:2]) if len(parts) > 2 else shown
    if shown.startswith("stdlib/"):
        return "stdlib/" + shown.split("/")[1].removesuffix(".py")
    if shown.startswith(("benchmarks/", "/")):
        return "benchmark"
    return shown.split("/")[0]


def print_profile(title: str, prof: cProfile.Profile, phase: Phase, sort: str, top: int) -> None:
    try:
        stats = pstats.Stats(prof)
    except TypeError:  # the thread made no call while recording
        return
    entries: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    n = phase.units
    areas: dict[str, float] = {}
    for key, (_, _, tt, _, _) in entries.items():
        areas[area(key)] = areas.get(area(key), 0.0) + tt
    waiting = areas.pop("waiting", 0.0)
    busy = sum(areas.values())
    clock = "CPU" if phase.cpu else "wall"
    if busy < 2e-6 * n:
        print(f"-- {title}: idle ({busy / n * 1e6:,.1f} µs {clock} busy per {phase.unit})\n")
        return
    print(f"-- {title}: {busy / n * 1e6:,.0f} µs busy and {waiting / n * 1e6:,.0f} µs waiting per {phase.unit} "
          f"({clock} time, under the profiler)")
    shares = sorted(areas.items(), key=lambda kv: -kv[1])[:10]
    print("   busy, by area (own time): "
          + ", ".join(f"{a} {t / n * 1e6:,.0f} µs ({t / busy:.0%})" for a, t in shares))
    index = 3 if sort == "cumulative" else 2
    ranked = sorted(entries.items(), key=lambda kv: -kv[1][index])[:top]
    per_step = phase.steps_per_unit
    headers = ["function", f"calls/{phase.unit}", f"own µs/{phase.unit}", f"total µs/{phase.unit}"]
    if per_step:
        headers.append("own µs/step")
    rows = []
    for key, (_, nc, tt, ct, _) in ranked:
        row = [function_name(key)[:110], f"{nc / n:,.1f}", f"{tt / n * 1e6:,.1f}", f"{ct / n * 1e6:,.1f}"]
        if per_step:
            row.append(f"{tt / n / per_step * 1e6:,.1f}")
        rows.append(row)
    print(table(headers, rows))
    print()


def dump(phase: Phase, folder: str, name: str) -> None:
    """Each thread's profile as a pstats file, for `python -m pstats` or a viewer."""
    os.makedirs(folder, exist_ok=True)
    for thread, prof in [("loop", phase.loop), *phase.threads.items()]:
        try:
            pstats.Stats(prof).dump_stats(os.path.join(folder, f"{name}.{thread.split(' ')[0]}.prof"))
        except TypeError:  # no call recorded in that thread
            continue


def print_phase(phase: Phase, sort: str, top: int) -> None:
    wall, cpu = phase.spent[0] / phase.units, phase.spent[1] / phase.units
    (wall0, cpu0), n = phase.unprofiled, phase.units
    print(f"== {phase.title}: {wall * 1e6:,.0f} µs wall, {cpu * 1e6:,.0f} µs CPU per {phase.unit} under the profiler; "
          f"without: {wall0 * 1e6:,.0f} µs wall (× {wall / wall0:.1f}), {cpu0 * 1e6:,.0f} µs CPU (× {cpu / cpu0:.1f}); "
          f"{n} {phase.unit}s; calls timed by {'CPU' if phase.cpu else 'wall'} time, sorted by {sort} ==\n")
    print_profile("event-loop thread", phase.loop, phase, sort, top)
    for name, prof in sorted(phase.threads.items()):
        print_profile(f"thread {name}", prof, phase, sort, top)


def plus(a: Clock, b: Clock) -> Clock:
    return a[0] + b[0], a[1] + b[1]


def part_one(chain: dict[str, Clock], gate: dict[str, Clock], floors: dict[str, float], commit: float) -> str:
    def row(what: str, unit: str, c: Clock) -> list[str]:
        return [what, unit, f"{c[0] * 1e6:,.1f}" if c[0] < 1e-3 else f"{c[0] * 1e6:,.0f}",
                f"{c[1] * 1e6:,.1f}" if c[1] < 1e-3 else f"{c[1] * 1e6:,.0f}"]

    rows = []
    if chain:
        rows += [row(f"Engine.run, {CHAIN}-step chain, durable", "µs/run", chain["run"]),
                 row("  of which Engine.start", "µs", chain["start"]),
                 row("  of which Engine.wait (the steps, the completion, the result)", "µs", chain["wait"]),
                 row(f"Engine.run, {LONG}-step chain, durable", "µs/run", chain["long"]),
                 row(f"one step: ({LONG}-step − {CHAIN}-step) ÷ {LONG - CHAIN}", "µs/step", chain["step"])]
    if gate:
        rows += [row(f"gate round trip (s0 → gate → s1): {k}", "µs", v) for k, v in gate.items()]
        if chain:
            steps = (gate["resume"][0] / chain["step"][0], gate["resume"][1] / chain["step"][1])
            rows.append(["gate: Engine.resume in step costs", "steps", f"{steps[0]:.1f}", f"{steps[1]:.1f}"])
    rows += [["floor: sqlite3 INSERT + COMMIT, WAL, synchronous=NORMAL", "µs", f"{commit * 1e6:,.1f}", ""],
             ["floor: asyncio.to_thread(lambda: None)", "µs", f"{floors['to_thread'] * 1e6:,.1f}", ""],
             ["floor: create a task and await it", "µs", f"{floors['task'] * 1e6:,.1f}", ""]]
    return table(["what", "unit", "wall", "CPU"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few runs of each phase: a smoke run of a few seconds")
    parser.add_argument("--case", choices=["chain", "gate", "both"], default="both")
    parser.add_argument("--runs", type=int, help="measured runs (or resumes) per phase (default 500, quick 20)")
    parser.add_argument("--top", type=int, default=25, help="functions shown per thread (default 25)")
    parser.add_argument("--sort", default="tottime", choices=["tottime", "cumulative"])
    parser.add_argument("--timer", default="cpu", choices=["cpu", "wall"],
                        help="time each call by the CPU time of its thread (default: robust on a shared machine) "
                             "or by the wall clock (shows the time threads wait for one another)")
    parser.add_argument("--dump", metavar="DIR", help="also write each phase's per-thread profiles to DIR as pstats files")
    parser.add_argument("--concurrent", action="store_true",
                        help="profile the chain's runs started at once (asyncio.gather) instead of one after another")
    args = parser.parse_args()
    runs = args.runs or (20 if args.quick else 500)
    warm = 3 if args.quick else 30
    cpu = args.timer == "cpu"
    started = time.perf_counter()
    cases = ("chain", "gate") if args.case == "both" else (args.case,)
    with tempfile.TemporaryDirectory(prefix="orch-profile-") as tmp:

        async def unprofiled() -> tuple[dict[str, Clock], dict[str, Clock], dict[str, float]]:
            engine = await open_ours(os.path.join(tmp, "wall.db"), GRAPHS)
            try:
                chain = await chain_phases(engine, runs, warm) if "chain" in cases else {}
                gate = await gate_phases(engine, runs, warm) if "gate" in cases else {}
            finally:
                await engine.close()
            return chain, gate, await loop_floors(200 if args.quick else 2000)

        chain, gate, floors = asyncio.run(unprofiled())
        commit = sqlite_commit_floor(os.path.join(tmp, "floor.db"), 200 if args.quick else 2000)
        print(f"{time.strftime('%Y-%m-%d')} · load average {os.getloadavg()[0]:.2f} · {os.cpu_count()} cores · "
              f"{runs} measured runs per phase after {warm} warm-up\n")
        print("part 1: no profiler, medians in µs: wall clock, and CPU time of the whole process (every thread)")
        print(part_one(chain, gate, floors, commit))
        print()

        print("part 2: cProfile, per thread\n")
        if "chain" in cases:
            phase = asyncio.run(profile_chain(tmp, runs, warm, args.concurrent, chain["run"], cpu))
            if args.concurrent:  # no unprofiled figure for runs started at once
                phase.unprofiled = (phase.spent[0] / phase.units, phase.spent[1] / phase.units)
            print_phase(phase, args.sort, args.top)
            if args.dump:
                dump(phase, args.dump, "chain")
        if "gate" in cases:
            db = os.path.join(tmp, "prof-gate.db")
            first, paused = asyncio.run(profile_gate_start(db, runs + warm, warm,
                                                           plus(gate["start"], gate["wait → paused"]), cpu))
            print_phase(first, args.sort, args.top)
            second = asyncio.run(profile_gate_resume(db, paused, warm, plus(gate["resume"], gate["wait → completed"]),
                                                     cpu))
            print_phase(second, args.sort, args.top)
            if args.dump:
                dump(first, args.dump, "gate-start")
                dump(second, args.dump, "gate-resume")
    print(f"total {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
