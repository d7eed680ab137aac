"""The store conformance suite (`tests/conformance/`) on every backend."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from overnight.store import MemoryStore, Store
from overnight.store.postgres import PostgresStore
from overnight.store.sqlite import SqliteStore
from tests.conformance import StoreConformance


class TestMemoryStore(StoreConformance):
    @pytest.fixture
    def store_factory(self) -> Callable[[], Store]:
        shared = MemoryStore()
        return lambda: shared


class TestSqliteStore(StoreConformance):
    @pytest.fixture
    def store_factory(self, tmp_path: Path) -> Callable[[], Store]:
        path = str(tmp_path / "runs.db")
        return lambda: SqliteStore(path)


class TestPostgresStore(StoreConformance):
    @pytest.fixture
    def store_factory(self, postgres_url: str) -> Callable[[], Store]:
        return lambda: PostgresStore(postgres_url)
