"""The engine and server type-check under mypy --strict.

mypy cannot follow the install's folder mapping (`engine/` is `orch`, `server/` is
`orch.server`), so the check runs over a tree of links laid out as the installed package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def installed_layout(tmp: Path) -> Path:
    """`tmp/orch`, linking each entry of `engine/` and `server/` where the install puts it."""
    pkg = tmp / "orch"
    pkg.mkdir()
    for entry in (ROOT / "engine").iterdir():
        if entry.name != "__pycache__":
            (pkg / entry.name).symlink_to(entry)
    (pkg / "server").symlink_to(ROOT / "server")
    return pkg


def test_mypy_strict(tmp_path: Path) -> None:
    installed_layout(tmp_path)
    out = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(ROOT / ".mypy_cache"),
                          "--config-file", str(ROOT / "pyproject.toml"), "-p", "orch"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=240)
    report = (out.stdout + out.stderr).replace("orch/server/", "server/").replace("orch/", "engine/")
    assert out.returncode == 0, report
