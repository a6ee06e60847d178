"""Safe expressions for `if_else` and `switch` steps (SPEC §4.6).

An expression is parsed once with `ast.parse`, checked against a whitelist, and evaluated by
walking that tree here; Python's own `eval` is never used, so nothing outside the whitelist
(builtins, dunder attributes, methods, imports) is reachable. Reading a missing key, attribute or
index yields None; other runtime failures raise `ExpressionError`, which the caller turns into a
step failure.
"""

from __future__ import annotations

import ast
import operator
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from orch.errors import ExpressionError as ExpressionError  # raised here; importable from here too

MAX_SOURCE_LENGTH = 2_000
MAX_DEPTH = 50
MAX_SEQUENCE_LENGTH = 100_000
MAX_ROUND_DIGITS = 1_000


def _round(*args: Any) -> Any:
    # int.__round__ with a huge negative ndigits computes 10**-ndigits.
    if len(args) > 1 and isinstance(args[1], int) and abs(args[1]) > MAX_ROUND_DIGITS:
        raise ExpressionError(f"round() ndigits must be between -{MAX_ROUND_DIGITS} and {MAX_ROUND_DIGITS}")
    return round(*args)


FUNCTIONS: Mapping[str, Callable[..., Any]] = {
    "len": len, "int": int, "float": float, "str": str, "bool": bool, "list": list,
    "dict": dict, "abs": abs, "min": min, "max": max, "round": _round,
}  # fmt: skip
_ALLOWED_FUNCTIONS = ", ".join(FUNCTIONS)

_BINARY: Mapping[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
}  # fmt: skip
_UNARY: Mapping[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_,
}  # fmt: skip
_COMPARE: Mapping[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Is: operator.is_, ast.IsNot: operator.is_not,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}  # fmt: skip
_SYMBOLS: Mapping[type[ast.AST], str] = {
    ast.Pow: "**", ast.LShift: "<<", ast.RShift: ">>", ast.BitOr: "|", ast.BitXor: "^",
    ast.BitAnd: "&", ast.MatMult: "@", ast.Invert: "~",
}  # fmt: skip
_FORBIDDEN: Mapping[type[ast.AST], str] = {
    ast.Lambda: "lambda expressions are", ast.NamedExpr: "assignment expressions (:=) are",
    ast.Starred: "starred expressions (*) are", ast.Await: "await is", ast.Yield: "yield is",
    ast.YieldFrom: "yield is",
    **dict.fromkeys((ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp), "comprehensions are"),
}  # fmt: skip
_CONVERSIONS: Mapping[int, Callable[[Any], str]] = {-1: str, ord("s"): str, ord("r"): repr, ord("a"): ascii}


@dataclass(frozen=True, slots=True)
class Expression:
    """A checked expression; `state_keys` are the top-level state keys it reads by name."""

    source: str
    state_keys: frozenset[str]
    _tree: ast.Expression = field(repr=False, compare=False)

    def evaluate(self, state: Mapping[str, Any]) -> Any:
        """The expression's value over `state`; raises ExpressionError on a runtime failure."""
        try:
            return _eval(self._tree.body, state)
        except ExpressionError:
            raise
        except Exception as exc:  # plain values fail with TypeError, ZeroDivisionError, ...
            raise ExpressionError(str(exc) or type(exc).__name__) from exc


