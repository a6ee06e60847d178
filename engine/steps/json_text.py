"""Finding JSON values in text a model or a step wrote (extract_json steps, dict/list outputs)."""

from __future__ import annotations

import re
from typing import Any

import msgspec

_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n(.*?)```", re.S)
_MISSING = object()


def find_json(text: str) -> list[Any]:
    """JSON values in text: the whole text, else fenced blocks, else balanced {...}/[...] spans."""
    whole = _parse(text.strip())
    if whole is not _MISSING and isinstance(whole, (dict, list)):
        return [whole]
    fenced = [v for block in _FENCE.findall(text) if (v := _parse(block.strip())) is not _MISSING]
    if fenced:
        return fenced
    found: list[Any] = []
    i = 0
    while i < len(text):
        if text[i] in "{[":
            end = _balanced_end(text, i)
            if end is not None:
                value = _parse(text[i:end])
                if value is not _MISSING:
                    found.append(value)
                    i = end
                    continue
        i += 1
    return found


def _parse(text: str) -> Any:
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        return _MISSING


def _balanced_end(text: str, start: int) -> int | None:
    depth, in_str, escape = 0, False, False
    for j in range(start, len(text)):
        c = text[j]
        if in_str:
            if escape:
                escape = False
            elif c == "\\":
                escape = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
            if depth == 0:
                return j + 1
    return None
