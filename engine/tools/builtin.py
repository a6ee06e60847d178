"""Built-in tools that need no network: time, arithmetic, a per-run file sandbox and the state.

Each docstring's first paragraph is what the model reads as the tool's description.
"""

from __future__ import annotations

import ast
import math
import operator
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path, PurePath
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from orch.tools.context import ToolContext

MAX_FILE_BYTES = 1_000_000
MAX_LISTED_FILES = 1_000
MAX_EXPRESSION_CHARS = 1_000
MAX_EXPONENT = 10_000
# Integers stay printable (Python refuses str() past 4,300 digits) and "9**9**9" fails fast.
MAX_RESULT_BITS = 14_000


def current_time(timezone: str = "UTC") -> str:
    """The current date and time in ISO 8601, in the given IANA timezone (e.g. Europe/Paris)."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone '{timezone}'") from None
    return datetime.now(zone).isoformat(timespec="seconds")


def calculator(expression: str) -> float | int:
    """Evaluate an arithmetic expression: numbers, + - * / // % **, parentheses, unary minus."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ValueError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        raise ValueError(f"not an arithmetic expression: {expression!r}") from None
    try:
        result = _evaluate(tree.body)
    except OverflowError:
        raise ValueError("result too large") from None
    return result


_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}


def _evaluate(node: ast.expr) -> float | int:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = _evaluate(node.operand)
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        result: float | int | complex = _BINARY[type(node.op)](left, right)
        if isinstance(result, complex):
            raise ValueError("result is not a real number")
        if isinstance(result, float) and not math.isfinite(result):
            raise ValueError("result too large")
        if isinstance(result, int) and result.bit_length() > MAX_RESULT_BITS:
            raise ValueError("result too large")
        return result
    raise ValueError(f"not allowed in arithmetic: {ast.unparse(node)!r}")


def _check_power(base: float | int, exponent: float | int) -> None:
    if abs(exponent) > MAX_EXPONENT:
        raise ValueError(f"exponent larger than {MAX_EXPONENT}")
    if isinstance(base, int) and isinstance(exponent, int) and abs(base) > 1:
        if (base.bit_length() - 1) * exponent > MAX_RESULT_BITS:
            raise ValueError("result too large")


def read_file(path: str, ctx: ToolContext) -> str:
    """Read a UTF-8 text file from this run's sandbox directory (relative path, at most 1 MB)."""
    target = _sandboxed(path, ctx)
    if not target.is_file():
        raise ValueError(f"no such file: {path}")
    if target.stat().st_size > MAX_FILE_BYTES:
        raise ValueError(f"{path} is larger than {MAX_FILE_BYTES} bytes")
    try:
        return target.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None


def write_file(path: str, content: str, ctx: ToolContext) -> str:
    """Write a UTF-8 text file into this run's sandbox directory (relative path, at most 1 MB).

    Missing parent directories are created; an existing file is replaced.
    """
    data = content.encode("utf-8")
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"content is larger than {MAX_FILE_BYTES} bytes")
    target = _sandboxed(path, ctx)
    if target.is_dir():
        raise ValueError(f"{path} is a directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return f"wrote {len(data)} bytes to {target.relative_to(_root(ctx)).as_posix()}"


def list_files(ctx: ToolContext) -> list[str]:
    """List the files in this run's sandbox directory, as relative paths."""
    root = _root(ctx)
    found: list[str] = []
    for directory, subdirs, files in os.walk(root):
        subdirs.sort()
        for name in sorted(files):
            full = Path(directory, name)
            if full.resolve().is_relative_to(root):
                found.append(full.relative_to(root).as_posix())
            if len(found) >= MAX_LISTED_FILES:
                return found
    return found


def read_state(key: str, ctx: ToolContext) -> Any:
    """Read one value of the run's shared state by key."""
    if key not in ctx.state:
        known = ", ".join(sorted(ctx.state)) or "(none)"
        raise ValueError(f"no state key '{key}'; keys: {known}")
    return ctx.state[key]


def word_count(text: str) -> int:
    """Count the words (whitespace-separated) in a text."""
    return len(text.split())


def _root(ctx: ToolContext) -> Path:
    return ctx.sandbox_dir.resolve()


def _sandboxed(path: str, ctx: ToolContext) -> Path:
    """The real location of `path` inside the sandbox; refuses anything that would leave it.

    Resolving follows symlinks, so a link pointing outside is refused like a `..` escape.
    """
    if not path or "\x00" in path:
        raise ValueError("a file path is required")
    if PurePath(path).is_absolute() or path.startswith(("/", "\\")):
        raise ValueError(f"absolute paths are not allowed: {path}")
    root = _root(ctx)
    target = (root / path).resolve()
    if not target.is_relative_to(root):
        raise ValueError(f"path escapes the sandbox: {path}")
    if target == root:
        raise ValueError(f"not a file path: {path}")
    return target


BUILTIN_TOOLS: tuple[Callable[..., Any], ...] = (
    current_time,
    calculator,
    read_file,
    write_file,
    list_files,
    read_state,
    word_count,
)