def compile_expression(source: str) -> Expression:
    """Parse and check `source` once; raises ExpressionError naming the first problem."""
    if len(source) > MAX_SOURCE_LENGTH:
        raise ExpressionError(f"expression is longer than {MAX_SOURCE_LENGTH} characters")
    if not source.strip():
        raise ExpressionError("expression is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. invalid escape sequences in string literals
            tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        where = f" at column {exc.offset}" if exc.offset else ""
        if exc.lineno and exc.lineno > 1:
            where = f" at line {exc.lineno}, column {exc.offset}"
        raise ExpressionError(f"{exc.msg}{where}") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise ExpressionError(str(exc) or "expression cannot be parsed") from None
    keys: set[str] = set()
    _check(tree.body, 1, keys)
    return Expression(source, frozenset(keys), tree)


def _is_state(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id == "state"


def _rooted_at_state(node: ast.expr) -> bool:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return _is_state(node)


def _check(node: ast.AST, depth: int, keys: set[str]) -> None:
    """Reject anything outside the whitelist; collect the state keys read by name."""
    if depth > MAX_DEPTH:
        raise ExpressionError(f"expression is nested more than {MAX_DEPTH} levels deep")
    children: list[ast.AST | None]
    match node:
        case ast.Constant(value=value):
            if value is not None and not isinstance(value, (str, int, float)):
                raise ExpressionError(f"{type(value).__name__} literals are not allowed")
            children = []
        case ast.Name(id="state"):
            children = []
        case ast.Name(id=name) if name in FUNCTIONS:
            raise ExpressionError(f"function '{name}' can only be called, e.g. {name}(state.x)")
        case ast.Name(id=name):
            raise ExpressionError(f"name '{name}' is not allowed; use state.<key>")
        case ast.Attribute(value=value, attr=attr):
            if attr.startswith("_"):
                raise ExpressionError(f"attribute '{attr}' is not allowed; names starting with '_' are private")
            if not _rooted_at_state(value):
                raise ExpressionError(f"attribute '.{attr}' is only allowed on state values, e.g. state.{attr}")
            if _is_state(value):
                keys.add(attr)
            children = [value]
        case ast.Subscript(value=value, slice=index):
            if _is_state(value) and isinstance(index, ast.Constant) and isinstance(index.value, str):
                keys.add(index.value)
            children = [value, index]
        case ast.Slice(lower=lower, upper=upper, step=step):
            children = [lower, upper, step]
        case ast.Call(func=ast.Name(id=name), args=args, keywords=keywords) if name in FUNCTIONS:
            if keywords:
                raise ExpressionError(f"keyword arguments are not allowed in calls to '{name}'")
            if any(isinstance(arg, ast.Starred) for arg in args):
                raise ExpressionError(f"starred arguments are not allowed in calls to '{name}'")
            children = list(args)
        case ast.Call(func=ast.Name(id=name)):
            raise ExpressionError(f"function '{name}' is not allowed; allowed: {_ALLOWED_FUNCTIONS}")
        case ast.Call(func=ast.Attribute(attr=attr)):
            raise ExpressionError(f"method calls are not allowed: '.{attr}()'")
        case ast.Call():
            raise ExpressionError(f"only these functions can be called: {_ALLOWED_FUNCTIONS}")
        case ast.BinOp(op=op) | ast.UnaryOp(op=op) if type(op) in _SYMBOLS:
            raise ExpressionError(f"operator {_SYMBOLS[type(op)]} is not allowed")
        case ast.BinOp(left=left, right=right):
            children = [left, right]
        case ast.UnaryOp(operand=operand):
            children = [operand]
        case ast.BoolOp(values=values):
            children = list(values)
        case ast.Compare(left=left, comparators=comparators):
            children = [left, *comparators]
        case ast.IfExp(test=test, body=body, orelse=orelse):
            children = [test, body, orelse]
        case ast.Tuple(elts=elts) | ast.List(elts=elts) | ast.Set(elts=elts):
            children = list(elts)
        case ast.Dict(keys=dict_keys, values=values):
            if any(key is None for key in dict_keys):
                raise ExpressionError("dict unpacking (**) is not allowed")
            children = [*dict_keys, *values]
        case ast.JoinedStr(values=values):
            children = list(values)
        case ast.FormattedValue(value=value, format_spec=spec):
            if spec is not None:
                raise ExpressionError("format specs in f-strings are not allowed")
            children = [value]
        case _:
            what = _FORBIDDEN.get(type(node), f"{type(node).__name__} is")
            raise ExpressionError(f"{what} not allowed")
    for child in children:
        if child is not None:
            _check(child, depth + 1, keys)


def _lookup(container: Any, key: Any) -> Any:
    """`container[key]`, or None when it is missing or cannot be indexed by `key`."""
    if isinstance(container, Mapping):
        try:
            return container.get(key)
        except TypeError:  # unhashable key
            return None
    if isinstance(container, (str, list, tuple)):
        if isinstance(key, slice):
            try:
                return container[key]
            except (TypeError, ValueError):  # non-int bounds, zero step
                return None
        if isinstance(key, int) and -len(container) <= key < len(container):
            return container[key]
    return None


def _check_size(op: ast.operator, left: Any, right: Any) -> None:
    sequences = (str, list, tuple)
    if isinstance(op, ast.Mult):
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, sequences) and isinstance(times, int) and len(seq) * times > MAX_SEQUENCE_LENGTH:
                raise ExpressionError(f"'*' would build a sequence longer than {MAX_SEQUENCE_LENGTH}")
    elif isinstance(op, ast.Add):
        if isinstance(left, sequences) and isinstance(right, sequences) and len(left) + len(right) > MAX_SEQUENCE_LENGTH:
            raise ExpressionError(f"'+' would build a sequence longer than {MAX_SEQUENCE_LENGTH}")
    elif isinstance(op, ast.Mod) and isinstance(left, str):
        raise ExpressionError("'%' formatting of strings is not allowed")


def _eval(node: ast.AST, state: Mapping[str, Any]) -> Any:
    match node:
        case ast.Constant(value=value):
            return value
        case ast.Name(id="state"):
            return state
        case ast.Attribute(value=value, attr=attr):
            return _lookup(_eval(value, state), attr)
        case ast.Subscript(value=value, slice=index):
            return _lookup(_eval(value, state), _eval(index, state))
        case ast.Slice(lower=lower, upper=upper, step=step):
            return slice(*(None if part is None else _eval(part, state) for part in (lower, upper, step)))
        case ast.Call(func=ast.Name(id=name), args=args):
            return FUNCTIONS[name](*(_eval(arg, state) for arg in args))
        case ast.BinOp(left=left, op=op, right=right):
            left_value, right_value = _eval(left, state), _eval(right, state)
            _check_size(op, left_value, right_value)
            return _BINARY[type(op)](left_value, right_value)
        case ast.UnaryOp(op=op, operand=operand):
            return _UNARY[type(op)](_eval(operand, state))
        case ast.BoolOp(op=op, values=values):
            result: Any = None
            for item in values:
                result = _eval(item, state)
                if bool(result) == isinstance(op, ast.Or):
                    break
            return result
        case ast.Compare(left=left, ops=ops, comparators=comparators):
            current = _eval(left, state)
            for comparison, right in zip(ops, comparators):
                following = _eval(right, state)
                if not _COMPARE[type(comparison)](current, following):
                    return False
                current = following
            return True
        case ast.IfExp(test=test, body=body, orelse=orelse):
            return _eval(body if _eval(test, state) else orelse, state)
        case ast.Tuple(elts=elts):
            return tuple(_eval(item, state) for item in elts)
        case ast.List(elts=elts):
            return [_eval(item, state) for item in elts]
        case ast.Set(elts=elts):
            return {_eval(item, state) for item in elts}
        case ast.Dict(keys=keys, values=values):
            return {_eval(k, state): _eval(v, state) for k, v in zip(keys, values) if k is not None}
        case ast.JoinedStr(values=values):
            return "".join(str(_eval(item, state)) for item in values)
        case ast.FormattedValue(value=value, conversion=conversion):
            return _CONVERSIONS[conversion](_eval(value, state))
    raise ExpressionError(f"{type(node).__name__} cannot be evaluated")  # unreachable after _check
