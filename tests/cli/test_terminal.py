"""The `orch` command at a terminal (a pseudo-terminal): live progress naming the step on every
line, colour only there, and Ctrl-C without a traceback."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
from pathlib import Path

import pytest

from tests.test_cli import ANSI, ORCH, ROOT, orch, plain_env

pytestmark = pytest.mark.skipif(not hasattr(pty, "openpty"), reason="needs a pseudo-terminal")


class Terminal:
    """`orch ARGS` with a pseudo-terminal for standard input, output and error."""

    def __init__(self, *args: str) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen([*ORCH, *args], cwd=ROOT, stdin=slave, stdout=slave, stderr=slave,
                                     env={**plain_env(), "PYTHONPATH": str(ROOT), "TERM": "xterm-256color"})
        os.close(slave)
        self.seen = b""

    def text(self) -> str:
        return ANSI.sub(b"", self.seen).decode(errors="replace").replace("\r\n", "\n")

    def read_until(self, text: str, timeout: float = 60) -> None:
        while text not in self.text():
            ready, _, _ = select.select([self.master], [], [], timeout)
            assert ready, f"timed out waiting for {text!r}; got {self.text()[-500:]!r}"
            self.seen += os.read(self.master, 4096)

    def finish(self) -> int:
        code = self.proc.wait(30)
        try:
            while select.select([self.master], [], [], 0.2)[0]:
                self.seen += os.read(self.master, 4096)
        except OSError:
            pass
        os.close(self.master)
        return code


def test_progress_names_the_step_on_every_line_in_colour(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'tty.db'}"
    term = Terminal("run", "graphs/market_scan.yaml", "-m", "tea", "--db", db)
    term.read_until(": completed")
    assert term.finish() == 0
    assert b"\x1b[1mstep-news\x1b[0m" in term.seen  # the step in bold
    piped = orch("run", "graphs/market_scan.yaml", "-m", "tea", "--db", db)
    assert "\x1b[" not in piped.stdout
    for text in (term.text(), piped.stdout):
        progress = text.split("run id: ")[1].split("\n\nrun ")[0].splitlines()[1:]
        assert len(progress) >= 15
        for line in progress:  # parallel branches interleave: each line says whose it is
            assert re.match(r"(▶|✓|✗|↻|⏸) step-[a-z]+ |    step-[a-z]+: ", line), line
        assert "    step-news: turn 1: answered  $0.000" in text


def test_ctrl_c_at_a_gate_question_stops_without_a_traceback(tmp_path: Path) -> None:
    term = Terminal("run", "graphs/research_report.yaml", "-m", "tides", "--db", f"sqlite:///{tmp_path / 'c.db'}")
    term.read_until("Decision [approve,reject]: ")
    run_id = re.search(r"run id: (\S+)", term.text()).group(1)
    term.proc.send_signal(signal.SIGINT)
    assert term.finish() == 130
    assert "Traceback" not in term.text()
    assert term.text().rstrip().endswith(
        f"orch: interrupted; run {run_id} stays where it stood: continue it with `orch runs recover`, "
        f"or `orch runs cancel {run_id}`")
    shown = orch("runs", "show", run_id[:-3], "--db", f"sqlite:///{tmp_path / 'c.db'}")
    assert f"run {run_id}: paused" in shown.stdout
