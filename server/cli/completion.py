"""`orch completion bash|zsh|tcsh`: a shell completion script for every command and flag,
generated from the command's own parser (shtab)."""

from __future__ import annotations

import argparse
from typing import Any, Callable

from orch.server.cli.common import COMPLETED, command

SHELLS = ("bash", "zsh", "tcsh")


def register(sub: Any, parser: Callable[[], argparse.ArgumentParser]) -> None:
    def cmd_completion(args: argparse.Namespace) -> int:
        import shtab

        print(shtab.complete(parser(), shell=args.shell), end="")
        return COMPLETED

    p = command(sub, "completion", "print a shell completion script",
                'eval "$(orch completion bash)"          # in ~/.bashrc\n'
                "orch completion zsh > ~/.zfunc/_orch     # zsh, with ~/.zfunc in fpath")
    p.add_argument("shell", choices=SHELLS)
    p.set_defaults(func=cmd_completion)
