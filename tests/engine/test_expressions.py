import ast
import dataclasses
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orch.definition.expressions import FUNCTIONS, Expression, ExpressionError, compile_expression

STATE: dict[str, Any] = {
    "a": {"b": [1, 2, {"c": "x"}]},
    "n": 3,
    "price": 2.5,
    "s": "hello",
    "items": [10, 20, 30],
    "none": None,
    "flag": True,
    "big": 1_000_000,
    "user-name": "ann",
}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # literals and containers
        ("1", 1),
        ("-2.5", -2.5),
        ("'a'", "a"),
        ("True", True),
        ("None", None),
        ("[1, 'x', None]", [1, "x", None]),
        ("(1, 2)", (1, 2)),
        ("{'k': state.n}", {"k": 3}),
        ("{1, 1, 2}", {1, 2}),
        ("f'{state.n} items, {state.s!r}'", "3 items, 'hello'"),
        # state access; missing is None, never an error
        ("state.n", 3),
        ("state['n']", 3),
        ("state['user-name']", "ann"),
        ("state.a.b[2].c", "x"),
        ("state.a.b[-1]", {"c": "x"}),
        ("state.items[1:]", [20, 30]),
        ("state.s[::-1]", "olleh"),
        ("state.nope", None),
        ("state.nope.deeper[0]", None),
        ("state.items[9]", None),
        ("state.items['x']", None),
        ("state.s.upper", None),
        ("state.n.real", None),
        ("state.a[state.s]", None),
        ("state.items[0:2:0]", None),
        # comparisons and boolean operators
        ("state.n == 3", True),
        ("state.n != 3", False),
        ("1 < state.n <= 3", True),
        ("1 < state.n < 2", False),
        ("state.n >= 4", False),
        ("'ell' in state.s", True),
        ("20 not in state.items", False),
        ("state.none is None", True),
        ("state.flag is not None", True),
        ("state.none or 'default'", "default"),
        ("state.n and state.s", "hello"),
        ("not state.items", False),
        ("state.none and state.none > 3", None),
        # arithmetic
        ("state.n + 1", 4),
        ("state.n - 5", -2),
        ("state.price * 2", 5.0),
        ("state.n / 2", 1.5),
        ("state.n // 2", 1),
        ("state.n % 2", 1),
        ("+state.n", 3),
        ("state.s + '!'", "hello!"),
        ("'ab' * 3", "ababab"),
        ("[0] * 2", [0, 0]),
        ("'yes' if state.flag else 'no'", "yes"),
        # whitelisted functions
        ("len(state.items)", 3),
        ("int('42')", 42),
        ("float(state.n)", 3.0),
        ("str(state.n)", "3"),
        ("bool(state.none)", False),
        ("list(state.s[:2])", ["h", "e"]),
        ("dict([('k', 1)])", {"k": 1}),
        ("abs(-state.n)", 3),
        ("min(state.items)", 10),
        ("max(1, state.n, 2)", 3),
        ("round(2.567, 2)", 2.57),
        ("round(state.price)", 2),
    ],
)
def test_evaluates(source: str, expected: Any) -> None:
    value = compile_expression(source).evaluate(STATE)
    assert (value, type(value)) == (expected, type(expected))


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("", "expression is empty"),
        ("state.x =", "invalid syntax at column 9"),
        ("state.x ==", "invalid syntax"),
        ("(state.x", "'(' was never closed at column 1"),
        ("(state.x\n ==)", "invalid syntax at line 2, column 4"),
        ("os", "name 'os' is not allowed; use state.<key>"),
        ("x + 1", "name 'x' is not allowed; use state.<key>"),
        ("len", "function 'len' can only be called, e.g. len(state.x)"),
        ("state.__class__", "attribute '__class__' is not allowed; names starting with '_' are private"),
        ("state._x", "attribute '_x' is not allowed; names starting with '_' are private"),
        ("().__class__.__bases__", "attribute '__bases__' is not allowed; names starting with '_' are private"),
        ("'abc'.upper", "attribute '.upper' is only allowed on state values, e.g. state.upper"),
        ("(state.a or state.b).c", "attribute '.c' is only allowed on state values, e.g. state.c"),
        ("state.x.upper()", "method calls are not allowed: '.upper()'"),
        ("__import__('os')", "function '__import__' is not allowed; allowed: " + ", ".join(FUNCTIONS)),
        ("getattr(state, 'x')", "function 'getattr' is not allowed; allowed: " + ", ".join(FUNCTIONS)),
        ("(lambda: 1)()", "only these functions can be called: " + ", ".join(FUNCTIONS)),
        ("max(state.s, key=len)", "keyword arguments are not allowed in calls to 'max'"),
        ("max(*state.items)", "starred arguments are not allowed in calls to 'max'"),
        ("lambda: 1", "lambda expressions are not allowed"),
        ("[x for x in state.items]", "comprehensions are not allowed"),
        ("{k: 1 for k in state}", "comprehensions are not allowed"),
        ("(x := 1)", "assignment expressions (:=) are not allowed"),
        ("[*state.items]", "starred expressions (*) are not allowed"),
        ("{**state}", "dict unpacking (**) is not allowed"),
        ("2 ** 10", "operator ** is not allowed"),
        ("1 << 40", "operator << is not allowed"),
        ("~state.n", "operator ~ is not allowed"),
        ("b'x'", "bytes literals are not allowed"),
        ("1j", "complex literals are not allowed"),
        ("...", "ellipsis literals are not allowed"),
        ("f'{state.n:>10}'", "format specs in f-strings are not allowed"),
        ("state.x" + " " * 2000, "expression is longer than 2000 characters"),
        ("not " * 49 + "state.x", "expression is nested more than 50 levels deep"),
        ("[" * 60 + "]" * 60, "expression is nested more than 50 levels deep"),
    ],
)
def test_rejects_at_compile_time(source: str, message: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_expression(source)
    assert caught.value.message == message == str(caught.value)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("state.none > 3", "'>' not supported between instances of 'NoneType' and 'int'"),
        ("state.n + 's'", "unsupported operand type(s) for +: 'int' and 'str'"),
        ("len(state.n)", "object of type 'int' has no len()"),
        ("1 / 0", "division by zero"),
        ("int('x')", "invalid literal for int() with base 10: 'x'"),
        ("max([])", "max() arg is an empty sequence"),
        ("'x' in state.none", "argument of type 'NoneType' is not iterable"),
        ("{[]: 1}", "unhashable type: 'list'"),
        ("'a' * 1000000000", "'*' would build a sequence longer than 100000"),
        ("state.big * [0]", "'*' would build a sequence longer than 100000"),
        ("state.s * state.big + 'x'", "'*' would build a sequence longer than 100000"),
        ("'a' * 60000 + 'b' * 60000", "'+' would build a sequence longer than 100000"),
        ("'%s' % state.n", "'%' formatting of strings is not allowed"),
        ("round(5, -10000000)", "round() ndigits must be between -1000 and 1000"),
    ],
)
def test_runtime_errors(source: str, message: str) -> None:
    expression = compile_expression(source)
    started = time.perf_counter()
    with pytest.raises(ExpressionError) as caught:
        expression.evaluate(STATE)
    assert caught.value.message == message
    assert time.perf_counter() - started < 0.5


