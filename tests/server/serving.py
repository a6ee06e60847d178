"""`orch serve` in a process of its own, as an operator starts it, with its standard output (the
banner) and standard error (the logs) kept apart."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]

PRINT_GRAPH = """
id: o-print
name: Print
steps:
  - {id: hello, type: print, print_content: "hi {state.user_input}", output_key: out}
"""
GATE_GRAPH = """
id: o-gate
name: Gate
steps:
  - {id: ask, type: human, human_prompt: "Go on?", human_fields: [{name: ok, type: boolean}], next_step_id: done}
  - {id: done, type: print, print_content: "done", output_key: out}
"""
LLM_GRAPH = """
id: o-llm
name: LLM
steps:
  - {id: write, type: llm, prompt_template: "Write about {state.user_input}", output_key: text}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_graphs(directory: Path, *texts: str) -> Path:
    graphs = directory / "graphs"
    graphs.mkdir(exist_ok=True)
    for i, text in enumerate(texts):
        (graphs / f"g{i}.yaml").write_text(text)
    return graphs


class Served:
    def __init__(self, workdir: Path, *args: str, env: dict[str, str] | None = None, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.out, self.err = workdir / "serve.out", workdir / "serve.err"
        base = {k: v for k, v in os.environ.items() if not k.startswith(("ORCH_", "OTEL_", "PROMETHEUS_"))}
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "orch.server.cli", "serve", "--port", str(self.port), *args],
                cwd=workdir, stdout=out, stderr=err, start_new_session=True,
                env={**base, "PYTHONPATH": str(ROOT), **(env or {})})

    def ready(self, timeout: float = 60) -> "Served":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"orch serve exited {self.proc.returncode}: {self.output()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"orch serve did not start: {self.output()}")

    def output(self) -> str:
        return self.out.read_text() + self.err.read_text()

    def logs(self) -> str:
        return self.err.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def post(self, path: str, body: Any, key: str | None = None, **headers: str) -> httpx.Response:
        auth = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.post(self.url + "/api/v1" + path, json=body, headers={**auth, **headers}, timeout=60)

    def __enter__(self) -> "Served":
        return self.ready()

    def __exit__(self, *exc: object) -> None:
        self.stop()
