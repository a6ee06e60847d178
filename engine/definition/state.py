"""Typed run state: state_schema type strings, checked writes and reducers.

Type strings are `str`/`string`, `int`/`integer`, `float`/`number`, `bool`/`boolean`, `list`,
`dict`, `any`, and parametrised `list[T]` / `dict[str, T]`. Every write to a declared key is
converted with msgspec at the moment of the write; a value that does not fit raises
StateWriteError naming the step, key, expected type and the value's type.

Reducers: `replace` (default), `append` (a value that fits the item type is appended, a list of
such values extends), `merge` (shallow dict update), `add` (numeric sum, missing counts as 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import msgspec

from orch.errors import StateWriteError
from orch.errors import TypeParseError as TypeParseError  # raised here; importable from here too
from orch.definition.spec import StateField

BUILTIN_KEYS = frozenset({"user_input", "user_query", "human_response"})

_SCALARS: dict[str, tuple[str, Any]] = {
    "str": ("str", str), "string": ("str", str),
    "int": ("int", int), "integer": ("int", int),
    "float": ("float", float), "number": ("float", float),
    "bool": ("bool", bool), "boolean": ("bool", bool),
    "any": ("any", Any),
}


@dataclass(frozen=True, slots=True)
class TypeSpec:
    """A parsed state type: `kind` is one of str/int/float/bool/any/list/dict."""

    kind: str
    item: "TypeSpec | None" = None  # list item or dict value type

    @property
    def text(self) -> str:
        if self.kind in ("list", "dict") and self.item is not None and self.item.kind != "any":
            return f"list[{self.item.text}]" if self.kind == "list" else f"dict[str, {self.item.text}]"
        return self.kind

    @property
    def py(self) -> Any:
        if self.kind == "list":
            return list[self.item.py if self.item else Any]  # type: ignore[misc]
        if self.kind == "dict":
            return dict[str, self.item.py if self.item else Any]  # type: ignore[misc]
        return _SCALARS[self.kind][1]


ANY = TypeSpec("any")
STR = TypeSpec("str")


def parse_type(text: str) -> TypeSpec:
    """Parse a state_schema type string; raises TypeParseError with what was expected."""
    t = text.strip().lower().replace(" ", "")
    if t in _SCALARS:
        return TypeSpec(_SCALARS[t][0])
    if t == "list":
        return TypeSpec("list", ANY)
    if t in ("dict", "object"):
        return TypeSpec("dict", ANY)
    if t.startswith("list[") and t.endswith("]"):
        return TypeSpec("list", parse_type(t[5:-1]))
    if t.startswith("dict[") and t.endswith("]"):
        inner = t[5:-1]
        key, sep, value = inner.partition(",")
        if not sep or key not in ("str", "string"):
            raise TypeParseError(f"unsupported type '{text}': dict keys must be str, as in dict[str, int]")
        return TypeSpec("dict", parse_type(value))
    raise TypeParseError(
        f"unknown type '{text}'; expected str, int, float, bool, list, dict, any, list[T] or dict[str, T]"
    )


def fits(written: TypeSpec, read: TypeSpec) -> bool:
    """Whether a value of type `written` always fits where `read` is expected."""
    if written.kind == "any" or read.kind == "any":
        return True
    if written.kind == read.kind:
        if written.kind in ("list", "dict"):
            return fits(written.item or ANY, read.item or ANY)
        return True
    return written.kind == "int" and read.kind == "float"


def _detail(exc: Exception) -> str:
    """msgspec's message, kept only when it points inside the value (a nested path)."""
    text = str(exc)
    if " - at `$" not in text:
        return ""
    what, _, where = text.partition(" - at ")
    return f"at {where.strip('`')}: {what.replace('`', '')[0].lower()}{what.replace('`', '')[1:]}"


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (list, tuple)):
        return "list"
    return type(value).__name__


def convert(value: Any, spec: TypeSpec) -> Any:
    """Convert `value` to `spec` (lax: "3" fits int); raises msgspec.ValidationError."""
    if spec.kind == "any":
        return value
    if spec.kind == "str" and not isinstance(value, str):
        raise msgspec.ValidationError(f"Expected `str`, got `{type_name(value)}`")
    return msgspec.convert(value, spec.py, strict=False)


@dataclass(frozen=True, slots=True)
class KeySchema:
    type: TypeSpec
    reducer: str
    default: Any


class StateSchema:
    """The declared keys of one orchestration; undeclared keys are `any` with `replace`."""

    __slots__ = ("keys", "first_string_key")

    def __init__(self, fields: Mapping[str, StateField]) -> None:
        self.keys: dict[str, KeySchema] = {}
        for name, f in fields.items():
            default = None if f.default is msgspec.UNSET else f.default
            self.keys[name] = KeySchema(parse_type(f.type), f.reducer, default)
        first = next(iter(self.keys.items()), None)
        self.first_string_key = first[0] if first and first[1].type.kind == "str" else None

    def type_of(self, key: str) -> TypeSpec:
        ks = self.keys.get(key)
        return ks.type if ks else ANY

    def initial(self) -> dict[str, Any]:
        return {k: _copy(ks.default) for k, ks in self.keys.items() if ks.default is not None}

    def check(self, key: str, value: Any, *, step_id: str | None = None) -> Any:
        """The value converted to the key's declared type (no reducer applied)."""
        ks = self.keys.get(key)
        if ks is None:
            return value
        try:
            return convert(value, ks.type)
        except msgspec.ValidationError as exc:
            raise StateWriteError(
                step_id=step_id, key=key, expected=ks.type.text, got=type_name(value), detail=_detail(exc)
            ) from None

    def apply(self, state: dict[str, Any], key: str, value: Any, *, step_id: str | None = None) -> None:
        """Write `value` to `key` through the key's type check and reducer."""
        ks = self.keys.get(key)
        if ks is None or ks.reducer == "replace":
            state[key] = self.check(key, value, step_id=step_id)
            return
        try:
            state[key] = _REDUCERS[ks.reducer](state.get(key), value, ks.type)
        except (msgspec.ValidationError, TypeError) as exc:
            raise StateWriteError(
                step_id=step_id, key=key, expected=f"{ks.type.text} ({ks.reducer})",
                got=type_name(value), detail=_detail(exc),
            ) from None


def _copy(value: Any) -> Any:
    return msgspec.json.decode(msgspec.json.encode(value))


def _append(current: Any, value: Any, spec: TypeSpec) -> list[Any]:
    items = list(current or [])
    item_type = spec.item or ANY if spec.kind == "list" else ANY
    try:
        items.append(convert(value, item_type))
    except msgspec.ValidationError:
        if not isinstance(value, list):
            raise
        items.extend(convert(v, item_type) for v in value)
    return items


def _merge(current: Any, value: Any, spec: TypeSpec) -> dict[str, Any]:
    merged = dict(current or {})
    merged.update(convert(value, spec if spec.kind == "dict" else TypeSpec("dict", ANY)))
    return merged


def _add(current: Any, value: Any, spec: TypeSpec) -> Any:
    number = convert(value, spec if spec.kind in ("int", "float") else TypeSpec("float"))
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise TypeError(f"add needs a number, got {type_name(value)}")
    return (current or 0) + number


_REDUCERS = {"append": _append, "merge": _merge, "add": _add}
