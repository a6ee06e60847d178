"""Load the HTTP API over loopback: the real server in a process of its own, driven from this
one by closed-loop clients, and print throughput, latency and time to the first SSE event.

    PYTHONPATH=. python benchmarks/bench_server.py [--quick] [--workers N --db postgresql://...]

The server is started as `python -m orch.server.cli serve` on a free 127.0.0.1 port, with a
temporary graphs directory holding one 5-step graph that runs on the offline model
(llm → llm → print → extract_json → print, no human gate) and, unless --db says otherwise, a
temporary SQLite file. Each simulated user is one `httpx.AsyncClient` with one HTTP/1.1
keep-alive connection that sends its next request as soon as the last one answered.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from urllib.parse import quote

import httpx

ROOT = Path(__file__).resolve().parents[1]
API = "/api/v1"
GRAPH_ID = "bench-five-steps"
RUN_PATH = f"{API}/orchestrations/{GRAPH_ID}/run"
STREAM_PATH = f"{RUN_PATH}/stream"
BODY = {"message": "durable workflow engines"}
REQUEST_TIMEOUT = 60.0
START_TIMEOUT = 60.0

GRAPH_YAML = f"""\
id: {GRAPH_ID}
name: Five offline steps
description: Two model calls, a print, a JSON extraction and a final print; no gate.

state_schema:
  topic:
    type: str
    description: A run's message is written here.
  notes:
    type: str
  summary_text:
    type: str
  summary:
    type: dict

steps:
  - id: notes
    type: llm
    prompt_template: |
      Give three short notes on the topic.

      Topic: {{state.topic}}
    output_key: notes
    next_step_id: summarise

  - id: summarise
    type: llm
    input_keys: [notes]
    prompt_template: |
      Respond with a JSON object summarising the notes.

      Topic: {{state.topic}}
    output_key: summary_text
    next_step_id: show-draft

  - id: show-draft
    type: print
    print_content: "Draft: {{state.summary_text}}"
    next_step_id: parse

  - id: parse
    type: extract_json
    input_keys: [summary_text]
    output_key: summary
    next_step_id: publish

  - id: publish
    type: print
    print_content: "Summary of {{state.topic}}: {{state.summary}}"
    output_key: report
"""


# -- the server process ------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ticks(pid: int) -> int:
    """utime + stime of one process, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _tree(pid: int) -> Iterator[int]:
    yield pid
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                children = [int(c) for c in f.read().split()]
        except OSError:
            continue
        for child in children:
            yield from _tree(child)


def cpu_seconds(pid: int) -> float | None:
    """CPU time used so far by a process and its live descendants (Linux /proc), else None."""
    try:
        hz = os.sysconf("SC_CLK_TCK")
        total = 0
        for p in _tree(pid):
            try:
                total += _ticks(p)
            except OSError:
                pass
        return total / hz
    except (OSError, ValueError):
        return None


class Server:
    """`python -m server.cli serve` in a process (group) of its own, over a temporary directory."""

    def __init__(self, workdir: Path, db_url: str, workers: int) -> None:
        self.workdir, self.db_url, self.workers = workdir, db_url, workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_key = "bench_" + secrets.token_urlsafe(24)
        self.graphs = workdir / "graphs"
        self.log_path = workdir / "orch.server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_seconds = 0.0

    @property
    def argv(self) -> list[str]:
        return [sys.executable, "-m", "orch.server.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                "--api-key", self.api_key, "--db", self.db_url, "--graphs", str(self.graphs),
                "--workers", str(self.workers)]

    def shown_command(self) -> str:
        shown = [Path(self.argv[0]).name] + self.argv[1:]
        shown[shown.index("--api-key") + 1] = "K"
        shown[shown.index("--db") + 1] = _hide_password(self.db_url)
        return " ".join(shown).replace(str(self.workdir), "TMP")

    def start(self) -> None:
        self.graphs.mkdir()
        (self.graphs / "bench.yaml").write_text(GRAPH_YAML)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
        env.update(ORCH_SANDBOX_ROOT=str(self.workdir / "sandbox"), ORCH_DEFAULT_PROVIDER="offline",
                   ORCH_DEFAULT_MODEL="offline")
        started = time.perf_counter()
        with open(self.log_path, "wb") as log:
            # uvicorn's access log (one line per request) goes to this file, as when an operator
            # runs `orch serve`; its own process group lets stop() reach every worker.
            self.proc = subprocess.Popen(self.argv, cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = started + START_TIMEOUT
        with httpx.Client(base_url=self.url, timeout=2) as client:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the server exited with status {self.proc.returncode}:\n{self.log_tail()}")
                try:
                    health = client.get(f"{API}/health")
                    if health.status_code == 200 and health.json().get("graphs") == 1:
                        break
                except httpx.HTTPError:
                    pass
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"the server did not answer /health within {START_TIMEOUT:.0f} s:\n"
                                       + self.log_tail())
                time.sleep(0.05)
        self.ready_seconds = time.perf_counter() - started

    def cpu(self) -> float | None:
        return cpu_seconds(self.proc.pid) if self.proc else None

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)  # uvicorn shuts down gracefully, workers included
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the group this script created for the server
            self.proc.wait(timeout=5)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"


