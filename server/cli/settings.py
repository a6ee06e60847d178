"""`orch config`: the effective settings, secrets masked, and where each one came from."""

from __future__ import annotations

import argparse
from typing import Any

from orch.config import check_settings, shown
from orch.server.cli.common import COMPLETED, SETTING_FLAGS, add_config, command, print_json, settings_of


def cmd_config(args: argparse.Namespace) -> int:
    loaded = settings_of(args)
    values = shown(loaded)
    if args.check:
        check_settings(loaded)
    if args.json:
        print_json({"file": str(loaded.file) if loaded.file else None, "settings": values,
                    "sources": {name: loaded.sources.get(name, "default") for name in values}})
        return COMPLETED
    print(f"# configuration file: {loaded.file or 'none'}")
    width = max(map(len, values))
    for name, value in values.items():
        text = ",".join(value) if isinstance(value, list) else "" if value is None else str(value).lower() \
            if isinstance(value, bool) else str(value)
        print(f"{name:<{width}}  {text or '-':<40}  {loaded.sources.get(name, 'default')}")
    if args.check:
        print("# every setting checked: the database answers, providers and tool modules load")
    return COMPLETED


def register(sub: Any) -> None:
    p = command(sub, "config", "print the effective settings (secrets masked) and where each comes from",
                "ORCH_PORT=9000 orch config --check")
    p.add_argument("--check", action="store_true",
                   help="also check them as serving would: the database answers, providers and tool modules load")
    p.add_argument("--json", action="store_true", help="print JSON: file, settings, sources")
    for dest, (_, flag) in SETTING_FLAGS.items():
        if dest != "api_key":
            p.add_argument(flag, dest=dest, help=argparse.SUPPRESS)
    add_config(p)
    p.set_defaults(func=cmd_config)
