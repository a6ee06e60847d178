"""How the benchmark scripts print their figures: aligned tables, numbers, the machine line."""

from __future__ import annotations

import datetime as dt
import os
import platform
import sqlite3


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Left-aligned first column, right-aligned others, a rule under the headers."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f}" if seconds < 1e-4 else f"{seconds * 1e6:,.0f}"


def times(x: float) -> str:
    return f"{x:.2f}×"


def machine(mode: str, load_before: float, extra: str = "") -> str:
    """The first line of every report: date, versions, cores, quick or full, load average."""
    return (f"{dt.date.today().isoformat()} · Python {platform.python_version()} · SQLite {sqlite3.sqlite_version}"
            f"{extra} · {os.cpu_count()} cores · {mode} run · load average {load_before:.2f} before, "
            f"{os.getloadavg()[0]:.2f} after")


def where(filename: str) -> str:
    """A path shortened to what it is: engine/…, a package under site-packages, the stdlib."""
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1]
    if "/lib/python3" in filename:
        return "stdlib/" + filename.split("/lib/python3", 1)[1].split("/", 1)[-1]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.relpath(filename, root) if filename.startswith(root) else filename