def _hide_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        creds, host = rest.split("@", 1)
        if ":" in creds:
            return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url


class PgSchema:
    """A fresh PostgreSQL schema for one benchmark, dropped afterwards."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.base, self.name = url, "bench_" + secrets.token_hex(6)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {self.name}")
        joiner = "&" if "?" in url else "?"
        self.url = f"{url}{joiner}options={quote('-csearch_path=' + self.name)}"

    def drop(self) -> None:
        import psycopg

        with psycopg.connect(self.base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {self.name} CASCADE")


# -- load --------------------------------------------------------------------------------------

@dataclass
class Level:
    clients: int
    seconds: float
    latencies: list[float] = field(default_factory=list)  # successful runs completed in the window
    errors: int = 0
    first_error: str = ""
    server_cpu: float | None = None
    client_cpu: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds


def percentile(values: list[float], q: float) -> float:
    """Nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def client_for(server: Server) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {server.api_key}"},
                             timeout=REQUEST_TIMEOUT, limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))


def _problem(response: httpx.Response) -> str | None:
    if response.status_code != 200:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    status = response.json().get("status")
    return None if status == "completed" else f"run {status}"


async def user(client: httpx.AsyncClient, level: Level, window_start: float, window_end: float) -> None:
    """Closed loop: send, wait for the answer, send again, until the window ends. A run counts
    when it finishes inside the window; runs in flight at its end are finished, not counted."""
    while time.perf_counter() < window_end:
        sent = time.perf_counter()
        try:
            problem = _problem(await client.post(RUN_PATH, json=BODY))
        except httpx.HTTPError as exc:
            problem = f"{type(exc).__name__}: {exc}"
        done = time.perf_counter()
        if not window_start <= done <= window_end:
            continue
        if problem is None:
            level.latencies.append(done - sent)
        else:
            level.errors += 1
            level.first_error = level.first_error or problem


async def load(server: Server, clients: int, warmup: float, seconds: float) -> Level:
    level = Level(clients, seconds)
    async with AsyncExitStack() as stack:
        pool = [await stack.enter_async_context(client_for(server)) for _ in range(clients)]
        # Open every connection before the clock starts.
        await asyncio.gather(*(c.get(f"{API}/health") for c in pool))
        window_start = time.perf_counter() + warmup
        window_end = window_start + seconds
        tasks = [asyncio.create_task(user(c, level, window_start, window_end)) for c in pool]
        await asyncio.sleep(max(0.0, window_start - time.perf_counter()))
        server_cpu, client_cpu = server.cpu(), time.process_time()
        await asyncio.sleep(max(0.0, window_end - time.perf_counter()))
        server_after, client_after = server.cpu(), time.process_time()
        await asyncio.gather(*tasks)
    if server_cpu is not None and server_after is not None:
        level.server_cpu = (server_after - server_cpu) / seconds
    level.client_cpu = (client_after - client_cpu) / seconds
    return level


# -- streams -----------------------------------------------------------------------------------

@dataclass
class StreamTimes:
    first: list[float] = field(default_factory=list)
    done: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""


async def stream_once(client: httpx.AsyncClient) -> tuple[float, float]:
    """Seconds from sending the request to the first `data:` line, and to the `done` event. The
    body is read to its end so that the connection is kept for the next run."""
    first = done = None
    sent = time.perf_counter()
    async with client.stream("POST", STREAM_PATH, json=BODY) as response:
        if response.status_code != 200:
            await response.aread()
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            now = time.perf_counter()
            first = now if first is None else first
            event = json.loads(line[5:])
            if event.get("type") == "done":
                done = now
                if event.get("status") != "completed":
                    raise RuntimeError(f"run {event.get('status')}")
    if first is None or done is None:
        raise RuntimeError("the stream ended without a done event")
    return first - sent, done - sent


async def streams(server: Server, warm: int, runs: int) -> StreamTimes:
    times = StreamTimes()
    async with client_for(server) as client:
        for i in range(warm + runs):
            try:
                first, done = await stream_once(client)
            except (httpx.HTTPError, RuntimeError, ValueError) as exc:
                if i >= warm:
                    times.errors += 1
                    times.first_error = times.first_error or f"{type(exc).__name__}: {exc}"
                continue
            if i >= warm:
                times.first.append(first)
                times.done.append(done)
    return times


# -- report ------------------------------------------------------------------------------------

def machine_line(label: str) -> str:
    one, five, fifteen = os.getloadavg()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{label}: load average {one:.2f} {five:.2f} {fifteen:.2f} (1/5/15 min) · {os.cpu_count()} CPUs ({usable} usable)"


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.0f}%"


