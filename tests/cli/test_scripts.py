"""The `orch` command as scripts use it: --json shapes, exit codes, run ids by prefix, keys,
closed pipes, --help, --version, completion."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_cli import ORCH, ROOT, orch, plain_env

MY_TOOLS = '''
"""Tools of the test's own module."""


def shout(text: str) -> str:
    """The text in capitals."""
    return text.upper()
'''
SHOUT_GRAPH = """
id: shout
name: Shout
steps:
  - {id: loud, type: tool, forced_tool: shout, tool_args: {text: "{state.user_input}"}, output_key: out}
"""


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def test_run_json_and_exit_codes_tell_outcomes_apart(tmp_path: Path, db: str) -> None:
    completed = orch("run", "graphs/research_report.yaml", "-m", "tides", "--db", db, "--json",
                     "--answer", "decision=approve", "--answer", "notes=ok")
    paused = orch("run", "graphs/research_report.yaml", "-m", "tides", "--db", db, "--json")
    bad = tmp_path / "fails.yaml"
    bad.write_text("id: fails\nname: Fails\nsteps:\n  - {id: t, type: tool, forced_tool: calculator, "
                   "tool_args: {expression: '1 / 0'}, output_key: out}\n")
    failed = orch("run", str(bad), "--db", db, "--json")
    assert (completed.returncode, paused.returncode, failed.returncode) == (0, 3, 1)
    done, waiting, broken = (json.loads(p.stdout) for p in (completed, paused, failed))
    assert set(done) == {"status", "run_id", "response", "shared_state", "step_history", "total_cost_usd"}
    assert (done["status"], waiting["status"], broken["status"]) == ("completed", "paused", "failed")
    assert waiting["human_input_required"]["step_id"] == "step-approve"
    assert [h["step_id"] for h in done["step_history"]][-1] == "step-publish"
    assert "division by zero" in broken["response"]
    usage = orch("run", "graphs/research_report.yaml", "--db", db, "--state", "nokey")
    missing = orch("runs", "show", "run_nothing_like_it", "--db", db)
    assert (usage.returncode, usage.stderr) == (2, "orch: --state expects key=value, got 'nokey'\n")
    assert (missing.returncode, missing.stderr) == (4, "orch: no run matches 'run_nothing_like_it'\n")
    assert orch("runs", "frobnicate", "--db", db).returncode == 2


def test_runs_list_and_show_json_and_ids_by_prefix(db: str) -> None:
    first = json.loads(orch("run", "graphs/research_report.yaml", "-m", "one", "--db", db, "--json").stdout)
    second = json.loads(orch("run", "graphs/research_report.yaml", "-m", "two", "--db", db, "--json").stdout)
    listed = json.loads(orch("runs", "list", "--db", db, "--json").stdout)
    assert [r["run_id"] for r in listed] == [second["run_id"], first["run_id"]]
    assert set(listed[0]) == {"run_id", "orchestration_id", "status", "cost_usd", "created_at", "updated_at",
                              "finished_at", "parent_run_id"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", listed[0]["created_at"])
    common = os.path.commonprefix([first["run_id"], second["run_id"]])
    ambiguous = orch("runs", "show", common, "--db", db)
    assert ambiguous.returncode == 2 and ambiguous.stderr.startswith(f"orch: '{common}' matches several runs: ")
    prefix = first["run_id"][:len(common) + 1]
    shown = json.loads(orch("runs", "show", prefix, "--db", db, "--json", "--events").stdout)
    assert set(shown) == {"run", "steps", "state", "response", "pending_gate", "in_flight", "waiting", "events"}
    assert shown["run"]["run_id"] == first["run_id"] and shown["run"]["status"] == "paused"
    assert shown["pending_gate"]["step_id"] == "step-approve" and shown["state"]["user_input"] == "one"
    assert [e["type"] for e in shown["events"]][:2] == ["run_start", "step_start"]
    assert shown["events"][-1] == {**shown["events"][-1], "type": "done", "status": "paused"}
    text = orch("runs", "show", prefix, "--db", db, "--events").stdout
    assert f"run {first['run_id']}: paused\n  orchestration  orch-research-report (version " in text
    assert re.search(r"\n  created        \d{4}-\d\d-\d\dT[\d:.]+Z\n  updated  ", text)
    assert "\nstate:\n  user_input: \"one\"\n" in text
    assert "paused at step-approve: Please review the draft article" in text
    assert re.search(r"\nevents:\n +1  [\d:.]+  run_start +orch-research-report\n", text)
    resumed = orch("runs", "resume", prefix, "--db", db, "--answer", "decision=approve", "--json")
    assert (resumed.returncode, json.loads(resumed.stdout)["status"]) == (0, "completed")
    cancelled = orch("runs", "cancel", second["run_id"], "--db", db, "--json")
    assert (cancelled.returncode, json.loads(cancelled.stdout)["status"]) == (0, "cancelled")
    again = orch("runs", "cancel", second["run_id"], "--db", db)
    assert (again.returncode, again.stderr) == (
        1, f"orch: run '{second['run_id']}' is cancelled; only running or paused runs can be cancelled\n")


def test_keys_are_created_listed_and_revoked(db: str) -> None:
    created = json.loads(orch("keys", "create", "--name", "ci", "--db", db, "--json").stdout)
    assert created["key"].startswith("orch_") and created["name"] == "ci"
    plain = orch("keys", "create", "--db", db)
    assert plain.stdout.startswith("orch_") and "only its hash is kept" in plain.stderr
    listed = json.loads(orch("keys", "list", "--db", db, "--json").stdout)
    assert [k["name"] for k in listed] == ["ci", ""] and listed[0]["id"] == created["id"]
    assert set(listed[0]) == {"id", "name", "created_at"} and created["key"] not in orch("keys", "list", "--db", db).stdout
    revoked = orch("keys", "revoke", created["id"], "--db", db)
    assert revoked.returncode == 0 and [k["id"] for k in json.loads(
        orch("keys", "list", "--db", db, "--json").stdout)] == [listed[1]["id"]]
    gone = orch("keys", "revoke", created["id"], "--db", db)
    assert (gone.returncode, gone.stderr) == (4, f"orch: no API key has the id '{created['id']}'\n")


def test_a_closed_pipe_ends_quietly(db: str) -> None:
    for message in ("a", "b", "c"):
        orch("run", "graphs/research_report.yaml", "-m", message, "--db", db)
    shell = subprocess.run(["bash", "-c", f"{' '.join(ORCH)} runs list --db {db} | head -1; "
                            "echo \"status=${PIPESTATUS[0]}\" >&2"], capture_output=True, text=True, cwd=ROOT,
                           env={**plain_env(), "PYTHONPATH": str(ROOT)}, timeout=120)
    assert len(shell.stdout.splitlines()) == 1 and shell.stdout.startswith("run_orch-research-report_")
    assert shell.stderr in ("status=0\n", "status=141\n"), shell.stderr  # 0: it all fit in the pipe first


def test_help_has_an_example_for_every_command_and_version_and_completion(tmp_path: Path) -> None:
    top = orch("--help").stdout
    commands = re.findall(r"'(\w+)'", orch("nope").stderr.split("choose from")[1])
    assert commands == ["serve", "validate", "graph", "run", "runs", "keys", "config", "mcp", "completion"]
    assert "exit status: 0 completed, 1 failed, 2 usage, 3 paused, 4 not found" in top
    for name in commands:
        shown = orch(name, "--help").stdout
        assert "\nexample:\n  orch " in shown or "\nexample:\n  " in shown, name
    assert re.fullmatch(r"orch \d+\.\d+\.\d+\S*\n", orch("--version").stdout)
    script = orch("completion", "bash").stdout
    completed = subprocess.run(
        ["bash", "-c", 'source /dev/stdin; COMP_WORDS=(orch ru); COMP_CWORD=1; COMP_LINE="orch ru"; '
                       'COMP_POINT=7; _shtab_orch; echo "${COMPREPLY[@]}"'],
        input=script, capture_output=True, text=True, timeout=60)
    assert completed.stdout.split() == ["run", "runs"], completed.stderr
    assert "#compdef orch" in orch("completion", "zsh").stdout


def test_validate_loads_the_configured_tool_modules(tmp_path: Path) -> None:
    (tmp_path / "mytools.py").write_text(MY_TOOLS)
    graph = tmp_path / "shout.yaml"
    graph.write_text(SHOUT_GRAPH)
    env = {"PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"}
    without = json.loads(orch("validate", str(graph), "--json").stdout)
    assert [(p["severity"], p["code"]) for p in without["problems"]] == [("warning", "unregistered-tool")]
    with_module = orch("validate", str(graph), "--json", env={**env, "ORCH_TOOL_MODULES": "mytools"})
    report = json.loads(with_module.stdout)
    assert (with_module.returncode, report["problems"], report["orchestrations"][0]["id"]) == (0, [], "shout")
    (tmp_path / "orch.toml").write_text('tool_modules = ["mytools"]\n')
    from_file = orch("validate", str(graph), cwd=tmp_path, env=env)
    assert (from_file.returncode, from_file.stdout.startswith("ok: shout"), "warning" in from_file.stdout) == (
        0, True, False)
    missing = orch("validate", str(graph), env={"ORCH_TOOL_MODULES": "nosuchtools"})
    assert (missing.returncode, missing.stderr) == (
        2, "orch: tool_modules (ORCH_TOOL_MODULES): cannot import 'nosuchtools': No module named 'nosuchtools'\n")
