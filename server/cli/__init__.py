"""The `orch` command: serve the API, run graphs with live progress, validate and draw graphs,
manage runs and API keys, show the settings. One module per command group:

    serve.py       orch serve
    graphs.py      orch validate, orch graph
    running.py     orch run (progress.py prints its events)
    runs.py        orch runs list|show|resume|cancel|recover
    keys.py        orch keys create|list|revoke
    settings.py    orch config
    mcp.py         orch mcp (the orchestrations as MCP tools on stdio), orch validate --mcp
    completion.py  orch completion bash|zsh|tcsh
    common.py      exit codes, settings from flags, run ids by prefix, JSON and terminal output

Exit status: 0 completed, 1 failed (or cancelled, or refused), 2 usage, 3 paused at a gate,
4 not found; 130 after Ctrl-C, 141 when the reader of standard output went away.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Sequence

from orch.server.cli import completion, graphs, keys, mcp, running, runs, serve, settings
from orch.server.cli.common import BROKEN_PIPE, INTERRUPTED, USAGE, CliError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orch", description="Durable, typed AI orchestrations.",
        epilog="exit status: 0 completed, 1 failed, 2 usage, 3 paused, 4 not found\n"
               "settings: orch.toml, then ORCH_* variables, then flags (docs/operations.md)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"orch {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve.register(sub)
    graphs.register(sub)
    running.register(sub)
    runs.register(sub)
    keys.register(sub)
    settings.register(sub)
    mcp.register(sub)
    completion.register(sub, build_parser)
    return parser


def _version() -> str:
    try:
        return version("orch-engine")
    except PackageNotFoundError:
        return "unknown"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    from orch.sandbox import IsolationUnavailable
    from orch.settings import SettingsError

    args = build_parser().parse_args(argv)
    # Ctrl-C stops the command where it stands, also at a prompt (asyncio's own handler would
    # wait for the prompt to return).
    previous = signal.signal(signal.SIGINT, _interrupt) if args.command != "serve" else None
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"orch: {exc.message}", file=sys.stderr)
        return exc.code
    except (SettingsError, IsolationUnavailable) as exc:
        print(f"orch: {exc}", file=sys.stderr)
        return USAGE
    except KeyboardInterrupt:
        started = getattr(args, "started_run", None)
        hint = (f"; run {started} stays where it stood: continue it with `orch runs recover`, or "
                f"`orch runs cancel {started}`" if started else "")
        print(f"\norch: interrupted{hint}", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`orch runs list | head -1`): say nothing more, anywhere.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return BROKEN_PIPE
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


if __name__ == "__main__":
    sys.exit(main())
