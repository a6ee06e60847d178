"""Where settings come from, and checking them before anything starts.

Each setting (orch.settings.Settings) takes the first value found among: a flag, its ORCH_*
environment variable, the configuration file, its default. The file is `orch.toml` in the
current directory, or the one named by `--config` or ORCH_CONFIG; it holds the settings by name,
flat (`database_url = "postgresql://…"`). `load_settings` remembers where each value came from,
so that every problem names the setting and its source in one line:

    database_url (ORCH_DATABASE_URL): cannot connect to postgresql://app:********@db:5432/orch: …
"""

from __future__ import annotations

import difflib
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import msgspec

from orch.settings import _LISTS, Settings, SettingsError

CONFIG_FILE = "orch.toml"
CONFIG_ENV = "ORCH_CONFIG"
SECRETS = frozenset({"openai_api_key", "anthropic_api_key", "session_secret", "api_keys"})
PROVIDERS = ("anthropic", "offline", "openai")
MASK = "********"
_VENDOR_ENV = {"openai_api_key": "OPENAI_API_KEY", "anthropic_api_key": "ANTHROPIC_API_KEY"}


@dataclass
class Loaded:
    """Settings, and where each value came from: "default", the file's path, the variable's
    name or the flag."""

    settings: Settings
    sources: dict[str, str] = field(default_factory=dict)
    file: Path | None = None

    def where(self, name: str) -> str:
        return f"{name} ({self.sources.get(name, 'default')})"

    def secrets(self) -> list[str]:
        return secrets_of(self.settings)


def secrets_of(settings: Settings, *extra: str) -> list[str]:
    """Every secret value configured (for log scrubbing), the database password included."""
    s = settings
    out = [v for v in (s.openai_api_key, s.anthropic_api_key, s.session_secret, *extra) if v]
    out += s.api_keys
    password = _url_password(s.database_url)
    if password:
        out.append(password)
    return out


def load_settings(flags: Mapping[str, tuple[object, str]] | None = None, *, env: Mapping[str, str] | None = None,
                  config: str | Path | None = None, cwd: Path | None = None) -> Loaded:
    """`flags`: setting name → (value, the flag as typed); values of None are ignored.
    `config`: the file to read (else ORCH_CONFIG, else ./orch.toml when there is one)."""
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    sources: dict[str, str] = {}
    path = _config_path(config, env, cwd or Path.cwd())
    if path is not None:
        for name, value in _read_file(path).items():
            values[name], sources[name] = value, str(path)
    for name in Settings.__struct_fields__:
        variable = "ORCH_" + name.upper()
        raw = env.get(variable)
        if raw is None and name in _VENDOR_ENV:
            variable = _VENDOR_ENV[name]
            raw = env.get(variable)
        if raw is None:
            continue
        values[name] = [m.strip() for m in raw.split(",") if m.strip()] if name in _LISTS else raw
        sources[name] = variable
    for name, (value, flag) in (flags or {}).items():
        if value is not None and value != []:
            values[name], sources[name] = value, flag
    try:
        settings = msgspec.convert(values, Settings, strict=False)
    except msgspec.ValidationError as exc:
        message, _, at = str(exc).partition(" - at `$.")
        name = at.rstrip("`").split(".")[0].split("[")[0]
        raise SettingsError(f"{name} ({sources.get(name, 'default')}): {message}" if name else message) from None
    loaded = Loaded(settings, sources, path)
    _check_ranges(loaded)
    return loaded


def _config_path(config: str | Path | None, env: Mapping[str, str], cwd: Path) -> Path | None:
    if config is None and env.get(CONFIG_ENV):
        config = env[CONFIG_ENV]
    if config is not None:
        path = Path(config)
        if not path.is_file():
            raise SettingsError(f"configuration file {path}: no such file")
        return path
    default = cwd / CONFIG_FILE
    return default if default.is_file() else None


def _read_file(path: Path) -> dict[str, object]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: cannot be read: {exc}") from None
    known = Settings.__struct_fields__
    for name in data:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else "; docs/operations.md lists the settings"
            raise SettingsError(f"{path}: unknown setting '{name}'{hint}")
    return dict(data)


def _check_ranges(loaded: Loaded) -> None:
    s = loaded.settings
    bad: list[tuple[str, str]] = []
    if not 0 <= s.port <= 65535:
        bad.append(("port", f"{s.port} is not a TCP port (0 to 65535)"))
    for name in ("workers", "max_request_body_bytes", "transform_cpu_seconds", "transform_memory_mb",
                 "transform_max_processes"):
        if getattr(s, name) < 1:
            bad.append((name, f"must be 1 or more, got {getattr(s, name)}"))
    for name in ("lease_seconds", "keep_alive_seconds", "transform_timeout_seconds"):
        if getattr(s, name) <= 0:
            bad.append((name, f"must be more than 0, got {getattr(s, name):g}"))
    if s.shutdown_grace_seconds < 0:
        bad.append(("shutdown_grace_seconds", f"must be 0 or more, got {s.shutdown_grace_seconds:g}"))
    if bad:
        name, problem = bad[0]
        raise SettingsError(f"{loaded.where(name)}: {problem}")


