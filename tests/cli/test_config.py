"""Settings from orch.toml, the environment and flags; `orch config`; what a newcomer sees when
the server starts with a configuration file, and when a setting cannot work."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from orch.config import load_settings, shown
from tests.server.serving import PRINT_GRAPH, Served, free_port, write_graphs
from tests.test_cli import orch


def test_flags_win_over_the_environment_which_wins_over_the_file(tmp_path: Path) -> None:
    (tmp_path / "orch.toml").write_text('port = 9001\nworkers = 3\nlog_format = "json"\napi_keys = ["file-key-123"]\n')
    loaded = load_settings({"port": (9003, "--port")}, env={"ORCH_PORT": "9002", "ORCH_WORKERS": "2"}, cwd=tmp_path)
    s = loaded.settings
    assert (s.port, s.workers, s.log_format, s.api_keys, s.host) == (9003, 2, "json", ["file-key-123"], "127.0.0.1")
    assert {k: loaded.sources[k] for k in ("port", "workers", "log_format")} == {
        "port": "--port", "workers": "ORCH_WORKERS", "log_format": str(tmp_path / "orch.toml")}


def test_orch_config_prints_the_effective_settings_with_secrets_masked(tmp_path: Path) -> None:
    (tmp_path / "orch.toml").write_text('graphs_dir = "g"\nsession_secret = "a-session-secret-1234"\n')
    (tmp_path / "g").mkdir()
    env = {"ORCH_DATABASE_URL": "postgresql://app:hunter2hunter2@db.example:5432/orch",
           "OPENAI_API_KEY": "sk-live-abcdef123456", "ORCH_API_KEYS": "k-one-1234,k-two-5678"}
    out = orch("config", "--json", cwd=tmp_path, env=env)
    body = json.loads(out.stdout)
    assert body["file"] == str(tmp_path / "orch.toml")
    assert {k: body["settings"][k] for k in ("database_url", "openai_api_key", "api_keys", "session_secret",
                                               "anthropic_api_key", "host")} == {
        "database_url": "postgresql://app:********@db.example:5432/orch", "openai_api_key": "********",
        "api_keys": ["********", "********"], "session_secret": "********", "anthropic_api_key": None,
        "host": "127.0.0.1"}
    assert {k: body["sources"][k] for k in ("database_url", "openai_api_key", "graphs_dir", "port")} == {
        "database_url": "ORCH_DATABASE_URL", "openai_api_key": "OPENAI_API_KEY",
        "graphs_dir": str(tmp_path / "orch.toml"), "port": "default"}
    text = orch("config", cwd=tmp_path, env=env).stdout
    for secret in ("hunter2hunter2", "sk-live-abcdef123456", "k-one-1234", "a-session-secret-1234"):
        assert secret not in out.stdout + text
    assert f"# configuration file: {tmp_path / 'orch.toml'}\n" in text
    assert any(line.split() == ["database_url", "postgresql://app:********@db.example:5432/orch", "ORCH_DATABASE_URL"]
               for line in text.splitlines())


def test_settings_that_cannot_work_are_named_in_one_line(tmp_path: Path) -> None:
    cases = [
        ({"ORCH_DATABASE_URL": "mysql://db/orch"}, "orch: database_url (ORCH_DATABASE_URL): unsupported database "
         "'mysql'; expected sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DATABASE"),
        ({"ORCH_DEFAULT_PROVIDER": "opnai"},
         "orch: default_provider (ORCH_DEFAULT_PROVIDER): unknown provider 'opnai'; valid: anthropic, offline, openai"),
        ({"ORCH_DEFAULT_PROVIDER": "anthropic"}, "orch: default_provider (ORCH_DEFAULT_PROVIDER): provider "
         "'anthropic' is not configured: set anthropic_api_key (ORCH_ANTHROPIC_API_KEY or ANTHROPIC_API_KEY)"),
        ({"ORCH_TOOL_MODULES": "no_such_tools"},
         "orch: tool_modules (ORCH_TOOL_MODULES): cannot import 'no_such_tools': No module named 'no_such_tools'"),
        ({"ORCH_PORT": "http"}, "orch: port (ORCH_PORT): Expected `int`, got `str`"),
        ({"ORCH_WORKERS": "0"}, "orch: workers (ORCH_WORKERS): must be 1 or more, got 0"),
        ({"ORCH_LOG_FORMAT": "xml"}, "orch: log_format (ORCH_LOG_FORMAT): Invalid enum value 'xml'"),
        ({"OTEL_TRACES_EXPORTER": "zipkin"},
         "orch: OTEL_TRACES_EXPORTER: no span exporter 'zipkin' is installed; installed: console, otlp"),
    ]
    for env, message in cases:
        port = [] if "ORCH_PORT" in env else ["--port", str(free_port())]  # a flag would win
        out = orch("serve", *port, cwd=tmp_path,
                   env={"ORCH_API_KEYS": "k-123456", "ORCH_DATABASE_URL": f"sqlite:///{tmp_path}/o.db", **env})
        assert (out.returncode, out.stderr) == (2, message + "\n")
    (tmp_path / "orch.toml").write_text('databse_url = "x"\n')
    typo = orch("config", cwd=tmp_path)
    assert (typo.returncode, typo.stderr) == (
        2, f"orch: {tmp_path / 'orch.toml'}: unknown setting 'databse_url'; did you mean 'database_url'?\n")


def test_a_newcomer_starts_the_server_from_a_config_file_and_gets_one_line_for_a_bad_database(tmp_path: Path) -> None:
    write_graphs(tmp_path, PRINT_GRAPH)
    port = free_port()
    (tmp_path / "orch.toml").write_text(
        f'graphs_dir = "graphs"\ndatabase_url = "sqlite:///data/orch.db"\nport = {port}\n'
        f'api_keys = ["newcomer-key-0001"]\nlog_format = "json"\n')
    with Served(tmp_path, port=port) as server:  # `--port` repeats the file's port
        run = server.post("/orchestrations/o-print/run", {"message": "you"}, "newcomer-key-0001")
        assert run.json()["response"] == "hi you"
        assert httpx.get(server.url + "/metrics").status_code == 401
        assert listening_on(port) == ["127.0.0.1"]  # although keys exist
    assert (tmp_path / "data" / "orch.db").is_file()
    assert f"Console: http://127.0.0.1:{port}/ui" in server.out.read_text()
    assert all(line.startswith("{") for line in server.logs().splitlines() if line.strip())  # JSON logs

    (tmp_path / "orch.toml").write_text('database_url = "postgresql://orch:s3cret-pw@127.0.0.1:1/orch"\n'
                                        'api_keys = ["newcomer-key-0001"]\n')
    out = orch("serve", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.startswith(
        f"orch: database_url ({tmp_path / 'orch.toml'}): cannot connect to postgresql://orch:********@127.0.0.1:1/orch: ")
    assert out.stderr.count("\n") == 1 and "s3cret-pw" not in out.stderr and "Traceback" not in out.stderr


def listening_on(port: int) -> list[str]:
    """The IPv4 addresses a socket listens on at `port` (from /proc/net/tcp)."""
    found = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:
            found.append(".".join(str(int(address[i:i + 2], 16)) for i in (6, 4, 2, 0)))
    return found
