"""`orch serve`: the HTTP API and the console."""

from __future__ import annotations

import argparse
from typing import Any

from orch.config import check_settings
from orch.server.cli.common import COMPLETED, USAGE, CliError, add_db, command, settings_of


def cmd_serve(args: argparse.Namespace) -> int:
    from orch.observe.logs import configure_logging
    from orch.sandbox import IsolationUnavailable
    from orch.server.auth import NoApiKeyConfigured
    from orch.server.main import serve

    loaded = settings_of(args)
    s = loaded.settings
    configure_logging(s.log_format, s.log_level, secrets=loaded.secrets())
    check_settings(loaded)
    try:
        serve(s, allow_unauthenticated=args.local)
    except (NoApiKeyConfigured, IsolationUnavailable, ValueError) as exc:
        raise CliError(str(exc), USAGE) from None
    return COMPLETED


def register(sub: Any) -> None:
    p = command(sub, "serve", "serve the HTTP API and the console (on 127.0.0.1 unless --host says otherwise)",
                "orch serve --local                      # this machine only, no API key\n"
                "ORCH_API_KEYS=k1 orch serve --host 0.0.0.0 --workers 4 --db postgresql://orch@db/orch")
    p.add_argument("--host", help="address to listen on (setting host; default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (setting port; default 8000)")
    p.add_argument("--graphs", help="graphs directory (setting graphs_dir; default graphs)")
    p.add_argument("--workers", type=int, help="worker processes; more than 1 needs PostgreSQL (setting workers)")
    p.add_argument("--api-key", action="append", help="accept this API key (setting api_keys, also ORCH_API_KEYS)")
    p.add_argument("--local", action="store_true", help="no API keys: serve 127.0.0.1 only and accept every request")
    p.add_argument("--log-format", choices=["console", "json"], help="log lines for people or machines (setting log_format)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="setting log_level")
    add_db(p)
    p.set_defaults(func=cmd_serve)