def test_expression_is_frozen_and_lists_the_keys_it_reads() -> None:
    expression = compile_expression("state.a.b[0] > 1 and state['n'] in state.items and len(state[state.s]) > 0")
    assert (expression.source, expression.state_keys) == (
        "state.a.b[0] > 1 and state['n'] in state.items and len(state[state.s]) > 0",
        frozenset({"a", "n", "items", "s"}),
    )
    assert expression == compile_expression(expression.source)
    with pytest.raises(dataclasses.FrozenInstanceError):
        expression.source = "1"  # type: ignore[misc]


def test_surrounding_whitespace_is_ignored() -> None:
    assert compile_expression("\n  state.n == 3  \n").evaluate(STATE) is True


def test_evaluation_does_not_change_state() -> None:
    state = {"items": [1, 2], "d": {"k": 1}}
    compile_expression("state.items + [3] and dict(state.d)").evaluate(state)
    assert state == {"items": [1, 2], "d": {"k": 1}}


# --- property: nothing outside the whitelist is reachable -------------------------------------

SAFE_LEAVES = [
    "state", "state.a", "state.a.b", "state.s", "state.items", "state['n']", "state.none",
    "state.big", "state.nope", "0", "1", "-3", "2.5", "1000000", "'x'", "'%s'", "True", "None",
    "[]", "()", "{}",
]  # fmt: skip
SAFE_ATTRIBUTES = ["a", "b", "c", "s", "n", "items", "none", "nope"]
SAFE_BINARY = ["+", "-", "*", "/", "//", "%", "and", "or", "==", "<", ">=", "in", "not in", "is"]
HOSTILE_LEAVES = [
    "__import__", "__builtins__", "__class__", "getattr", "setattr", "open", "exec", "eval",
    "compile", "globals", "locals", "vars", "type", "object", "os", "sys", "breakpoint", "x",
    "().__class__.__bases__[0].__subclasses__()", "''.join", "lambda: 0", "...", "b'x'",
    *FUNCTIONS,
]  # fmt: skip
HOSTILE_ATTRIBUTES = [
    "upper", "format", "get", "keys", "mro", "real", "__class__", "__bases__", "__subclasses__",
    "__globals__", "__dict__", "__init__", "_x",
]  # fmt: skip
HOSTILE_BINARY = ["**", "<<", "&", "@"]
SAFE_ROOTS = {"state", *FUNCTIONS}
FORBIDDEN_NODES = (
    ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.NamedExpr,
    ast.Starred, ast.Await, ast.Yield, ast.YieldFrom, ast.Pow, ast.LShift, ast.BitAnd, ast.MatMult,
)  # fmt: skip


