"""Operator settings: every one has a default, and may be set in `orch.toml`, by an ORCH_*
environment variable or by a flag, each overriding the one before (orch.config loads them in
that order; `from_env` here reads the environment alone). docs/operations.md has the table."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import msgspec

_LISTS = ("tool_modules", "child_env_passthrough", "cors_origins", "mcp_stdio_commands", "api_keys")  # comma-separated in the environment


class SettingsError(ValueError):
    """An ORCH_* variable or flag holds a value its setting cannot take."""


class Settings(msgspec.Struct, kw_only=True):
    database_url: str = "sqlite:///orch-data/orch.db"
    graphs_dir: str = "graphs"
    sqlite_synchronous: str = "NORMAL"  # NORMAL survives a process crash; FULL a power cut
    default_provider: str = "offline"
    default_model: str = "offline"
    openai_base_url: str = "https://api.openai.com/v1"
    openai_api_key: str | None = None
    anthropic_base_url: str = "https://api.anthropic.com"
    anthropic_api_key: str | None = None
    price_file: str | None = None
    tool_modules: list[str] = []
    sandbox_root: str = "orch-data/sandbox"
    allow_http_transforms: bool = False
    lease_seconds: float = 30.0
    transform_timeout_seconds: float = 10.0
    transform_cpu_seconds: int = 10
    transform_memory_mb: int = 512
    # Browser access: origins allowed to call the API from their pages (CORS, none by default),
    # and the key that signs console sign-in cookies (random per start when not given; give
    # one to keep people signed in across restarts, and the same to every server).
    cors_origins: list[str] = []
    session_secret: str | None = None
    transform_max_processes: int = 16  # threads count too; enforced only when isolated
    # auto: isolated where bubblewrap works, else unisolated only in local mode (docs/security.md)
    transform_isolation: Literal["auto", "isolated", "unisolated"] = "auto"
    transform_bwrap: str = "bwrap"  # the bubblewrap command
    transform_uid: int = 65534  # the unprivileged id transforms run as when the server runs as root
    child_env_passthrough: list[str] = []  # variables a child process (an MCP server) may inherit
    # MCP servers (docs/mcp.md): the operator's own declarations, which win over graph files';
    # local commands (stdio servers) start only when allowed and listed ("*" lists every command).
    mcp_servers_file: str | None = None
    mcp_allow_stdio: bool = False
    mcp_stdio_commands: list[str] = []
    mcp_connect_timeout_seconds: float = 15.0
    mcp_call_timeout_seconds: float = 300.0
    # Serving (`orch serve`): where, how many processes, who may call, what is logged.
    host: str = "127.0.0.1"  # also with API keys: serving other machines is asked for, never implied
    port: int = 8000
    workers: int = 1
    api_keys: list[str] = []
    log_format: Literal["console", "json"] = "console"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    metrics_public: bool = False  # /metrics without an API key (for a scraper on a private network)
    max_request_body_bytes: int = 10_000_000
    keep_alive_seconds: float = 5.0  # an idle kept-alive connection is closed after this
    shutdown_grace_seconds: float = 5.0  # on stop, open event streams are cut after this

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: object) -> "Settings":
        env = dict(os.environ if env is None else env)
        values: dict[str, object] = {}
        for name in cls.__struct_fields__:
            raw = env.get("ORCH_" + name.upper())
            if raw is None:
                continue
            if name in _LISTS:
                values[name] = [m.strip() for m in raw.split(",") if m.strip()]
            else:
                values[name] = raw
        if "OPENAI_API_KEY" in env and "openai_api_key" not in values:
            values["openai_api_key"] = env["OPENAI_API_KEY"]
        if "ANTHROPIC_API_KEY" in env and "anthropic_api_key" not in values:
            values["anthropic_api_key"] = env["ANTHROPIC_API_KEY"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            settings = msgspec.convert(values, cls, strict=False)
        except msgspec.ValidationError as exc:
            message, _, where = str(exc).partition(" - at `$.")
            name = where.rstrip("`").split(".")[0].split("[")[0]
            raise SettingsError(f"ORCH_{name.upper()}: {message}" if name else message) from None
        if settings.database_url.startswith("sqlite:///"):
            Path(settings.database_url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        return settings