# -- checks that look outside: the database, providers, tool modules, files ----------------------

def check_settings(loaded: Loaded, *, database: bool = True, providers: bool = True, tools: bool = True) -> None:
    """Raise SettingsError (one line, naming the setting) for the first setting that cannot work."""
    s = loaded.settings
    check_database_url(loaded, connect=database)
    if providers:
        check_providers(loaded)
    if tools:
        check_tool_modules(loaded)
    if s.price_file:
        from orch.cost import PriceTable

        try:
            PriceTable.from_file(s.price_file)
        except Exception as exc:  # noqa: BLE001 - any problem of the file, in one line
            raise SettingsError(f"{loaded.where('price_file')}: {one_line(exc)}") from None
    if loaded.sources.get("graphs_dir") and not Path(s.graphs_dir).is_dir():
        raise SettingsError(f"{loaded.where('graphs_dir')}: no such directory: {s.graphs_dir}")


def check_database_url(loaded: Loaded, *, connect: bool = True) -> None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from orch.store.sql import normalize_url

    where, url = loaded.where("database_url"), loaded.settings.database_url
    expected = "expected sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
    try:
        parsed = make_url(normalize_url(url))
    except (ArgumentError, ValueError):
        raise SettingsError(f"{where}: not a database URL: '{mask_url(url)}'; {expected}") from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise SettingsError(f"{where}: unsupported database '{parsed.get_backend_name()}'; {expected}")
    if not connect:
        return
    if parsed.get_backend_name() == "sqlite":
        _check_sqlite(where, parsed.database or "")
        return
    import psycopg

    try:
        conninfo = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(conninfo, connect_timeout=5):
            pass
    except Exception as exc:  # noqa: BLE001 - any failure to connect, in one line
        raise SettingsError(f"{where}: cannot connect to {mask_url(url)}: {one_line(exc)}") from None


def _check_sqlite(where: str, database: str) -> None:
    import sqlite3

    if database in ("", ":memory:"):
        return
    path = Path(database)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA schema_version").fetchone()
        conn.close()
    except (OSError, sqlite3.Error) as exc:
        raise SettingsError(f"{where}: cannot open the SQLite database {path}: {one_line(exc)}") from None


def check_providers(loaded: Loaded) -> None:
    from orch.providers import build_providers

    s = loaded.settings
    if s.default_provider not in PROVIDERS:
        raise SettingsError(f"{loaded.where('default_provider')}: unknown provider '{s.default_provider}'; "
                            f"valid: {', '.join(PROVIDERS)}")
    if s.default_provider not in build_providers(s):
        key = f"{s.default_provider}_api_key"
        raise SettingsError(f"{loaded.where('default_provider')}: provider '{s.default_provider}' is not configured: "
                            f"set {key} (ORCH_{key.upper()} or {_VENDOR_ENV[key]})")


def check_tool_modules(loaded: Loaded) -> None:
    from orch.tools import ToolRegistry

    registry = ToolRegistry.with_builtins()
    for module in loaded.settings.tool_modules:
        try:
            registry.load_module(module)
        except ModuleNotFoundError as exc:
            raise SettingsError(f"{loaded.where('tool_modules')}: cannot import '{module}': {one_line(exc)}") from None
        except Exception as exc:  # noqa: BLE001 - a module that fails to load, in one line
            raise SettingsError(f"{loaded.where('tool_modules')}: module '{module}': {one_line(exc)}") from None
        finally:
            registry.close()


# -- showing them --------------------------------------------------------------------------------

def mask_url(url: str) -> str:
    """A database URL with its password masked."""
    password = _url_password(url)
    return url.replace(":" + password + "@", ":" + MASK + "@", 1) if password else url


def _url_password(url: str) -> str | None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).password
    except (ArgumentError, ValueError):
        return None


def shown(loaded: Loaded) -> dict[str, Any]:
    """The effective settings with secrets masked: secret values as ******** (null when unset),
    the database password likewise."""
    out: dict[str, Any] = {}
    for name in Settings.__struct_fields__:
        value = getattr(loaded.settings, name)
        if name in SECRETS:
            value = [MASK for _ in value] if isinstance(value, list) else (MASK if value else None)
        elif name == "database_url":
            value = mask_url(value)
        out[name] = value
    return out


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:299] + "…"