def _safe_shapes(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Combinations the whitelist accepts, so evaluation gets exercised too."""
    attrs = st.sampled_from(SAFE_ATTRIBUTES)
    return st.one_of(
        st.lists(attrs, min_size=1, max_size=3).map(lambda a: "state." + ".".join(a)),
        st.tuples(children, attrs).map(lambda t: f"({t[0]}).{t[1]}"),
        st.tuples(st.sampled_from(list(FUNCTIONS)), st.lists(children, max_size=3)).map(lambda t: f"{t[0]}({', '.join(t[1])})"),
        st.tuples(children, st.sampled_from(SAFE_BINARY), children).map(lambda t: f"({t[0]}) {t[1]} ({t[2]})"),
        st.tuples(st.sampled_from(["-", "+", "not "]), children).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(children, children).map(lambda t: f"({t[0]})[{t[1]}]"),
        st.tuples(children, children, children).map(lambda t: f"({t[0]})[{t[1]}:{t[2]}]"),
        st.tuples(children, children, children).map(lambda t: f"({t[0]}) if ({t[1]}) else ({t[2]})"),
        st.tuples(children, children).map(lambda t: f"[{t[0]}, {t[1]}]"),
        st.tuples(children, children).map(lambda t: f"{{{t[0]}: {t[1]}}}"),
        st.sampled_from(SAFE_LEAVES).map(lambda c: f'f"<{{{c}}}>"'),
    )


def _hostile_shapes(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Every shape an attacker might try, mixed with the accepted ones."""
    names = st.sampled_from(HOSTILE_LEAVES)
    attrs = st.sampled_from(HOSTILE_ATTRIBUTES + SAFE_ATTRIBUTES)
    args = st.lists(children, max_size=3).map(", ".join)
    return st.one_of(
        _safe_shapes(children),
        st.tuples(children, attrs).map(lambda t: f"({t[0]}).{t[1]}"),
        st.tuples(names, args).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(children, attrs, args).map(lambda t: f"({t[0]}).{t[1]}({t[2]})"),
        st.tuples(names, children, children).map(lambda t: f"{t[0]}({t[1]}, key={t[2]})"),
        st.tuples(children, st.sampled_from(HOSTILE_BINARY), children).map(lambda t: f"({t[0]}) {t[1]} ({t[2]})"),
        children.map(lambda c: f"~({c})"),
        children.map(lambda c: f"(lambda x: {c})(state)"),
        st.tuples(children, children).map(lambda t: f"[{t[0]} for x in {t[1]}]"),
        children.map(lambda c: f"(x := {c})"),
        children.map(lambda c: f"{{**{c}}}"),
        children.map(lambda c: f"[*{c}]"),
    )


SAFE = st.recursive(st.sampled_from(SAFE_LEAVES), _safe_shapes, max_leaves=8)
HOSTILE = st.recursive(st.sampled_from(SAFE_LEAVES + HOSTILE_LEAVES), _hostile_shapes, max_leaves=8)
TOKEN_SOUP = st.lists(
    st.sampled_from(
        [*SAFE_LEAVES, *HOSTILE_LEAVES, *SAFE_BINARY, *HOSTILE_BINARY, *HOSTILE_ATTRIBUTES, ".", ",", ":", "(", ")", "[", "]", "for", "if"]
    ),
    min_size=1,
    max_size=12,
).map(" ".join)


def _is_plain(value: Any) -> bool:
    if type(value) in (str, int, float, bool, type(None)):
        return True
    if type(value) in (list, tuple, set, frozenset):
        return all(_is_plain(item) for item in value)
    if type(value) is dict:
        return all(_is_plain(k) and _is_plain(v) for k, v in value.items())
    return False


def _assert_whitelisted(expression: Expression) -> None:
    tree = ast.parse(expression.source.strip(), mode="eval")
    called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    for node in ast.walk(tree):
        assert not isinstance(node, FORBIDDEN_NODES), ast.dump(node)
        if isinstance(node, ast.Name):
            assert node.id in SAFE_ROOTS, node.id
            assert node.id == "state" or id(node) in called, node.id
        if isinstance(node, ast.Attribute):
            assert not node.attr.startswith("_"), node.attr
        if isinstance(node, ast.Call):
            assert isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS, ast.dump(node)
            assert not node.keywords, ast.dump(node)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(SAFE, HOSTILE, TOKEN_SOUP))
def test_nothing_outside_the_whitelist_is_reachable(source: str) -> None:
    try:
        expression = compile_expression(source)
    except ExpressionError:
        return
    _assert_whitelisted(expression)
    try:
        value = expression.evaluate(STATE)
    except ExpressionError:
        return
    assert _is_plain(value), repr(value)
