"""Cost from genai-prices' bundled tables: known models priced, unknown ones never $0."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from overnight.models import Usage
from overnight.models.pricing import ZERO, Cost, cost

AT = datetime(2025, 9, 1, tzinfo=UTC)  # prices change over time: pin the moment
MILLION = 1_000_000


def test_a_known_openai_model() -> None:
    priced = cost(Usage(input_tokens=MILLION, output_tokens=MILLION), "openai:gpt-4o-mini", at=AT)
    assert priced == Cost(Decimal("0.75"))  # $0.15 in + $0.60 out per million tokens
    assert priced.priced
    assert str(priced) == "$0.75"


def test_cached_input_is_cheaper() -> None:
    usage = Usage(input_tokens=MILLION, output_tokens=0, cache_read_tokens=MILLION // 2)
    priced = cost(usage, "openai:gpt-4o-mini", at=AT)
    assert priced.amount == Decimal("0.1125")  # half at $0.15, half at $0.075


def test_a_known_anthropic_model_with_cache_reads_and_writes() -> None:
    usage = Usage(
        input_tokens=MILLION, output_tokens=MILLION, cache_read_tokens=400_000,
        cache_write_tokens=100_000,
    )  # fmt: skip
    priced = cost(usage, "anthropic:claude-haiku-4-5", at=AT)
    # 500k fresh at $1, 400k read at $0.10, 100k written at $1.25, 1M out at $5
    assert priced.amount == Decimal("0.5") + Decimal("0.04") + Decimal("0.125") + Decimal("5")


def test_an_unknown_model_is_unpriced_never_free() -> None:
    for name in ("openai:llama3.2", "anthropic:claude-made-up", "test:scripted", "ollama:qwen3"):
        unknown = cost(Usage(input_tokens=1000, output_tokens=100), name)
        assert unknown == Cost(None, frozenset({name}))
        assert not unknown.priced
        assert unknown.amount != Decimal(0)
        assert str(unknown) == f"unpriced ({name})"
    assert cost(Usage(), "no-provider").unpriced == frozenset({"no-provider"})


def test_counts_it_cannot_price_are_unpriced() -> None:
    odd = Usage(input_tokens=10, output_tokens=1, cache_read_tokens=500)  # more cached than sent
    assert not cost(odd, "openai:gpt-4o-mini").priced


def test_nothing_used_on_a_known_model_is_really_zero() -> None:
    assert cost(Usage(), "openai:gpt-4o-mini") == Cost(Decimal(0))


def test_sums_keep_what_could_not_be_priced() -> None:
    known = cost(Usage(input_tokens=MILLION, output_tokens=MILLION), "openai:gpt-4o-mini", at=AT)
    local = cost(Usage(input_tokens=50, output_tokens=5), "openai:llama3.2")
    total = sum([known, local, local], ZERO)
    assert total == Cost(Decimal("0.75"), frozenset({"openai:llama3.2"}))
    assert not total.priced
    assert str(total) == "$0.75 + unpriced (openai:llama3.2)"
    assert local + local == Cost(None, frozenset({"openai:llama3.2"}))
