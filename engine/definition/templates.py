"""Rendering of `{state.a.b}` placeholders in prompts and `print` steps.

A placeholder is `{state.` followed by dot-separated keys (a list index is a number, as in
`{state.items.0}`) and `}`. Strings render as they are, None as the empty string, anything else
as compact JSON. A placeholder whose value is missing stays as written, and every other brace
(a JSON example in a prompt, say) is left alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec

_PLACEHOLDER = re.compile(r"\{state((?:\.\w+)+)\}")
_MISSING = object()


def render(template: str, state: Mapping[str, Any]) -> str:
    """`template` with each placeholder whose value exists in `state` replaced by that value."""

    def replace(match: re.Match[str]) -> str:
        value = _resolve(state, match.group(1)[1:].split("."))
        return match.group(0) if value is _MISSING else _format(value)

    return _PLACEHOLDER.sub(replace, template)


def template_keys(template: str) -> frozenset[str]:
    """The top-level state keys `template` references, for the data-flow checker."""
    return frozenset(match.group(1)[1:].split(".", 1)[0] for match in _PLACEHOLDER.finditer(template))


def _resolve(value: Any, path: list[str]) -> Any:
    for key in path:
        if isinstance(value, Mapping):
            if key not in value:
                return _MISSING
            value = value[key]
        elif isinstance(value, (list, tuple)) and key.isascii() and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return _MISSING
    return value


def _format(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    try:
        return msgspec.json.encode(value).decode()
    except (TypeError, ValueError, OverflowError, msgspec.MsgspecError):
        return str(value)
