"""The `orch` command as a user runs it: a real subprocess for the terminal flows."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ORCH = [sys.executable, "-m", "orch.server.cli"]
ANSI = re.compile(rb"\x1b\[[0-9;]*m")


def orch(*args: str, cwd: Path = ROOT, stdin: str = "", env: dict[str, str] | None = None,
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ORCH, *args], cwd=cwd, capture_output=True, text=True, input=stdin, timeout=120,
                          env={**plain_env(), "PYTHONPATH": str(ROOT), **(env or {})})


def plain_env() -> dict[str, str]:
    """The environment without variables that force or forbid colour."""
    return {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "NO_COLOR", "TERM")}


def test_validate_lists_each_graph_and_exits_0() -> None:
    out = orch("validate", "graphs")
    assert out.returncode == 0, out.stderr
    lines = [line.split(" (")[0] for line in out.stdout.splitlines() if line.startswith("ok: ")]
    assert lines == ["ok: orch-batch-summaries", "ok: orch-calculator-tools", "ok: orch-market-scan",
                     "ok: orch-nested-report", "ok: orch-research-report", "ok: orch-review-loop",
                     "ok: orch-triage-router"]


def test_validate_reports_every_problem_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: x\nname: X\nsteps:\n  - {id: a, type: agnt}\n  - {id: b, type: print, next_step_id: zz}\n")
    out = orch("validate", str(bad))
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        f"error: {bad}: $.steps[0].type (step a): unknown step type 'agnt' [unknown-step-type]; did you mean 'agent'?",
        f"error: {bad}: step b: next_step_id points to 'zz', which is not a step [unknown-step]; known steps: b",
        f"error: {bad}: step b: print step needs 'print_content' [missing-field]; text with {{state.key}} placeholders",
        "3 error(s)",
    ]


def test_graph_renders_mermaid_dot_and_svg() -> None:
    mermaid = orch("graph", "graphs/research_report.yaml", "--format", "mermaid")
    dot = orch("graph", "graphs/research_report.yaml", "--format", "dot")
    svg = orch("graph", "graphs/research_report.yaml", "--format", "svg")
    assert mermaid.returncode == dot.returncode == svg.returncode == 0
    assert mermaid.stdout.startswith("flowchart TD\n") and '|"true"| s_step_publish' in mermaid.stdout
    assert dot.stdout.startswith('digraph "orch-research-report" {')
    assert svg.stdout.startswith('<svg xmlns="http://www.w3.org/2000/svg" class="orch-graph"')
    assert svg.stdout.count('class="step ') == 5 and svg.stdout.endswith("</svg>\n")


def test_run_with_answers_then_list_and_show(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    run = orch("run", "graphs/research_report.yaml", "-m", "Synapse AI platform", "--db", db,
               "--answer", "decision=approve", "--answer", "notes=Fine")
    assert run.returncode == 0, run.stderr
    assert re.search(r"step-research\s+agent\s+completed\s+turns=2\s+cost=\$0\.000\d+", run.stdout)
    assert "\x1b[" not in run.stdout  # no colour into a pipe
    assert "⏸ step-approve waits for a person" in run.stdout and "completed" in run.stdout
    run_id = re.search(r"run id: (\S+)", run.stdout).group(1)
    listed = orch("runs", "list", "--db", db)
    assert run_id in listed.stdout and "completed" in listed.stdout
    shown = orch("runs", "show", run_id, "--db", db)
    assert f"run {run_id}: completed" in shown.stdout


def test_paused_run_resumed_from_another_command(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    first = orch("run", "graphs/research_report.yaml", "-m", "tides", "--db", db)
    assert first.returncode == 3 and "paused at step-approve" in first.stdout  # 3: paused
    run_id = re.search(r"run id: (\S+)", first.stdout).group(1)
    bad = orch("runs", "resume", run_id, "--db", db, "--answer", "decision=maybe")
    assert "invalid answer: decision: 'maybe' is not one of: approve, reject" in bad.stdout
    good = orch("runs", "resume", run_id, "--db", db, "--answer", "decision=reject")
    assert f"run {run_id}: completed" in good.stdout
    again = orch("runs", "resume", run_id, "--db", db, "--answer", "decision=approve")
    assert again.returncode == 1 and "is completed, not paused" in again.stderr


def test_show_names_the_steps_waiting_for_other_branches(tmp_path: Path) -> None:
    graph = tmp_path / "meet.yaml"
    graph.write_text("""
id: meet
name: Meet
state_schema:
  trail: {type: "list[str]", reducer: append}
