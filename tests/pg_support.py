"""Helpers of the PostgreSQL store's own tests: schemas, URLs, direct SQL, waiting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from overnight.store.postgres import PostgresStore
from tests.conftest import POSTGRES_URL, fresh_schema, with_options


def schema_fixture() -> Iterator[str]:
    """Body of the `schema` fixtures: a fresh schema name, dropped afterwards."""
    with fresh_schema() as name:
        yield name


def url_for(schema: str, **options: str | int) -> str:
    return with_options(POSTGRES_URL, schema=schema, pool_max=4, **options)


def query(text: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        return conn.execute(text, params or None).fetchall()  # type: ignore[arg-type]


def execute(statement: sql.Composable | str, *params: Any) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(statement, params or None)  # type: ignore[arg-type]


async def until(what: str, check: Callable[[], Any], timeout: float = 10.0) -> None:
    """Poll `check` (a function, or one returning an awaitable) until it is true."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        await asyncio.sleep(0.01)


async def opened(url: str, **kwargs: Any) -> PostgresStore:
    store = PostgresStore(url, **kwargs)
    await store.open()
    return store