def print_levels(levels: list[Level]) -> None:
    columns = (("clients", 7), ("runs/s", 8), ("p50 ms", 7), ("p90 ms", 7), ("p99 ms", 7), ("runs", 6),
               ("errors", 6), ("server CPU", 10), ("client CPU", 10))
    print("  ".join(f"{name:>{width}}" for name, width in columns))
    print("  ".join("-" * width for _, width in columns))
    for lv in levels:
        ms = [x * 1000 for x in lv.latencies]
        print(f"{lv.clients:>7}  {lv.rate:>8,.1f}  {percentile(ms, 50):>7.1f}  {percentile(ms, 90):>7.1f}  "
              f"{percentile(ms, 99):>7.1f}  {len(ms):>6,}  {lv.errors:>6}  {pct(lv.server_cpu):>10}  "
              f"{pct(lv.client_cpu):>10}")
    for lv in levels:
        if lv.first_error:
            print(f"  {lv.clients} clients, first error: {lv.first_error}")


def print_streams(times: StreamTimes, runs: int) -> None:
    print(f"{'POST .../run/stream, 1 client, sequential':<44}  {'median ms':>9}  {'p90 ms':>7}  {'min ms':>7}")
    for label, values in (("first `data:` line (run_start)", times.first), ("`done` event", times.done)):
        ms = [x * 1000 for x in values]
        med = statistics.median(ms) if ms else float("nan")
        print(f"{label:<44}  {med:>9.1f}  {percentile(ms, 90):>7.1f}  {min(ms, default=float('nan')):>7.1f}")
    print(f"{len(times.done)} of {runs} streams measured, {times.errors} errors"
          + (f"; first error: {times.first_error}" if times.first_error else ""))


# -- main --------------------------------------------------------------------------------------

async def measure(server: Server, args: argparse.Namespace, levels: list[int]) -> tuple[list[Level], StreamTimes]:
    done: list[Level] = []
    for clients in levels:
        done.append(await load(server, clients, args.warmup, args.duration))
        print(f"  {clients:>3} clients: {done[-1].rate:,.1f} runs/s", flush=True)
    stream_times = await streams(server, warm=5, runs=args.stream_runs)
    return done, stream_times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run of a few seconds: 1 and 16 clients, 1 s each after 0.5 s warm-up, 10 SSE runs")
    parser.add_argument("--duration", type=float, help="measured seconds per concurrency level (default 8, quick 1)")
    parser.add_argument("--warmup", type=float, help="unmeasured seconds before each level (default 2, quick 0.5)")
    parser.add_argument("--clients", help="concurrency levels, comma-separated (default 1,16,64; quick 1,16)")
    parser.add_argument("--stream-runs", type=int, help="measured SSE runs (default 50, quick 10)")
    parser.add_argument("--workers", type=int, default=1,
                        help="server worker processes (`orch serve --workers`); more than 1 needs --db postgresql://…")
    parser.add_argument("--db", help="database URL for the server (default: a temporary SQLite file); "
                                     "a PostgreSQL URL gets a fresh schema, dropped afterwards")
    args = parser.parse_args()
    args.duration = args.duration or (1.0 if args.quick else 8.0)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 2.0)
    args.clients = args.clients or ("1,16" if args.quick else "1,16,64")
    args.stream_runs = args.stream_runs or (10 if args.quick else 50)
    levels = [int(c) for c in args.clients.split(",") if c.strip()]
    if args.workers < 1 or not levels or min(levels) < 1:
        parser.error("--workers and every --clients level must be at least 1")
    postgres = bool(args.db) and args.db.startswith(("postgres://", "postgresql"))
    if args.workers > 1 and not postgres:
        parser.error("the server shares runs between workers through the database: "
                     "--workers > 1 needs --db postgresql://…")

    began = time.perf_counter()
    today = dt.date.today().isoformat()
    print(f"{today} · Python {platform.python_version()} · httpx {httpx.__version__} · "
          f"{'quick' if args.quick else 'full'} run")
    print(machine_line("start"))

    workdir = Path(tempfile.mkdtemp(prefix="orch-bench-server-"))
    schema = PgSchema(args.db) if postgres else None
    db_url = schema.url if schema else (args.db or f"sqlite:///{workdir / 'orch.db'}")
    server = Server(workdir, db_url, args.workers)
    try:
        server.start()
        print(f"server: {server.shown_command()}")
        print(f"        ready in {server.ready_seconds:.1f} s · pid {server.proc.pid if server.proc else '?'} · "
              f"log TMP/server.log (access log on)")
        print(f"graph: {GRAPH_ID}, 5 steps llm → llm → print → extract_json → print, offline model")
        print(f"load: POST {RUN_PATH} (waits for the run), closed loop, one keep-alive connection per client; "
              f"{args.warmup:g} s warm-up + {args.duration:g} s measured per level")
        levels_done, stream_times = asyncio.run(measure(server, args, levels))
    finally:
        server.stop()
        if schema:
            schema.drop()
        shutil.rmtree(workdir, ignore_errors=True)

    print()
    print_levels(levels_done)
    print("latency: request sent → whole response read (run completed); runs that finish in the window count.")
    print("CPU: CPU seconds per wall second over the measured window (100% = one core); "
          "server = its process and workers, client = this process"
          + ("; PostgreSQL's own processes are not counted." if postgres else "."))
    print()
    print_streams(stream_times, args.stream_runs)
    print()
    print(machine_line("end"))
    print(f"total {time.perf_counter() - began:.1f} s")
    failed = sum(lv.errors for lv in levels_done) + stream_times.errors
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
