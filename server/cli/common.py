"""What the commands share: exit codes, settings from flags, run ids by prefix, output for
people (rich, colour only on a terminal) and for scripts (--json)."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

import msgspec

from orch.config import Loaded, check_settings, load_settings, mask_url

# Exit codes (docs/operations.md): scripts tell a run's outcome apart without parsing output.
COMPLETED = 0
FAILED = 1  # a failed or cancelled run, a graph that does not validate, an action that was refused
USAGE = 2  # bad arguments, flags or settings
PAUSED = 3  # the run waits at a human gate
NOT_FOUND = 4  # no such run, key or file
INTERRUPTED = 130  # Ctrl-C
BROKEN_PIPE = 141  # the reader of standard output went away (as a process ended by SIGPIPE)

# Flags that set a setting: argparse dest → (setting, flag as typed).
SETTING_FLAGS = {
    "db": ("database_url", "--db"), "graphs": ("graphs_dir", "--graphs"), "host": ("host", "--host"),
    "port": ("port", "--port"), "workers": ("workers", "--workers"), "api_key": ("api_keys", "--api-key"),
    "log_format": ("log_format", "--log-format"), "log_level": ("log_level", "--log-level"),
}
_json = msgspec.json.Encoder()


class CliError(Exception):
    """A command cannot go on: `orch: <message>` on standard error, and `code`."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        self.message, self.code = message, code


def exit_code(status: str) -> int:
    return {"completed": COMPLETED, "paused": PAUSED}.get(status, FAILED)


def settings_of(args: argparse.Namespace) -> Loaded:
    flags = {setting: (getattr(args, dest), flag) for dest, (setting, flag) in SETTING_FLAGS.items()
             if getattr(args, dest, None) is not None}
    return load_settings(flags, config=getattr(args, "config", None))


async def open_engine(loaded: Loaded, *, graphs: Any = None, recover: bool = False, runs_code: bool = True) -> Any:
    """Check the settings (the database, and with `runs_code` the providers and tool modules a
    run needs), then build the engine; (engine, load report)."""
    from orch.bootstrap import build_engine

    check_settings(loaded, providers=runs_code, tools=runs_code)
    return await build_engine(loaded.settings, graphs=graphs, recover=recover)


async def open_store(loaded: Loaded) -> Any:
    from orch.store.sql import SQLStore

    check_settings(loaded, providers=False, tools=False)
    store = SQLStore(loaded.settings.database_url, synchronous=loaded.settings.sqlite_synchronous)
    await store.open()
    return store


async def resolve_run(store: Any, given: str) -> str:
    """The run id `given` names: the id itself, or the one id it begins."""
    if await store.get_run(given) is not None:
        return given
    found = await store.run_ids_with_prefix(given, 6)
    if not found:
        raise CliError(f"no run matches '{given}'", NOT_FOUND)
    if len(found) > 1:
        more = ", …" if len(found) > 5 else ""
        raise CliError(f"'{given}' matches several runs: {', '.join(found[:5])}{more}; give more of the id", USAGE)
    return str(found[0])


def where(loaded: Loaded) -> str:
    return mask_url(loaded.settings.database_url)


def print_json(value: Any, out: TextIO | None = None) -> None:
    (out or sys.stdout).write(_json.encode(msgspec.to_builtins(value)).decode() + "\n")
    (out or sys.stdout).flush()


def console(out: TextIO | None = None) -> Any:
    """A rich console: colour only when `out` is a terminal (and NO_COLOR is not set), never
    markup read from the text, never wrapped."""
    from rich.console import Console

    class Quiet(Console):
        def on_broken_pipe(self) -> None:  # rich would exit 1; main() ends such a command as 141
            raise BrokenPipeError

    return Quiet(file=out or sys.stdout, markup=False, highlight=False, emoji=False, soft_wrap=True)


def with_example(text: str) -> str:
    return "example:\n  " + text.strip().replace("\n", "\n  ")


def command(sub: Any, name: str, help: str, example: str, **kw: Any) -> argparse.ArgumentParser:
    """A subcommand whose --help ends with an example."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=help, description=help[0].upper() + help[1:] + ".", epilog=with_example(example),
        formatter_class=argparse.RawDescriptionHelpFormatter, **kw)
    return parser


def add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", metavar="URL", help="database URL (setting database_url; default sqlite:///orch-data/orch.db)")
    add_config(p)


def add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="configuration file (default: ORCH_CONFIG, else ./orch.toml)")
