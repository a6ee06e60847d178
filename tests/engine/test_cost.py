from __future__ import annotations

import re
from pathlib import Path

import pytest

from orch.cost import Price, PriceTable, format_cost_limit_message
from orch.providers.base import Usage


@pytest.mark.parametrize(
    ("model", "price"),
    [
        ("gpt-4o", Price(2.50, 10.00)),
        ("gpt-4o-2024-08-06", Price(2.50, 10.00)),
        ("gpt-4o-mini-2024-07-18", Price(0.15, 0.60)),
        ("gpt-4.1-mini", Price(0.40, 1.60)),
        ("claude-sonnet-4-5-20250929", Price(3.00, 15.00)),
        ("claude-3-5-haiku-20241022", Price(0.80, 4.00)),
        ("gemini-2.5-flash", Price(0.30, 2.50)),
        ("openai/gpt-4o-mini", Price(0.15, 0.60)),
        ("offline", Price(1.00, 2.00)),
    ],
)
def test_price_lookup_by_name_then_longest_prefix(model: str, price: Price) -> None:
    table = PriceTable()
    found = table.price(model)
    assert ((found.input_per_million, found.output_per_million), table.known(model)) == (
        (price.input_per_million, price.output_per_million), True)


@pytest.mark.parametrize("model", ["llama3:8b", "gpt-4oo", "gpt-5-turbo", ""])
def test_unknown_models_are_free_but_flagged(model: str) -> None:
    table = PriceTable()
    assert (table.price(model), table.known(model), table.cost(model, Usage(1000, 1000))) == (
        Price(0.0, 0.0),
        False,
        0.0,
    )


def test_cost_of_a_call() -> None:
    table = PriceTable()
    assert table.cost("gpt-4o", Usage(input_tokens=1_000_000, output_tokens=500_000)) == 7.5
    assert table.cost("offline", Usage(input_tokens=1_000, output_tokens=500)) == 0.002


def test_cached_prompt_tokens_cost_the_cache_prices() -> None:
    table = PriceTable()
    # Anthropic: 600k plain at $3, 300k read at $0.30, 100k written at $3.75, 100k out at $15.
    usage = Usage(input_tokens=1_000_000, output_tokens=100_000, cache_read_tokens=300_000, cache_write_tokens=100_000)
    assert table.cost("claude-sonnet-4-5", usage) == pytest.approx(1.8 + 0.09 + 0.375 + 1.5)
    # OpenAI: 500k plain at $2.50, 500k read at $1.25.
    assert table.cost("gpt-4o", Usage(1_000_000, 0, cache_read_tokens=500_000)) == pytest.approx(1.25 + 0.625)
    # No cache price known: cached tokens cost the input price, never less.
    assert table.cost("gemini-2.5-pro", Usage(1_000_000, 0, cache_read_tokens=900_000)) == pytest.approx(1.25)
    # A vendor claiming more cached tokens than prompt tokens is not believed past the prompt.
    assert table.cost("gpt-4o", Usage(1_000, 0, cache_read_tokens=5_000, cache_write_tokens=-3)) == pytest.approx(
        1_000 * 1.25 / 1_000_000)


def test_price_file_extends_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(
        "gpt-4o:\n  input_per_million: 2\n  output_per_million: 8\n"
        "llama3:\n  input_per_million: 0.05\n  output_per_million: 0.1\n"
    )
    table = PriceTable.from_file(path)
    assert (table.price("gpt-4o-2024-08-06"), table.price("llama3:8b"), table.price("gpt-4o-mini")) == (
        Price(2.0, 8.0),
        Price(0.05, 0.1),
        Price(0.15, 0.60, 0.075),
    )


def test_price_file_in_json(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text('{"my-model": {"input_per_million": 1, "output_per_million": 3}}')
    assert PriceTable.from_file(path).price("my-model") == Price(1.0, 3.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("m:\n  input_per_million: 1\n", "model 'm': Object missing required field `output_per_million`"),
        (
            "m:\n  input_per_million: cheap\n  output_per_million: 1\n",
            "model 'm': Expected `float`, got `str` - at `$.input_per_million`",
        ),
        (
            "m:\n  input_per_million: -1\n  output_per_million: 1\n",
            "model 'm': Expected `float` >= 0.0 - at `$.input_per_million`",
        ),
        (
            "m:\n  input: 1\n  input_per_million: 1\n  output_per_million: 1\n",
            "model 'm': Object contains unknown field `input`",
        ),
        ("m: 3\n", "model 'm': Expected `object`, got `int`"),
        ("- m\n", "expected a mapping of model name to prices, got list"),
    ],
)
def test_bad_price_files_name_the_file_and_model(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        PriceTable.from_file(path)
    assert str(info.value) == f"{path}: {message}"


def test_unparsable_price_file(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: not valid JSON: "):
        PriceTable.from_file(path)


@pytest.mark.parametrize(
    ("spent", "limit", "message"),
    [
        (0.52, 0.50, "Cost limit exceeded: $0.52 > max $0.50"),
        (0.5001, 0.50, "Cost limit exceeded: $0.5001 > max $0.5000"),
        (0.503, 0.5, "Cost limit exceeded: $0.503 > max $0.500"),
        (1.0049, 1.0, "Cost limit exceeded: $1.005 > max $1.000"),
        (12.3, 10, "Cost limit exceeded: $12.30 > max $10.00"),
        (0.1000000001, 0.1, "Cost limit exceeded: $0.1000000001 > max $0.1000000000"),
        (0.10000000000001, 0.1, "Cost limit exceeded: $0.1000000000 > max $0.1000000000"),
    ],
)
def test_cost_limit_message(spent: float, limit: float, message: str) -> None:
    assert format_cost_limit_message(spent, limit) == message