steps:
  - {id: P, type: parallel, parallel_branches: [ask, quick], next_step_id: J}
  - {id: ask, type: human, human_prompt: "Deeper?", human_fields: [{name: ok, type: boolean}], next_step_id: check}
  - {id: check, type: if_else, if_condition: "state.human_response.ok", if_true_step_id: m, if_false_step_id: J}
  - {id: quick, type: llm, prompt_template: quick, output_key: trail, next_step_id: m}
  - {id: m, type: llm, prompt_template: more, output_key: trail, next_step_id: J}
  - {id: J, type: print, print_content: "{state.trail}", output_key: final}
""")
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    first = orch("run", str(graph), "-m", "x", "--db", db)
    run_id = re.search(r"run id: (\S+)", first.stdout).group(1)
    shown = orch("runs", "show", run_id, "--db", db)
    assert "waiting for other branches to arrive: m\n\npaused at ask: Deeper?" in shown.stdout
    done = orch("runs", "resume", run_id, "--db", db, "--answer", "ok=yes")
    assert re.findall(r"^  (\w+) ", done.stdout, re.M) == ["P", "quick", "ask", "check", "m", "J"]


@pytest.mark.skipif(not hasattr(pty, "openpty"), reason="needs a pseudo-terminal")
def test_gate_questions_are_asked_at_the_terminal(tmp_path: Path) -> None:
    master, slave = pty.openpty()
    proc = subprocess.Popen([*ORCH, "run", "graphs/research_report.yaml", "-m", "tides",
                             "--db", f"sqlite:///{tmp_path / 'tty.db'}"],
                            cwd=ROOT, stdin=slave, stdout=slave, stderr=slave,
                            env={**plain_env(), "PYTHONPATH": str(ROOT), "TERM": "xterm-256color"})
    os.close(slave)
    seen = b""

    def read_until(text: bytes) -> None:
        nonlocal seen
        while text not in ANSI.sub(b"", seen):
            ready, _, _ = select.select([master], [], [], 60)
            assert ready, f"timed out waiting for {text!r}; got {seen[-500:]!r}"
            seen += os.read(master, 4096)

    try:
        read_until(b"Decision [approve,reject]: ")
        os.write(master, b"approve\n")
        read_until(b"Editor notes: ")
        os.write(master, b"Ship it\n")
        read_until(b": completed")
    finally:
        proc.wait(30)
        try:
            while select.select([master], [], [], 0.1)[0]:
                seen += os.read(master, 4096)
        except OSError:
            pass
        os.close(master)
    assert proc.returncode == 0
    assert b"\x1b[" in seen  # colour on a terminal (the other tests read pipes: none there)
    assert b"step-publish completed" in ANSI.sub(b"", seen)


def test_gate_answers_can_be_piped_and_a_missing_file_is_named(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'pipe.db'}"
    piped = orch("run", "graphs/research_report.yaml", "-m", "tides", "--db", db, stdin="yes\nShip it\n")
    assert piped.returncode == 0 and re.search(r"run \S+: completed", piped.stdout)
    assert "Published: tides" in piped.stdout
    short = orch("run", "graphs/research_report.yaml", "-m", "tides", "--db", db, stdin="")
    assert "paused at step-approve: Please review the draft article" in short.stdout
    assert "  decision: select [approve,reject]" in short.stdout
    missing = orch("run", "graphs/nope.yaml", "-m", "x", "--db", db)
    assert (missing.returncode, missing.stderr.strip()) == (4, "orch: graphs/nope.yaml: no such file")


def test_local_mode_refuses_to_listen_beyond_this_machine() -> None:
    out = orch("serve", "--local", "--host", "0.0.0.0", "--port", "1")
    assert out.returncode == 2
    assert "--local accepts requests without an API key, so it serves only on this machine" in out.stderr


def test_run_says_when_transforms_run_unisolated(tmp_path: Path) -> None:
    graph = tmp_path / "double.yaml"
    graph.write_text("id: double\nname: Double\nsteps:\n"
                     "  - {id: t, type: transform, transform_code: 'result = int(state[\"user_input\"]) * 2', output_key: out}\n")
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    out = orch("run", str(graph), "-m", "21", "--db", db, env={"ORCH_TRANSFORM_BWRAP": "/nonexistent/bwrap"})
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines() == [
        "orch: transforms run unisolated (bubblewrap is not installed: no `/nonexistent/bwrap` command); local mode: "
        "graph code runs as your user, with your files and your network"]
    assert re.search(r"run \S+: completed", out.stdout)
