"""The crash-test ledger: invocations counted and effects applied once, across processes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from overnight import Context, Engine, current_step, step, workflow
from overnight.testing import Ledger, LedgerClient, LedgerError
from overnight.testing.ledger import step_name_of


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    with Ledger() as served:
        yield served


async def test_apply_once_and_lookup(ledger: Ledger) -> None:
    client = ledger.client(tag="here")
    assert await client.lookup("k") is None
    assert await client.apply("k", {"v": 1})
    assert not await client.apply("k", {"v": 2})
    found = await client.lookup("k")
    assert found is not None
    assert (found.value, found.applied, found.tag) == ({"v": 1}, True, "here")
    assert [a.applied for a in ledger.attempts(key="k")] == [True, False]
    assert [a.value for a in ledger.duplicates()] == [{"v": 2}]
    assert ledger.wait_idle(timeout=5)


async def test_concurrent_applies_apply_once(ledger: Ledger) -> None:
    client = ledger.client()
    results = await asyncio.gather(*(client.apply("same", i) for i in range(20)))
    assert sum(results) == 1
    assert len(ledger.attempts(key="same")) == 20


@step(effect="keyed")
async def reported(x: int) -> int:
    client = LEDGER[0]
    count = await client.invoke()
    await client.apply(current_step().idempotency_key, x)
    return count


LEDGER: list[LedgerClient] = []


@workflow
async def twice(ctx: Context) -> list[int]:
    return [await reported(1), await reported(2)]


async def test_invocations_carry_the_step_identity(ledger: Ledger) -> None:
    LEDGER[:] = [ledger.client(tag="p0")]
    async with Engine(poll_seconds=0.05) as engine:
        assert await engine.run(twice, run_id="w") == [1, 1]
    keys = [(i.step, i.step_key, i.idempotency_key, i.tag) for i in ledger.invocations("w")]
    assert keys == [
        ("reported", "reported#1", "w/reported#1", "p0"),
        ("reported", "reported#2", "w/reported#2", "p0"),
    ]
    assert [a.key for a in ledger.effects_of_step("w", "reported#2")] == ["w/reported#2"]


async def test_unreachable_ledger_is_a_clear_error(ledger: Ledger) -> None:
    host, port = ledger.address
    ledger.close()
    with pytest.raises(LedgerError, match="unreachable"):
        await LedgerClient(host, port, timeout=2).apply("k")


def test_from_env_needs_the_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OVERNIGHT_LEDGER", raising=False)
    with pytest.raises(LedgerError, match="OVERNIGHT_LEDGER is not set"):
        LedgerClient.from_env()
    monkeypatch.setenv("OVERNIGHT_LEDGER", "127.0.0.1:4242")
    monkeypatch.setenv("OVERNIGHT_LEDGER_TAG", "t")
    client = LedgerClient.from_env()
    assert (client.host, client.port, client.tag) == ("127.0.0.1", 4242, "t")


def test_step_name_of() -> None:
    assert step_name_of("gather#1/0/fetch#2") == "fetch"
    assert step_name_of("charge#1") == "charge"
