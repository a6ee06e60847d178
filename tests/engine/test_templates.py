from typing import Any

import pytest

from orch.definition.templates import render, template_keys

STATE: dict[str, Any] = {
    "name": "Ann",
    "user": {"profile": {"city": "Oslo"}, "tags": ["a", "b"]},
    "items": [{"title": "first"}, {"title": "second"}],
    "count": 3,
    "ratio": 0.5,
    "ok": True,
    "nothing": None,
    "data": {"a": 1, "b": [1, 2]},
    "list": [1, "x", None],
    "template": "{state.name}",
}


class Opaque:
    def __str__(self) -> str:
        return "opaque"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("Hello {state.name}!", "Hello Ann!"),
        ("{state.user.profile.city}", "Oslo"),
        ("{state.items.1.title}", "second"),
        ("{state.user.tags.0}{state.user.tags.1}", "ab"),
        ("[{state.nothing}]", "[]"),
        ("{state.count} / {state.ratio} / {state.ok}", "3 / 0.5 / true"),
        ("{state.data}", '{"a":1,"b":[1,2]}'),
        ("{state.list}", '[1,"x",null]'),
        ("{state.user.tags}", '["a","b"]'),
        # missing values stay as written
        ("{state.nope}", "{state.nope}"),
        ("{state.user.nope.deeper}", "{state.user.nope.deeper}"),
        ("{state.items.5.title}", "{state.items.5.title}"),
        ("{state.items.first}", "{state.items.first}"),
        ("{state.name.first}", "{state.name.first}"),
        # other braces are not placeholders
        ('Reply as {"answer": 1, "name": "{state.name}"}', 'Reply as {"answer": 1, "name": "Ann"}'),
        ("{state} {name} { state.name } {state.} {state.items.-1} {{x}}", "{state} {name} { state.name } {state.} {state.items.-1} {{x}}"),
        ("{{state.name}}", "{Ann}"),
        # substituted text is not rendered again
        ("{state.template}", "{state.name}"),
        ("", ""),
    ],
)
def test_render(template: str, expected: str) -> None:
    assert render(template, STATE) == expected


def test_value_that_is_not_json_renders_with_str() -> None:
    assert render("{state.thing} {state.big}", {"thing": Opaque(), "big": 10**30}) == "opaque 1000000000000000000000000000000"


def test_template_keys() -> None:
    template = "{state.name} {state.user.profile.city} {state.items.0} {state.name} {\"json\": 1} {state} {other.x}"
    assert template_keys(template) == frozenset({"name", "user", "items"})
    assert template_keys("no placeholders") == frozenset()
