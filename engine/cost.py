"""What LLM calls cost: a per-model price table, a run's spend, and the cost-limit message.

A call costs `input_tokens × input price + output_tokens × output price`, prices in US dollars
per million tokens; prompt tokens read from or written to a vendor's prompt cache are charged at
the model's cache prices where the table has them (else at the input price, never less). Operators extend or override the built-in list prices with a YAML or JSON
file; a model missing from the table costs nothing, and `known()` lets callers warn about it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import msgspec
import yaml

from orch.providers.base import Usage

NonNegative = Annotated[float, msgspec.Meta(ge=0)]


class Price(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """US dollars per million tokens. Cache prices unset: those tokens cost the input price."""

    input_per_million: NonNegative
    output_per_million: NonNegative
    cache_read_per_million: NonNegative | None = None
    cache_write_per_million: NonNegative | None = None


def _anthropic(input_price: float, output_price: float) -> Price:
    # Cache reads cost a tenth of the input price, cache writes (5-minute) a quarter more.
    return Price(input_price, output_price, round(input_price * 0.1, 4), round(input_price * 1.25, 4))


FREE = Price(0.0, 0.0)

# List prices in USD per million tokens (standard tier, shortest context band).
DEFAULT_PRICES: Mapping[str, Price] = {
    "gpt-4o": Price(2.50, 10.00, 1.25),
    "gpt-4o-mini": Price(0.15, 0.60, 0.075),
    "gpt-4.1": Price(2.00, 8.00, 0.50),
    "gpt-4.1-mini": Price(0.40, 1.60, 0.10),
    "gpt-4.1-nano": Price(0.10, 0.40, 0.025),
    "o3": Price(2.00, 8.00, 0.50),
    "o3-mini": Price(1.10, 4.40, 0.55),
    "o4-mini": Price(1.10, 4.40, 0.275),
    "claude-opus-4-1": _anthropic(15.00, 75.00),
    "claude-opus-4-0": _anthropic(15.00, 75.00),
    "claude-opus-4-20250514": _anthropic(15.00, 75.00),
    "claude-sonnet-4-6": _anthropic(3.00, 15.00),
    "claude-sonnet-4-5": _anthropic(3.00, 15.00),
    "claude-sonnet-4-0": _anthropic(3.00, 15.00),
    "claude-sonnet-4-20250514": _anthropic(3.00, 15.00),
    "claude-haiku-4-5": _anthropic(1.00, 5.00),
    "claude-3-7-sonnet": _anthropic(3.00, 15.00),
    "claude-3-5-haiku": _anthropic(0.80, 4.00),
    "gemini-2.5-pro": Price(1.25, 10.00),
    "gemini-2.5-flash": Price(0.30, 2.50),
    "gemini-2.5-flash-lite": Price(0.10, 0.40),
    # The offline model is priced so that offline runs exercise cost tracking and limits.
    "offline": Price(1.00, 2.00),
}


class PriceTable:
    """Prices by model name: exact name first, then the longest prefix ending at a word
    boundary ("gpt-4o-2024-08-06" → "gpt-4o"), then the same for the name after a
    "vendor/" prefix ("openai/gpt-4o")."""

    def __init__(self, prices: Mapping[str, Price] | None = None) -> None:
        self._prices: dict[str, Price] = dict(DEFAULT_PRICES if prices is None else prices)
        # Longest first, so the first prefix that matches is the most specific one.
        self._by_length = sorted(self._prices, key=len, reverse=True)

    @classmethod
    def from_file(cls, path: str | Path, base: PriceTable | None = None) -> PriceTable:
        """The default table (or `base`) extended and overridden by a price file."""
        return (base or cls()).extend(load_price_file(path))

    def extend(self, prices: Mapping[str, Price]) -> PriceTable:
        return PriceTable({**self._prices, **prices})

    def as_dict(self) -> dict[str, Price]:
        return dict(self._prices)

    def price(self, model: str) -> Price:
        return self._match(model) or FREE

    def known(self, model: str) -> bool:
        return self._match(model) is not None

    def cost(self, model: str, usage: Usage) -> float:
        price = self.price(model)
        # A vendor reporting negative usage must not earn the run credit against its limit, nor
        # more cached tokens than prompt tokens.
        prompt = max(usage.input_tokens, 0)
        read = min(max(usage.cache_read_tokens, 0), prompt)
        written = min(max(usage.cache_write_tokens, 0), prompt - read)
        read_price = price.input_per_million if price.cache_read_per_million is None else price.cache_read_per_million
        write_price = price.input_per_million if price.cache_write_per_million is None else price.cache_write_per_million
        return (
            (prompt - read - written) * price.input_per_million
            + read * read_price
            + written * write_price
            + max(usage.output_tokens, 0) * price.output_per_million
        ) / 1_000_000

    def _match(self, model: str) -> Price | None:
        found = self._match_name(model)
        if found is None and "/" in model:
            found = self._match_name(model.rsplit("/", 1)[1])
        return found

    def _match_name(self, model: str) -> Price | None:
        if model in self._prices:
            return self._prices[model]
        for name in self._by_length:
            if model.startswith(name) and not model[len(name)].isalnum():
                return self._prices[name]
        return None


def load_price_file(path: str | Path) -> dict[str, Price]:
    """Read `{model: {input_per_million, output_per_million}}` from a YAML or JSON file."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    is_json = path.suffix.lower() == ".json"
    try:
        data: Any = json.loads(text) if is_json else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: not valid {'JSON' if is_json else 'YAML'}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of model name to prices, got {type(data).__name__}")
    prices: dict[str, Price] = {}
    for model, entry in data.items():
        try:
            prices[str(model)] = msgspec.convert(entry, Price)
        except msgspec.ValidationError as exc:
            raise ValueError(f"{path}: model '{model}': {exc}") from None
    return prices


def format_cost_limit_message(spent: float, limit: float) -> str:
    """`Cost limit exceeded: $0.52 > max $0.50`, with more decimals when two would hide the
    difference (0.5001 against 0.50 prints `$0.5001 > max $0.5000`), at most ten."""
    for decimals in range(2, 11):
        spent_text, limit_text = f"{spent:.{decimals}f}", f"{limit:.{decimals}f}"
        if spent_text != limit_text:
            break
    return f"Cost limit exceeded: ${spent_text} > max ${limit_text}"
