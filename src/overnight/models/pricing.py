"""What a model call cost, from the provider's own usage counts and `genai-prices`' tables
(which also know models' context windows: `context_window`).

`genai-prices` ships its price data in the package; it is only ever read from there (its
`UpdatePrices`, which downloads newer prices, is never started), so pricing works offline and
gives the same answer for the same installed version.

A model it does not know (a local server's model, a fine-tune, a fake) is *unpriced*: `Cost`
says so and names it, and never pretends it was free. Sums keep the difference: a total over
priced and unpriced calls is the priced part plus the list of models it could not price.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from .base import Usage

__all__ = ["Cost", "context_window", "cost"]


@dataclass(frozen=True, slots=True)
class Cost:
    """A cost in US dollars, or an honest "unknown" (see the module docstring)."""

    amount: Decimal | None
    """Dollars for the priced usage; None when nothing could be priced (never 0 for unknown)."""
    unpriced: frozenset[str] = frozenset()
    """`provider:model` names whose usage has no known price (not included in `amount`)."""

    @property
    def priced(self) -> bool:
        """True when every model's usage was priced, so `amount` is the whole cost."""
        return self.amount is not None and not self.unpriced

    def __add__(self, other: Cost) -> Cost:
        if self.amount is None:
            amount = other.amount
        elif other.amount is None:
            amount = self.amount
        else:
            amount = self.amount + other.amount
        return Cost(amount, self.unpriced | other.unpriced)

    def __str__(self) -> str:
        parts = [] if self.amount is None else [f"${self.amount.normalize():f}"]
        if self.unpriced:
            parts.append("unpriced (" + ", ".join(sorted(self.unpriced)) + ")")
        return " + ".join(parts)


ZERO = Cost(Decimal(0))
"""Nothing used, nothing spent: the start of a sum."""


def cost(usage: Usage, model: str, *, at: datetime | None = None) -> Cost:
    """The cost of `usage` on `model` (`provider:model`) at time `at` (default: now)."""
    provider, sep, name = model.partition(":")
    if not sep or not name:
        return Cost(None, frozenset({model}))
    from genai_prices import Usage as PriceUsage
    from genai_prices import calc_price

    counts = PriceUsage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
    )
    try:
        price = calc_price(counts, name, provider_id=provider, genai_request_timestamp=at)
    except (LookupError, ValueError):
        # LookupError: unknown provider or model; ValueError: counts it cannot price (a server
        # reporting more cached than input tokens). Either way the cost is not known.
        return Cost(None, frozenset({model}))
    return Cost(price.total_price)


def context_window(model: str) -> int | None:
    """Tokens `model` (`provider:model`) accepts, per genai-prices' tables; None if unknown."""
    provider, sep, name = model.partition(":")
    if not sep or not name:
        return None
    from genai_prices.data_snapshot import get_snapshot

    try:
        _, info = get_snapshot().find_provider_model(name, None, provider, None)
    except LookupError:
        return None
    return info.context_window
