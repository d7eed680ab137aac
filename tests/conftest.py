"""Shared fixtures: every engine test runs on both the memory and the SQLite store, offline."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from overnight import Engine
from overnight.store import MemoryStore, Store
from overnight.store.sqlite import SqliteStore
from overnight.testing.guard import NetworkGuard, offline

# The conformance suite lives in a helper package: have pytest explain its failed asserts too.
pytest.register_assert_rewrite("tests.conformance")


@pytest.fixture(autouse=True)
def network_guard() -> Iterator[NetworkGuard]:
    """No test reaches beyond loopback or sees a provider's key (see overnight.testing.guard)."""
    with offline() as guard:
        yield guard


@pytest.fixture(params=["memory", "sqlite"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    """Makes stores of one kind; SQLite ones share one file, as separate processes would."""
    if request.param == "memory":
        shared = MemoryStore()
        return lambda: shared
    path = str(tmp_path / "runs.db")
    return lambda: SqliteStore(path)


@pytest.fixture
def store(store_factory: Callable[[], Store]) -> Store:
    return store_factory()


@pytest.fixture
async def engine(store: Store) -> AsyncIterator[Engine]:
    async with Engine(store, poll_seconds=0.05, lease_seconds=5, drain_seconds=5) as eng:
        yield eng
